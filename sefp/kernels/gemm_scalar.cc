// Portable path, and the plain statement of gemm.h's arithmetic: d is formed
// from the planes straight from its definition (not from the SIMD paths'
// DigitProgram), so the bit-equality tests also check that program. Compiled
// with -ffp-contract=off: float(I) * scale must stay its own rounding.
#include <cmath>
#include <vector>

#include "sefp/kernels/internal.h"

namespace otaro::sefp::internal {
namespace {

// d for the 64 weights of row `lane` of tile `tile`: sigma (2 q_m + 1 - t), with
// q_m the top m magnitude bits (digit bit XOR sign).
void DigitsOfGroup(const PackedMatrix& w, int64_t tile, int lane, int m, int t, int32_t* d) {
  const uint64_t sign = w.TileWords(0, tile)[lane];
  uint64_t digit[kMasterBits + 1];
  for (int j = 1; j <= m; ++j) digit[j] = w.TileWords(j, tile)[lane];
  for (int i = 0; i < kGroupSize; ++i) {
    const int s = static_cast<int>((sign >> i) & 1);
    int q = 0;
    for (int j = 1; j <= m; ++j) q = 2 * q + (static_cast<int>((digit[j] >> i) & 1) ^ s);
    const int magnitude = 2 * q + 1 - t;
    d[i] = s ? -magnitude : magnitude;
  }
}

}  // namespace

void RowBlocksScalar(const GemmJob& job, int64_t rb0, int64_t rb1) {
  const PackedMatrix& w = *job.w;
  const QuantizedActivations& x = *job.x;
  const int m = job.m;
  const int t = job.mode == Reconstruction::kTruncate ? 1 : 0;
  const int64_t groups = w.groups(), rows = w.rows();
  std::vector<float> acc(static_cast<size_t>(job.batch * kLanesPerGroup));
  int32_t d[kGroupSize];
  for (int64_t rb = rb0; rb < rb1; ++rb) {
    for (int lane = 0; lane < kRowBlock; ++lane) {
      const int64_t n = rb * kRowBlock + lane;
      if (n >= rows) break;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t tile = w.TileIndex(rb, g);
        const float ws = WeightScale(w.exponents()[tile * kRowBlock + lane], m);
        DigitsOfGroup(w, tile, lane, m, t, d);
        for (int64_t b = 0; b < job.batch; ++b) {
          const int8_t* q = x.values(job.row0 + b) + g * kGroupSize;
          const float* scale = x.scales(job.row0 + b) + g * kLanesPerGroup;
          float* a = acc.data() + b * kLanesPerGroup;
          for (int l = 0; l < kLanesPerGroup; ++l) {
            int32_t sum = 0;
            for (int i = 4 * l; i < 4 * l + 4; ++i) sum += static_cast<int32_t>(q[i]) * d[i];
            a[l] = std::fma(static_cast<float>(sum) * scale[l], ws, a[l]);
          }
        }
      }
      for (int64_t b = 0; b < job.batch; ++b) {
        job.y[b * rows + n] = LaneTree(acc.data() + b * kLanesPerGroup);
      }
    }
  }
}

}  // namespace otaro::sefp::internal
