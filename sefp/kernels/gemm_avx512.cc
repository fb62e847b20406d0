// AVX-512 path (this file alone is compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512vnni; the dispatcher calls it only after cpuid says so).
// (Spreading the plane words with VBMI's VPMULTISHIFTQB + VPTERNLOGD instead of
// masks measured no faster on Zen 4, so VBMI is not required.)
//
// A group's 64 weights are one ZMM of bytes, and each digit plane word is an
// AVX-512 mask as stored (layout.h): d is formed with one masked byte add per
// plane (DigitProgram), offset by +128 so that VPDPBUSD (u8 x s8 -> 16 int32
// lanes of 4 products) multiplies it with the int8 activations exactly; the
// activations' lane offsets (-128 x lane sum) take the +128 back out.
// A register tile is R weight rows x C batch rows: d is formed once per row and
// group and used for all C batch rows, so batching divides the plane work.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "sefp/kernels/internal.h"

namespace otaro::sefp::internal {
namespace {

// The 16 lanes summed in LaneTree's order.
inline float Reduce(__m512 v) {
  const __m256 hi = _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0xEE));
  const __m256 v8 = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_movehdup_ps(v2)));
}

// One part of d (+128), for the row whose plane words are at words[j] (+ tile offset).
template <const DigitPart& kPart>
__attribute__((always_inline)) inline __m512i FormPart(const uint8_t* const* planes,
                                                       int64_t word_offset) {
  __m512i v = _mm512_set1_epi8(static_cast<char>(kPart.base + 128));
#pragma GCC unroll 10
  for (int t = 0; t < kPart.terms; ++t) {
    uint64_t word;
    __builtin_memcpy(&word, planes[kPart.plane[t]] + word_offset, 8);
    const __mmask64 k = _cvtu64_mask64(word);
    v = _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(kPart.add[t]));
  }
  return v;
}

template <int M, bool kTruncate>
struct Digits {
  static constexpr DigitProgram kProgram =
      MakeDigitProgram(M, kTruncate ? Reconstruction::kTruncate : Reconstruction::kMidpoint);
  static constexpr DigitPart kPart0 = kProgram.part[0];
  static constexpr DigitPart kPart1 = kProgram.part[1];
};

// 2^(e - m) of the 8 rows of every tile of row block rb: ws[8 g + r]. The same
// values as internal::WeightScale, 8 at a time: calling it per element made the
// batch-1 GEMV ~25% slower (sefp_gemv_bench, 1536x576, E5M3).
void WeightScales(const PackedMatrix& w, int64_t rb, int m, float* ws) {
  const __m256i bias = _mm256_set1_epi32(127 - m);
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int8_t* e8 = w.exponents() + w.TileIndex(rb, g) * kRowBlock;
    const __m256i e = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(e8)));
    const __mmask8 zero_group = _mm256_cmpeq_epi32_mask(e, _mm256_set1_epi32(kZeroGroupExponent));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(e, bias), 23);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(ws + 8 * g),
                        _mm256_maskz_mov_epi32(static_cast<__mmask8>(~zero_group), bits));
  }
}

// d (+128) of the 8 rows of row block rb for every group, formed once for a
// whole batch: part p of row r, group g at digits[p][(g * 8 + r) * 64].
template <int M, bool kTruncate>
void FormRowBlock(const PackedMatrix& w, int64_t rb, uint8_t* const* digits) {
  using D = Digits<M, kTruncate>;
  const uint8_t* planes[kMasterBits + 1];
  for (int j = 0; j <= M; ++j) planes[j] = w.plane(j);
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int64_t tile = w.TileIndex(rb, g);
    for (int r = 0; r < kRowBlock; ++r) {
      const int64_t word_offset = tile * kTileBytes + r * 8;
      const int64_t at = (g * kRowBlock + r) * kGroupSize;
      _mm512_store_si512(digits[0] + at, FormPart<D::kPart0>(planes, word_offset));
      if constexpr (D::kProgram.split) {
        _mm512_store_si512(digits[1] + at, FormPart<D::kPart1>(planes, word_offset));
      }
    }
  }
}

