// libFuzzer entry point for the GGUF reader: parse arbitrary bytes; when they
// parse, read every metadata value and dequantize every (small) tensor.
// Built by tools/fuzz/run_gguf_fuzz.sh (clang -fsanitize=fuzzer,address) and
// by :gguf_fuzz_test (gcc, seeds + deterministic mutations).
#include <cstddef>
#include <cstdint>

#include "engine/formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using otaro::engine::gguf::GgufFile;
  auto file = GgufFile::Parse(absl::MakeConstSpan(data, size));
  if (!file.ok()) return 0;
  const GgufFile& f = **file;
  for (const auto& [key, value] : f.metadata()) {
    (void)value.DebugString();
    (void)value.AsStringArray();
    (void)value.AsInt64Array();
    (void)value.AsFloatArray();
  }
  for (const auto& t : f.tensors()) {
    if (t.n_bytes <= (1u << 20)) (void)f.DequantizeTensor(t);
  }
  return 0;
}
