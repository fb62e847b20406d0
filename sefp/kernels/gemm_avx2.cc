// AVX2 path (this file alone is compiled with -mavx2 -mfma; the dispatcher calls
// it only after cpuid says the CPU has both). A group is two YMM halves of 32
// weights. A digit plane's 32 bits are spread to byte masks (VPSHUFB + compare)
// and d is formed by the DigitProgram's adds; the exact products come from
// VPMADDUBSW(|d|, sign(x, d)) (pairs, |sum| <= 2 * 127 * 127, no saturation)
// and VPMADDWD (lanes of 4). Half h holds lanes 8h .. 8h + 7 of gemm.h's 16.
// A register tile is R weight rows x C batch rows (16 YMM registers: C <= 2).
#include <immintrin.h>

#include <vector>

#include "sefp/kernels/internal.h"

namespace otaro::sefp::internal {
namespace {

// Byte i of the result is 0xFF iff bit i of `word` is set.
inline __m256i SpreadBits(uint32_t word) {
  const __m256i select = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(word)), select);
  return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

// Half h of one part of d for the row whose plane words sit at planes[j] + word_offset.
template <const DigitPart& kPart>
__attribute__((always_inline)) inline __m256i FormPart(const uint8_t* const* planes,
                                                       int64_t word_offset, int h) {
  __m256i v = _mm256_set1_epi8(kPart.base);
#pragma GCC unroll 10
  for (int t = 0; t < kPart.terms; ++t) {
    uint32_t word;
    __builtin_memcpy(&word, planes[kPart.plane[t]] + word_offset + 4 * h, 4);
    v = _mm256_add_epi8(v, _mm256_and_si256(SpreadBits(word), _mm256_set1_epi8(kPart.add[t])));
  }
  return v;
}

// 8 lanes of sum x * d over 4 neighbours each.
inline __m256i LaneSums(__m256i abs_d, __m256i d, __m256i x) {
  const __m256i pairs = _mm256_maddubs_epi16(abs_d, _mm256_sign_epi8(x, d));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

template <int M, bool kTruncate>
struct Digits {
  static constexpr DigitProgram kProgram =
      MakeDigitProgram(M, kTruncate ? Reconstruction::kTruncate : Reconstruction::kMidpoint);
  static constexpr DigitPart kPart0 = kProgram.part[0];
  static constexpr DigitPart kPart1 = kProgram.part[1];
};

// 8 + 8 lanes summed in LaneTree's order.
inline float Reduce(__m256 lo, __m256 hi) {
  const __m256 v8 = _mm256_add_ps(lo, hi);
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)));
}

// d of the 8 rows of row block rb for every group, formed once for a batch of
// 3 rows or more: part p of row r, group g at digits[p][(g * 8 + r) * 64].
template <int M, bool kTruncate>
void FormRowBlock(const PackedMatrix& w, int64_t rb, int8_t* const* digits) {
  using D = Digits<M, kTruncate>;
  const uint8_t* planes[kMasterBits + 1];
  for (int j = 0; j <= M; ++j) planes[j] = w.plane(j);
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int64_t tile = w.TileIndex(rb, g);
    for (int r = 0; r < kRowBlock; ++r) {
      const int64_t word_offset = tile * kTileBytes + r * 8;
      int8_t* at0 = digits[0] + (g * kRowBlock + r) * kGroupSize;
      for (int h = 0; h < 2; ++h) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(at0 + 32 * h),
                           FormPart<D::kPart0>(planes, word_offset, h));
        if constexpr (D::kProgram.split) {
          _mm256_store_si256(
              reinterpret_cast<__m256i*>(digits[1] + (g * kRowBlock + r) * kGroupSize + 32 * h),
              FormPart<D::kPart1>(planes, word_offset, h));
        }
      }
    }
  }
}

