// Fake quantization for training: W -> Q(W, m) elementwise over a float32 tensor,
// with the group exponents recomputed from the current weights on every call (the
// trainer calls this in every forward pass). It is built from the same per-weight
// rules as EncodeGroup / DecodeWeight (format.h, FakeQuantizeGroup), which the
// checkpoint and the kernels use, so training sees exactly the function the engine
// serves; fake_quant_test checks it bit for bit against EncodeGroup + DecodeWeight.
// Backward is the straight-through estimator: the
// trainer passes dL/dQ through unchanged (nothing to do here).
#ifndef OTARO_SEFP_FAKE_QUANT_H_
#define OTARO_SEFP_FAKE_QUANT_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sefp/format.h"
#include "sefp/kernels/thread_pool.h"

namespace otaro::sefp {

struct FakeQuantStats {
  int64_t saturated = 0;    // weights clamped to q8 = 255 (exponent clamped at 15)
  int64_t zero_groups = 0;  // all-zero groups
};

// out = Q(w, m) for a row-major [rows, cols] tensor (groups of 64 along cols; the
// last group of a row may be shorter). `out` may alias `w`. NaN/Inf are refused
// with an error naming `name` and the first such position (row-major); `out` is
// then partly written. `stats` may be null. With a `pool`, rows are split across
// its threads; the result, the stats and the error do not depend on the split.
absl::Status FakeQuantize(absl::string_view name, absl::Span<const float> w, int64_t rows,
                          int64_t cols, int m, Reconstruction mode, absl::Span<float> out,
                          FakeQuantStats* stats = nullptr, ThreadPool* pool = nullptr);

// The error FakeQuantize returns when weight [row, col] of tensor `name` is
// `value`, a NaN or an Inf (the CUDA trainer's fake quantization reports with it
// too, so that both devices say the same thing).
absl::Status NonFiniteWeightError(absl::string_view name, float value, int64_t row, int64_t col);

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_FAKE_QUANT_H_
