// Portable path. It performs, per output, exactly the float operations of the AVX2
// path in the same order (one lane of it), so the two agree bit for bit. Compiled
// with -ffp-contract=off: a*b+c must stay two roundings where the AVX2 path has two.
#include <cmath>
#include <cstring>

#include "sefp/kernels/internal.h"

namespace otaro::sefp::internal {
namespace {

inline float Input(const float* x, int64_t cols, int64_t i) { return i < cols ? x[i] : 0.0f; }

// Sum over 64 digits of one row: word0/word1 are the row's two 32-bit digit words.
// Same chains and order as the AVX2 PlaneSum: lookup k adds into chain k % 4.
inline float HalfSum(uint32_t word, const float* t) {
  float c[4];
  for (int k = 0; k < 4; ++k) c[k] = t[8 * k + ((word >> (2 * k)) & 3)];
  for (int k = 4; k < kTablesPerHalf; ++k) c[k % 4] = c[k % 4] + t[8 * k + ((word >> (2 * k)) & 3)];
  return (c[0] + c[1]) + (c[2] + c[3]);
}

inline float PlaneSum(uint32_t word0, uint32_t word1, const float* t) {
  return HalfSum(word0, t) + HalfSum(word1, t + kTablesPerHalf * 8);
}

}  // namespace

void BuildTablesScalar(const float* x, int64_t cols, int64_t groups, float* tables) {
  for (int64_t g = 0; g < groups; ++g) {
    for (int h = 0; h < 2; ++h) {
      const int64_t base = g * 64 + 32 * h;
      float* t = tables + g * kTableFloatsPerGroup + h * kTablesPerHalf * 8;
      for (int k = 0; k < kTablesPerHalf; ++k) {
        const float a = Input(x, cols, base + 2 * k);
        const float b = Input(x, cols, base + 2 * k + 1);
        for (int e = 0; e < 8; ++e) t[8 * k + e] = (e & 1 ? a : -a) + (e & 2 ? b : -b);
      }
    }
  }
}

void RowBlocksScalar(const GemmJob& job, int64_t rb0, int64_t rb1) {
  const PackedMatrix& w = *job.w;
  const int64_t groups = w.groups();
  float pow2[9];
  for (int j = 0; j <= 8; ++j) pow2[j] = std::ldexp(1.0f, -j);
  for (int64_t rb = rb0; rb < rb1; ++rb) {
    for (int lane = 0; lane < kRowBlock; ++lane) {
      const int64_t row = rb * kRowBlock + lane;
      if (row >= w.rows()) break;
      for (int64_t b = 0; b < job.batch; ++b) {
        const float* tables = job.tables + b * groups * kTableFloatsPerGroup;
        float acc = 0.0f;
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t tile = w.TileIndex(rb, g);
          const int e = w.exponents()[tile * kRowBlock + lane];
          const float scale = e == kZeroGroupExponent ? 0.0f : std::ldexp(1.0f, e);
          const float* t = tables + g * kTableFloatsPerGroup;
          float sum = PlaneSum(TileWord(w.plane(0), tile, 0, lane), TileWord(w.plane(0), tile, 1, lane), t) *
                      job.sign_coef;
          for (int j = 1; j <= job.m; ++j) {
            const float s = PlaneSum(TileWord(w.plane(j), tile, 0, lane), TileWord(w.plane(j), tile, 1, lane), t);
            sum = std::fma(s, pow2[j], sum);
          }
          acc = std::fma(scale, sum, acc);
        }
        job.y[b * w.rows() + row] = acc;
      }
    }
  }
}

}  // namespace otaro::sefp::internal
