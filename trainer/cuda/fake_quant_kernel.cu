#include "trainer/cuda/fake_quant_kernel.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "sefp/fake_quant_rules.h"
#include "trainer/cuda/cuda_status.h"

namespace otaro::trainer::cuda {
namespace {

namespace rules = sefp::rules;

constexpr int kWarpsPerBlock = 8;
constexpr unsigned kFullMask = 0xffffffffu;
static_assert(sefp::kGroupSize == 64, "one warp covers a group as two weights per lane");

// One warp per group: lane i holds weights i and i + 32 of it. The steps are
// the three of fake_quant_rules.h: max |w| as bits (a warp max), the group's
// scales, then Q for each weight.
__global__ void FakeQuantizeKernel(const float* w, int64_t rows, int64_t cols, int m,
                                   sefp::Reconstruction mode, float* out,
                                   unsigned long long* first_non_finite) {
  const int lane = threadIdx.x % 32;
  const int64_t groups_per_row = (cols + sefp::kGroupSize - 1) / sefp::kGroupSize;
  const int64_t group = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  if (group >= rows * groups_per_row) return;  // the whole warp leaves together
  const int64_t row = group / groups_per_row;
  const int64_t c0 = (group % groups_per_row) * sefp::kGroupSize;
  const int64_t n = cols - c0 < sefp::kGroupSize ? cols - c0 : sefp::kGroupSize;
  const int64_t at = row * cols + c0;
  const bool has_lo = lane < n, has_hi = lane + 32 < n;
  // Read both before any write: `out` may alias `w`.
  const float lo = has_lo ? w[at + lane] : 0.0f;
  const float hi = has_hi ? w[at + lane + 32] : 0.0f;
  const uint32_t lo_bits = rules::AbsBits(lo), hi_bits = rules::AbsBits(hi);
  const uint32_t max_abs = __reduce_max_sync(kFullMask, lo_bits > hi_bits ? lo_bits : hi_bits);
  if (max_abs >= rules::kNonFiniteBits) {
    // The first non-finite position of the group: lanes in order, lo before hi.
    const unsigned lo_bad = lo_bits >= rules::kNonFiniteBits ? lane : 64u;
    const unsigned hi_bad = hi_bits >= rules::kNonFiniteBits ? lane + 32u : 64u;
    const unsigned first = __reduce_min_sync(kFullMask, lo_bad < hi_bad ? lo_bad : hi_bad);
    if (lane == 0) atomicMin(first_non_finite, static_cast<unsigned long long>(at + first));
    return;
  }
  const rules::FakeQuantScales scales =
      rules::ScalesForGroup(rules::GroupExponent(max_abs), m, mode);
  int32_t saturated = 0;  // counted by the CPU's stats only; the trainer does not need it
  if (has_lo) out[at + lane] = rules::FakeQuantizeWeight(lo, scales, m, &saturated);
  if (has_hi) out[at + lane + 32] = rules::FakeQuantizeWeight(hi, scales, m, &saturated);
}

}  // namespace

absl::Status LaunchFakeQuantize(Stream stream, const float* w, int64_t rows, int64_t cols, int m,
                                sefp::Reconstruction mode, float* out,
                                unsigned long long* first_non_finite) {
  const int64_t groups = rows * ((cols + sefp::kGroupSize - 1) / sefp::kGroupSize);
  if (groups == 0) return absl::OkStatus();
  const int64_t blocks = (groups + kWarpsPerBlock - 1) / kWarpsPerBlock;
  FakeQuantizeKernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
      w, rows, cols, m, mode, out, first_non_finite);
  return CheckLaunch("FakeQuantize");
}

}  // namespace otaro::trainer::cuda
