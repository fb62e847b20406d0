#include "sefp/fake_quant.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace otaro::sefp {
namespace {

constexpr int64_t kNoError = std::numeric_limits<int64_t>::max();

// Rows [begin, end): adds to the stats; on a non-finite group, returns the flat
// index of its first non-finite weight (the rows before it are written) and stops.
int64_t QuantizeRows(const float* w, int64_t begin, int64_t end, int64_t cols, int m,
                     Reconstruction mode, float* out, int64_t* saturated, int64_t* zero_groups) {
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += kGroupSize) {
      const int n = static_cast<int>(std::min<int64_t>(kGroupSize, cols - c0));
      const int64_t at = r * cols + c0;
      int8_t e = 0;
      if (!FakeQuantizeGroup(w + at, n, m, mode, out + at, &e, saturated)) {
        int i = 0;
        while (std::isfinite(w[at + i])) ++i;
        return at + i;
      }
      if (e == kZeroGroupExponent) ++*zero_groups;
    }
  }
  return kNoError;
}

}  // namespace

absl::Status FakeQuantize(absl::string_view name, absl::Span<const float> w, int64_t rows,
                          int64_t cols, int m, Reconstruction mode, absl::Span<float> out,
                          FakeQuantStats* stats, ThreadPool* pool) {
  if (absl::Status s = CheckPrecision(m); !s.ok()) return s;
  if (rows < 0 || cols < 0 || static_cast<size_t>(rows * cols) != w.size() ||
      out.size() != w.size()) {
    return absl::InvalidArgumentError(absl::StrCat("fake quantization of '", name, "': shape [",
                                                   rows, ", ", cols, "] does not match ",
                                                   w.size(), " inputs / ", out.size(), " outputs"));
  }
  FakeQuantStats local;
  int64_t bad = kNoError;
  if (pool == nullptr || pool->num_threads() == 1 || rows < 2) {
    bad = QuantizeRows(w.data(), 0, rows, cols, m, mode, out.data(), &local.saturated,
                       &local.zero_groups);
  } else {
    // Per-range counts are summed once per range; the reported error is the first
    // non-finite weight in row-major order, whichever thread found it.
    std::atomic<int64_t> saturated{0}, zero_groups{0}, first_bad{kNoError};
    pool->ParallelFor(rows, [&](int64_t begin, int64_t end) {
      int64_t sat = 0, zeros = 0;
      const int64_t b = QuantizeRows(w.data(), begin, end, cols, m, mode, out.data(), &sat, &zeros);
      saturated.fetch_add(sat, std::memory_order_relaxed);
      zero_groups.fetch_add(zeros, std::memory_order_relaxed);
      int64_t seen = first_bad.load(std::memory_order_relaxed);
      while (b < seen && !first_bad.compare_exchange_weak(seen, b, std::memory_order_relaxed)) {
      }
    });
    local.saturated = saturated.load();
    local.zero_groups = zero_groups.load();
    bad = first_bad.load();
  }
  if (bad != kNoError) return NonFiniteWeightError(name, w[bad], bad / cols, bad % cols);
  if (stats != nullptr) *stats = local;
  return absl::OkStatus();
}

absl::Status NonFiniteWeightError(absl::string_view name, float value, int64_t row, int64_t col) {
  return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' holds a non-finite value (",
                                                 std::isnan(value) ? "NaN" : "Inf", ") at [", row,
                                                 ", ", col, "]"));
}

}  // namespace otaro::sefp