// Rows r0 .. r0 + R - 1 of row block rb times batch rows b0 .. b0 + C - 1 (of the
// job); ws = WeightScales(rb). Per group, the R rows' d come first -- formed
// from the planes, or (kFormed) loaded from FormRowBlock's `digits` -- then
// each batch row's inputs are loaded once for the R weight rows.
template <int M, bool kTruncate, int R, int C, bool kFormed>
void Tile(const GemmJob& job, int64_t rb, int r0, int64_t b0, const float* ws,
          const uint8_t* const* digits) {
  using D = Digits<M, kTruncate>;
  const PackedMatrix& w = *job.w;
  const QuantizedActivations& x = *job.x;
  const uint8_t* planes[kMasterBits + 1];
  for (int j = 0; j <= M; ++j) planes[j] = w.plane(j);
  const int8_t* xv[C];
  const float* xs[C];
  const int32_t* xo[C];
  for (int c = 0; c < C; ++c) {
    const int64_t b = job.row0 + b0 + c;
    xv[c] = x.values(b);
    xs[c] = x.scales(b);
    xo[c] = x.offsets(b);
  }
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < w.groups(); ++g) {
    __m512i d0[R], d1[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if constexpr (kFormed) {
        const int64_t at = (g * kRowBlock + r0 + r) * kGroupSize;
        d0[r] = _mm512_load_si512(digits[0] + at);
        d1[r] = D::kProgram.split ? _mm512_load_si512(digits[1] + at) : _mm512_setzero_si512();
      } else {
        const int64_t word_offset = w.TileIndex(rb, g) * kTileBytes + (r0 + r) * 8;
        d0[r] = FormPart<D::kPart0>(planes, word_offset);
        d1[r] = D::kProgram.split ? FormPart<D::kPart1>(planes, word_offset) : _mm512_setzero_si512();
      }
    }
    const float* ws_g = ws + 8 * g + r0;
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const __m512i xq = _mm512_load_si512(xv[c] + g * kGroupSize);
      const __m512i off = _mm512_load_si512(xo[c] + g * kLanesPerGroup);
      const __m512 scale_x = _mm512_load_ps(xs[c] + g * kLanesPerGroup);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        __m512i sum = _mm512_dpbusd_epi32(off, d0[r], xq);
        if constexpr (D::kProgram.split) {
          sum = _mm512_add_epi32(_mm512_slli_epi32(sum, kSplitShift), off);
          sum = _mm512_dpbusd_epi32(sum, d1[r], xq);
        }
        const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), scale_x);
        acc[r][c] = _mm512_fmadd_ps(f, _mm512_set1_ps(ws_g[r]), acc[r][c]);
      }
    }
  }
  const int64_t rows = w.rows();
  for (int r = 0; r < R; ++r) {
    const int64_t n = rb * kRowBlock + r0 + r;
    if (n >= rows) break;
    for (int c = 0; c < C; ++c) job.y[(b0 + c) * rows + n] = Reduce(acc[r][c]);
  }
}

template <int M, bool kTruncate>
void RowBlocks(const GemmJob& job, int64_t rb0, int64_t rb1) {
  const int64_t groups = job.w->groups();
  thread_local std::vector<float> ws_storage;
  ws_storage.resize(static_cast<size_t>(groups) * kRowBlock);
  const float* ws = ws_storage.data();
  // From 3 batch rows on, each row block's d is formed once into an L1-sized
  // buffer and read back for every batch row (the integers, and so the results,
  // are the same as forming it in registers per tile).
  const bool formed = job.batch >= 3;
  thread_local std::vector<__m512i> digit_storage;
  uint8_t* digits[2] = {nullptr, nullptr};
  if (formed) {
    const size_t per_part = static_cast<size_t>(groups) * kRowBlock;
    digit_storage.resize(2 * per_part);
    digits[0] = reinterpret_cast<uint8_t*>(digit_storage.data());
    digits[1] = digits[0] + per_part * kGroupSize;
  }
  for (int64_t rb = rb0; rb < rb1; ++rb) {
    WeightScales(*job.w, rb, M, ws_storage.data());
    if (formed) {
      FormRowBlock<M, kTruncate>(*job.w, rb, digits);
      int64_t b0 = 0;
      for (; b0 + 4 <= job.batch; b0 += 4) {
        Tile<M, kTruncate, 4, 4, true>(job, rb, 0, b0, ws, digits);
        Tile<M, kTruncate, 4, 4, true>(job, rb, 4, b0, ws, digits);
      }
      for (int r0 : {0, 4}) {
        switch (job.batch - b0) {
          case 1: Tile<M, kTruncate, 4, 1, true>(job, rb, r0, b0, ws, digits); break;
          case 2: Tile<M, kTruncate, 4, 2, true>(job, rb, r0, b0, ws, digits); break;
          case 3: Tile<M, kTruncate, 4, 3, true>(job, rb, r0, b0, ws, digits); break;
          default: break;
        }
      }
      continue;
    }
    // One or two batch rows: d formed in registers, 8 weight rows at a time
    // (4 for the two-part precisions with two batch rows: registers).
    if (job.batch == 1) {
      Tile<M, kTruncate, 8, 1, false>(job, rb, 0, 0, ws, nullptr);
    } else if constexpr (Digits<M, kTruncate>::kProgram.split) {
      Tile<M, kTruncate, 4, 2, false>(job, rb, 0, 0, ws, nullptr);
      Tile<M, kTruncate, 4, 2, false>(job, rb, 4, 0, ws, nullptr);
    } else {
      Tile<M, kTruncate, 8, 2, false>(job, rb, 0, 0, ws, nullptr);
    }
  }
}

}  // namespace

void RowBlocksAvx512(const GemmJob& job, int64_t rb0, int64_t rb1) {
  DispatchPrecision(job.m, job.mode,
                    [&]<int M, bool kTruncate>() { RowBlocks<M, kTruncate>(job, rb0, rb1); });
}

}  // namespace otaro::sefp::internal
