// AVX2 + FMA path of the decoded-tiles kernel (internal.h): for many batch rows
// (prefill), decoding each weight once and running plain FMAs beats looking up
// every digit again for every row (the lookup kernel's work grows with
// batch x (m + 1); this one's with m + 1 once, plus batch / 8 FMAs per weight).
//
// Decode, per tile row and half (32 weights): each plane's 32-bit word is spread
// to 32 bytes (VPSHUFB replicates byte i/8 into byte i, AND + CMPEQ test bit i%8),
// and the digits accumulate as D = 2 D + digit; q_m = D XOR (2^m - 1) where the
// sign is set (a digit is the magnitude bit XOR the sign, layout.h). Then eight
// at a time: (float(q_m) + c) * step, sign OR-ed in -- rules::DecodeMagnitude and
// rules::ApplySign, vectorized, so every decoded value equals DecodeWeight's.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "sefp/kernels/internal.h"

namespace otaro::sefp::internal {
namespace {

// Bytes 0..31 of the result: 0xFF where bit i of `word` is set.
inline __m256i SpreadBits(uint32_t word) {
  const __m256i replicate = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                             2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(word)), replicate);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

void DecodeRowBlock(const PackedMatrix& w, int m, Reconstruction mode, int64_t rb,
                    int64_t padded_cols, float* out) {
  const __m256 offset = _mm256_set1_ps(rules::ReconstructionOffset(mode));
  const __m256i low_m_bits = _mm256_set1_epi8(static_cast<char>((1 << m) - 1));
  const __m256i sign_bit = _mm256_set1_epi32(INT32_MIN);
  alignas(32) uint8_t q_bytes[32];
  alignas(32) int8_t sign_bytes[32];
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int64_t tile = w.TileIndex(rb, g);
    for (int lane = 0; lane < kRowBlock; ++lane) {
      const __m256 step = _mm256_set1_ps(rules::DecodeStep(w.exponents()[tile * kRowBlock + lane], m));
      float* row = out + lane * padded_cols + g * kGroupSize;
      for (int h = 0; h < 2; ++h) {
        const __m256i sign = SpreadBits(TileWord(w.plane(0), tile, h, lane));
        __m256i digits = _mm256_setzero_si256();
        for (int j = 1; j <= m; ++j) {
          // D = 2 D + digit (a set digit is -1 in the mask).
          digits = _mm256_sub_epi8(_mm256_add_epi8(digits, digits),
                                   SpreadBits(TileWord(w.plane(j), tile, h, lane)));
        }
        const __m256i q = _mm256_xor_si256(digits, _mm256_and_si256(sign, low_m_bits));
        _mm256_store_si256(reinterpret_cast<__m256i*>(q_bytes), q);
        _mm256_store_si256(reinterpret_cast<__m256i*>(sign_bytes), sign);
        for (int i = 0; i < 32; i += 8) {
          const __m256 qf = _mm256_cvtepi32_ps(
              _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q_bytes + i))));
          const __m256 magnitude = _mm256_mul_ps(_mm256_add_ps(qf, offset), step);
          const __m256i s = _mm256_and_si256(
              _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sign_bytes + i))),
              sign_bit);
          _mm256_store_ps(row + 32 * h + i, _mm256_or_ps(magnitude, _mm256_castsi256_ps(s)));
        }
      }
    }
  }
}

// DecodedDotTree of the 8 lanes.
inline float Tree(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // l_i + l_i+4
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                           // + l_i+2 pair
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));                          // + the odd one
}

// Outputs of 2 weight rows (q0, q1) x NB batch rows: 2 x NB accumulators, each an
// 8-lane fma chain over k. 2 x 6 accumulators + 2 weights + 1 input fit the 16
// YMM registers; every loaded weight vector serves NB rows, every input 2.
template <int NB>
void TwoRows(const float* q0, const float* q1, const float* x, int64_t kp, float* y0, float* y1,
             int64_t y_stride) {
  __m256 a0[NB], a1[NB];
  for (int b = 0; b < NB; ++b) a0[b] = a1[b] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kp; k += 8) {
    const __m256 w0 = _mm256_load_ps(q0 + k);
    const __m256 w1 = _mm256_load_ps(q1 + k);
#pragma GCC unroll 6
    for (int b = 0; b < NB; ++b) {
      const __m256 xb = _mm256_load_ps(x + b * kp + k);
      a0[b] = _mm256_fmadd_ps(w0, xb, a0[b]);
      a1[b] = _mm256_fmadd_ps(w1, xb, a1[b]);
    }
  }
  for (int b = 0; b < NB; ++b) {
    y0[b * y_stride] = Tree(a0[b]);
    if (y1 != nullptr) y1[b * y_stride] = Tree(a1[b]);
  }
}

}  // namespace

void DecodedRowBlocksAvx2(const DecodedGemmJob& job, int64_t rb0, int64_t rb1) {
  const PackedMatrix& w = *job.w;
  const int64_t kp = job.padded_cols;
  const int64_t rows = w.rows();
  thread_local std::vector<float> storage;
  storage.resize(static_cast<size_t>(kRowBlock * kp) + 8);
  float* decoded = storage.data();
  while (reinterpret_cast<uintptr_t>(decoded) % 32 != 0) ++decoded;
  constexpr int kBatchTile = 6;
  for (int64_t rb = rb0; rb < rb1; ++rb) {
    DecodeRowBlock(w, job.m, job.mode, rb, kp, decoded);
    for (int64_t b0 = 0; b0 < job.batch; b0 += kBatchTile) {
      const int nb = static_cast<int>(std::min<int64_t>(kBatchTile, job.batch - b0));
      for (int lane = 0; lane < kRowBlock; lane += 2) {
        const int64_t row = rb * kRowBlock + lane;
        if (row >= rows) break;
        float* y0 = job.y + b0 * rows + row;
        float* y1 = row + 1 < rows ? y0 + 1 : nullptr;
        const float* q0 = decoded + lane * kp;
        const float* x = job.x + b0 * kp;
        switch (nb) {
          case 1: TwoRows<1>(q0, q0 + kp, x, kp, y0, y1, rows); break;
          case 2: TwoRows<2>(q0, q0 + kp, x, kp, y0, y1, rows); break;
          case 3: TwoRows<3>(q0, q0 + kp, x, kp, y0, y1, rows); break;
          case 4: TwoRows<4>(q0, q0 + kp, x, kp, y0, y1, rows); break;
          case 5: TwoRows<5>(q0, q0 + kp, x, kp, y0, y1, rows); break;
          default: TwoRows<6>(q0, q0 + kp, x, kp, y0, y1, rows); break;
        }
      }
    }
  }
}

}  // namespace otaro::sefp::internal