// Rows r0 .. r0 + R - 1 of row block rb times batch rows b0 .. b0 + C - 1. Per
// group and half, each row's d comes first -- formed from the planes, or
// (kFormed) loaded from FormRowBlock's `digits` -- then the batch rows.
template <int M, bool kTruncate, int R, int C, bool kFormed>
void Tile(const GemmJob& job, int64_t rb, int r0, int64_t b0, const int8_t* const* digits) {
  using D = Digits<M, kTruncate>;
  const PackedMatrix& w = *job.w;
  const QuantizedActivations& x = *job.x;
  const uint8_t* planes[kMasterBits + 1];
  for (int j = 0; j <= M; ++j) planes[j] = w.plane(j);
  const int8_t* xv[C];
  const float* xs[C];
  for (int c = 0; c < C; ++c) {
    xv[c] = x.values(job.row0 + b0 + c);
    xs[c] = x.scales(job.row0 + b0 + c);
  }
  __m256 acc[R][C][2];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c][0] = acc[r][c][1] = _mm256_setzero_ps();
  }
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int64_t tile = w.TileIndex(rb, g);
    const int8_t* exponents = w.exponents() + tile * kRowBlock + r0;
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 ws = _mm256_set1_ps(WeightScale(exponents[r], M));
      const int64_t word_offset = tile * kTileBytes + (r0 + r) * 8;
      const int64_t at = (g * kRowBlock + r0 + r) * kGroupSize;
      auto part = [&]<const DigitPart& kPart>(int p, int h) {
        if constexpr (kFormed) {
          return _mm256_load_si256(reinterpret_cast<const __m256i*>(digits[p] + at + 32 * h));
        } else {
          return FormPart<kPart>(planes, word_offset, h);
        }
      };
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256i d0 = part.template operator()<D::kPart0>(0, h);
        const __m256i abs_d0 = _mm256_abs_epi8(d0);
        __m256i d1 = _mm256_setzero_si256(), abs_d1 = _mm256_setzero_si256();
        if constexpr (D::kProgram.split) {
          d1 = part.template operator()<D::kPart1>(1, h);
          abs_d1 = _mm256_abs_epi8(d1);
        }
#pragma GCC unroll 2
        for (int c = 0; c < C; ++c) {
          const __m256i xq = _mm256_load_si256(
              reinterpret_cast<const __m256i*>(xv[c] + g * kGroupSize + 32 * h));
          __m256i sum = LaneSums(abs_d0, d0, xq);
          if constexpr (D::kProgram.split) {
            sum = _mm256_add_epi32(_mm256_slli_epi32(sum, kSplitShift), LaneSums(abs_d1, d1, xq));
          }
          const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(sum),
                                         _mm256_load_ps(xs[c] + g * kLanesPerGroup + 8 * h));
          acc[r][c][h] = _mm256_fmadd_ps(f, ws, acc[r][c][h]);
        }
      }
    }
  }
  const int64_t rows = w.rows();
  for (int r = 0; r < R; ++r) {
    const int64_t n = rb * kRowBlock + r0 + r;
    if (n >= rows) break;
    for (int c = 0; c < C; ++c) job.y[(b0 + c) * rows + n] = Reduce(acc[r][c][0], acc[r][c][1]);
  }
}

template <int M, bool kTruncate>
void RowBlocks(const GemmJob& job, int64_t rb0, int64_t rb1) {
  // From 3 batch rows on, each row block's d is formed once (the plane spreading
  // is most of the work on AVX2) and read back for every batch row.
  thread_local std::vector<__m256i> digit_storage;
  int8_t* digits[2] = {nullptr, nullptr};
  const bool formed = job.batch >= 3;
  if (formed) {
    const size_t per_part = static_cast<size_t>(job.w->groups()) * kRowBlock * 2;  // 2 YMM per row
    digit_storage.resize(2 * per_part);
    digits[0] = reinterpret_cast<int8_t*>(digit_storage.data());
    digits[1] = digits[0] + per_part * 32;
  }
  for (int64_t rb = rb0; rb < rb1; ++rb) {
    if (formed) {
      FormRowBlock<M, kTruncate>(*job.w, rb, digits);
      int64_t b0 = 0;
      for (; b0 + 2 <= job.batch; b0 += 2) {
        for (int r0 = 0; r0 < kRowBlock; r0 += 2) Tile<M, kTruncate, 2, 2, true>(job, rb, r0, b0, digits);
      }
      if (b0 < job.batch) {
        for (int r0 = 0; r0 < kRowBlock; r0 += 2) Tile<M, kTruncate, 2, 1, true>(job, rb, r0, b0, digits);
      }
      continue;
    }
    int64_t b0 = 0;
    for (; b0 + 2 <= job.batch; b0 += 2) {
      for (int r0 = 0; r0 < kRowBlock; r0 += 2) Tile<M, kTruncate, 2, 2, false>(job, rb, r0, b0, nullptr);
    }
    if (b0 < job.batch) {
      Tile<M, kTruncate, 4, 1, false>(job, rb, 0, b0, nullptr);
      Tile<M, kTruncate, 4, 1, false>(job, rb, 4, b0, nullptr);
    }
  }
}

}  // namespace

void RowBlocksAvx2(const GemmJob& job, int64_t rb0, int64_t rb1) {
  DispatchPrecision(job.m, job.mode,
                    [&]<int M, bool kTruncate>() { RowBlocks<M, kTruncate>(job, rb0, rb1); });
}

}  // namespace otaro::sefp::internal
