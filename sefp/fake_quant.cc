#include "sefp/fake_quant.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace otaro::sefp {

absl::Status FakeQuantize(absl::string_view name, absl::Span<const float> w, int64_t rows,
                          int64_t cols, int m, Reconstruction mode, absl::Span<float> out,
                          FakeQuantStats* stats) {
  if (absl::Status s = CheckPrecision(m); !s.ok()) return s;
  if (rows < 0 || cols < 0 || static_cast<size_t>(rows * cols) != w.size() ||
      out.size() != w.size()) {
    return absl::InvalidArgumentError(absl::StrCat("fake quantization of '", name, "': shape [",
                                                   rows, ", ", cols, "] does not match ",
                                                   w.size(), " inputs / ", out.size(), " outputs"));
  }
  FakeQuantStats local;
  uint8_t sign[kGroupSize];
  uint8_t q8[kGroupSize];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += kGroupSize) {
      const int n = static_cast<int>(std::min<int64_t>(kGroupSize, cols - c0));
      const float* in = w.data() + r * cols + c0;
      for (int i = 0; i < n; ++i) {
        if (!std::isfinite(in[i])) {
          return absl::InvalidArgumentError(absl::StrCat(
              "tensor '", name, "' holds a non-finite value (", std::isnan(in[i]) ? "NaN" : "Inf",
              ") at [", r, ", ", c0 + i, "]"));
        }
      }
      const int8_t e = EncodeGroup(in, n, sign, q8, &local.saturated);
      if (e == kZeroGroupExponent) ++local.zero_groups;
      float* dst = out.data() + r * cols + c0;  // Written after `in` is fully read.
      for (int i = 0; i < n; ++i) dst[i] = DecodeWeight(e, sign[i], q8[i], m, mode);
    }
  }
  if (stats != nullptr) *stats = local;
  return absl::OkStatus();
}

}  // namespace otaro::sefp
