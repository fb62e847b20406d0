// AVX2 + FMA path (this file alone is compiled with -mavx2 -mfma; the dispatcher
// calls it only after cpuid says the CPU has both). One __m256 holds 8 rows (a row
// block). For each digit plane, VPERMILPS looks up the 8 rows' 2-bit digit fields
// in a 4-float table of signed input sums: 1 shuffle + 1 shift + 1 add per 2
// weights per plane, so the work per weight scales with m + 1, like the bytes read.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "sefp/kernels/internal.h"

namespace otaro::sefp::internal {
namespace {

inline float Input(const float* x, int64_t cols, int64_t i) { return i < cols ? x[i] : 0.0f; }

// Sum over the 64 digits of one plane of one tile, for its 8 rows. Same operation
// order as PlaneSum in gemm_scalar.cc.
// Four independent add chains per half (lookup k goes to chain k % 4) so the adds'
// latency hides behind the shuffles; combined as ((c0 + c1) + (c2 + c3)).
__attribute__((always_inline)) inline __m256 PlaneSum(const uint8_t* tile, const float* t) {
  static_assert(kTablesPerHalf == 16);
  // Keep the table loads here: hoisting them out of the plane loop (they are the
  // same for every plane) makes GCC park 32 tables on the stack and spill.
  asm("" : "+r"(t));
  __m256 half[2];
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(tile + 32 * h));
    const float* th = t + h * kTablesPerHalf * 8;
    __m256 c[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      c[k] = _mm256_permutevar_ps(_mm256_load_ps(th + 8 * k), _mm256_srli_epi32(v, 2 * k));
    }
#pragma GCC unroll 16
    for (int k = 4; k < kTablesPerHalf; ++k) {
      c[k % 4] = _mm256_add_ps(
          c[k % 4], _mm256_permutevar_ps(_mm256_load_ps(th + 8 * k), _mm256_srli_epi32(v, 2 * k)));
      // Pin program order (shuffle, add, next shuffle): left alone, GCC computes
      // all 16 shuffles first and spills them. The CPU overlaps the steps anyway.
      asm("" : "+x"(c[k % 4]), "+x"(v));
    }
    half[h] = _mm256_add_ps(_mm256_add_ps(c[0], c[1]), _mm256_add_ps(c[2], c[3]));
  }
  return _mm256_add_ps(half[0], half[1]);
}

// 2^e for 8 rows' exponents; 0 for zero groups (e = -128).
inline __m256 Scales(const int8_t* e8) {
  const __m256i e = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(e8)));
  const __m256i zero_group = _mm256_cmpeq_epi32(e, _mm256_set1_epi32(-128));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23);
  return _mm256_castsi256_ps(_mm256_andnot_si256(zero_group, bits));
}

template <int M>
void RowBlocksT(const GemmJob& job, int64_t rb0, int64_t rb1) {
  const PackedMatrix& w = *job.w;
  const int64_t groups = w.groups();
  const uint8_t* planes[M + 1];
  for (int j = 0; j <= M; ++j) planes[j] = w.plane(j);
  __m256 pow2[M + 1];
  for (int j = 0; j <= M; ++j) pow2[j] = _mm256_set1_ps(1.0f / static_cast<float>(1 << j));
  const __m256 sign_coef = _mm256_set1_ps(job.sign_coef);
  const int64_t batch = job.batch;

  // Running sums of every (row block, batch row) of this range across slices.
  thread_local std::vector<float> scratch;
  scratch.resize(static_cast<size_t>((rb1 - rb0) * batch * 8));
  float* acc_base = scratch.data();

  for (int64_t s = 0; s < w.slices(); ++s) {
    const int64_t g0 = s * kSliceGroups;
    const int64_t width = w.SliceWidth(s);
    for (int64_t rb = rb0; rb < rb1; ++rb) {
      const int64_t tile0 = w.TileIndex(rb, g0);  // the slice's tiles of rb are consecutive
      for (int64_t b = 0; b < batch; ++b) {
        float* accp = acc_base + ((rb - rb0) * batch + b) * 8;
        __m256 acc = s == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(accp);
        const float* t = job.tables + (b * groups + g0) * kTableFloatsPerGroup;
        for (int64_t gi = 0; gi < width; ++gi, t += kTableFloatsPerGroup) {
          const int64_t tile = tile0 + gi;
          const __m256 scale = Scales(w.exponents() + tile * kRowBlock);
          __m256 sum = _mm256_mul_ps(PlaneSum(planes[0] + tile * kTileBytes, t), sign_coef);
#pragma GCC unroll 1
          for (int j = 1; j <= M; ++j) {
            sum = _mm256_fmadd_ps(PlaneSum(planes[j] + tile * kTileBytes, t), pow2[j], sum);
          }
          acc = _mm256_fmadd_ps(scale, sum, acc);
        }
        _mm256_storeu_ps(accp, acc);
      }
    }
  }
  for (int64_t rb = rb0; rb < rb1; ++rb) {
    const int64_t lanes = std::min<int64_t>(kRowBlock, w.rows() - rb * kRowBlock);
    for (int64_t b = 0; b < batch; ++b) {
      std::memcpy(job.y + b * w.rows() + rb * kRowBlock, acc_base + ((rb - rb0) * batch + b) * 8,
                  sizeof(float) * lanes);
    }
  }
}

}  // namespace

void BuildTablesAvx2(const float* x, int64_t cols, int64_t groups, float* tables) {
  // Lane e (mod 4) flips x_a when bit 0 of e is clear and x_b when bit 1 is clear.
  const __m256 flip_a = _mm256_castsi256_ps(_mm256_setr_epi32(
      INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0, INT32_MIN, 0));
  const __m256 flip_b = _mm256_castsi256_ps(_mm256_setr_epi32(
      INT32_MIN, INT32_MIN, 0, 0, INT32_MIN, INT32_MIN, 0, 0));
  for (int64_t g = 0; g < groups; ++g) {
    for (int h = 0; h < 2; ++h) {
      const int64_t base = g * 64 + 32 * h;
      float* t = tables + g * kTableFloatsPerGroup + h * kTablesPerHalf * 8;
      const bool full = base + 32 <= cols;
      for (int k = 0; k < kTablesPerHalf; ++k) {
        const int64_t i = base + 2 * k;
        const __m256 a = _mm256_set1_ps(full ? x[i] : Input(x, cols, i));
        const __m256 b = _mm256_set1_ps(full ? x[i + 1] : Input(x, cols, i + 1));
        _mm256_store_ps(t + 8 * k, _mm256_add_ps(_mm256_xor_ps(a, flip_a), _mm256_xor_ps(b, flip_b)));
      }
    }
  }
}

void RowBlocksAvx2(const GemmJob& job, int64_t rb0, int64_t rb1) {
  switch (job.m) {
    case 2: return RowBlocksT<2>(job, rb0, rb1);
    case 3: return RowBlocksT<3>(job, rb0, rb1);
    case 4: return RowBlocksT<4>(job, rb0, rb1);
    case 5: return RowBlocksT<5>(job, rb0, rb1);
    case 6: return RowBlocksT<6>(job, rb0, rb1);
    case 7: return RowBlocksT<7>(job, rb0, rb1);
    default: return RowBlocksT<8>(job, rb0, rb1);
  }
}

}  // namespace otaro::sefp::internal
