// Fuzz entry point for the SEFP checkpoint reader and, beneath it, the generic
// safetensors container parser. Anything the reader accepts is then used the way
// the engine uses it (loaded, validated, packed, multiplied) so that a file that
// passes validation but would make a later stage read out of bounds is found too.
//
// Built two ways: with libFuzzer (tools/fuzz/run_sefp_fuzz.sh, clang
// -fsanitize=fuzzer,address) and into a deterministic gtest (checkpoint_fuzz_test).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/safetensors/safetensors.h"
#include "sefp/checkpoint.h"
#include "sefp/kernels/gemm.h"
#include "sefp/layout.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace otaro;
  absl::Span<const uint8_t> bytes(data, size);
  // The generic container on its own (HF model files take this path).
  absl::StatusOr<safetensors::View> view = safetensors::View::Parse(bytes);
  if (view.ok()) {
    uint64_t sum = 0;
    for (const auto& t : view->tensors()) {
      for (uint8_t b : t.bytes) sum += b;  // every view must be inside the buffer
    }
    (void)sum;
  }
  auto reader = sefp::CheckpointReader::FromBuffer(bytes);
  if (!reader.ok()) return 0;
  for (const std::string& name : (*reader)->dense_names()) {
    const safetensors::TensorView* t = (*reader)->FindDense(name);
    std::vector<uint8_t> copy(t->bytes.begin(), t->bytes.end());
  }
  for (const auto& [name, shape] : (*reader)->quantized_shapes()) {
    absl::StatusOr<sefp::SefpTensor> t = (*reader)->LoadQuantized(name);
    if (!t.ok()) continue;
    if (t->rows * t->cols > (1 << 20)) continue;  // keep each input cheap
    absl::StatusOr<sefp::PackedMatrix> w = sefp::PackedMatrix::Pack(*t, 8);
    if (!w.ok()) continue;
    std::vector<float> x(static_cast<size_t>(t->cols), 1.0f), y(static_cast<size_t>(t->rows));
    for (int m : {2, 8}) {
      (void)sefp::Gemv(*w, m, x, absl::MakeSpan(y));
      if (t->rows > 0) (void)w->DecodeRow(0, m, sefp::Reconstruction::kMidpoint, y.size() >= x.size() ? y.data() : x.data());
    }
  }
  return 0;
}
