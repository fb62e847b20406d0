// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq (BUILD).
#include "sefp/kernels/activations_avx512.h"

#include <immintrin.h>

#include <limits>

namespace otaro::sefp::internal {

// Per block of 4 inputs (16 blocks in 4 ZMM), exactly activations.cc's steps:
// amax, 127 / amax, round half to even, clamp, amax / 127; zero and non-finite
// blocks as there.
void QuantizeGroupAvx512(const float* x, int8_t* q, float* scales, int32_t* offsets) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
  for (int i = 0; i < 4; ++i) {
    const __m512 v = _mm512_loadu_ps(x + 16 * i);
    // max |x| of each block of 4 as bits (NaN and Inf above every finite value).
    __m512i m = _mm512_and_si512(_mm512_castps_si512(v), abs_mask);
    m = _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_CDAB));
    m = _mm512_max_epu32(m, _mm512_shuffle_epi32(m, _MM_PERM_BADC));
    const __mmask16 zero = _mm512_cmpeq_epi32_mask(m, _mm512_setzero_si512());
    const __mmask16 non_finite = _mm512_cmpge_epu32_mask(m, _mm512_set1_epi32(0x7f800000));
    const __m512 amax = _mm512_castsi512_ps(m);
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(127.0f), amax);
    __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));  // round half to even
    r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(-127)), _mm512_set1_epi32(127));
    r = _mm512_maskz_mov_epi32(static_cast<__mmask16>(~(zero | non_finite)), r);
    __m512 scale = _mm512_div_ps(amax, _mm512_set1_ps(127.0f));
    scale = _mm512_mask_mov_ps(scale, zero, _mm512_setzero_ps());
    scale = _mm512_mask_mov_ps(scale, non_finite, _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
    __m512i sum = _mm512_add_epi32(r, _mm512_shuffle_epi32(r, _MM_PERM_CDAB));
    sum = _mm512_add_epi32(sum, _mm512_shuffle_epi32(sum, _MM_PERM_BADC));
    sum = _mm512_mullo_epi32(sum, _mm512_set1_epi32(-128));
    // Element 0 of each block of 4.
    const __m512i first = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm_storeu_ps(scales + 4 * i, _mm512_castps512_ps128(_mm512_permutexvar_ps(first, scale)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(offsets + 4 * i),
                     _mm512_castsi512_si128(_mm512_permutexvar_epi32(first, sum)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16 * i), _mm512_cvtsepi32_epi8(r));
  }
}

}  // namespace otaro::sefp::internal
