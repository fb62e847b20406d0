// AVX-512 path (this file alone is compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512vnni -mavx512vbmi -mavx512bitalg -mgfni; the dispatcher
// calls it only after cpuid says so).
//
// ## Forming d: a bit transpose and a table lookup
// A tile's plane j is 64 bytes, one word per row (layout.h). For every row and
// chunk of 8 weights, three rounds of byte/word/dword unpacks gather the chunk's
// byte from each of planes 0..7 into one 64-bit word, and one GF2P8AFFINEQB
// transposes that 8x8 bit matrix: byte i then holds weight i's bits of planes
// 0..7 (bit j = plane j). d (+128, the u8 form VPDPBUSD multiplies) is one
// VPERMB (VPERMI2B for m = 6) of that byte in a 64-entry table built from the
// DigitProgram at compile time; the split precisions (m = 7, 8) look up each
// part, the low part after a second GF2P8AFFINEQB that gathers its planes'
// bits, and add plane 8 (m = 8) with one VPSHUFBITQMB mask. Per 64 weights that
// is ~4 operations for m <= 6 and ~8 for m = 8, where one masked byte add per
// plane (and a mask load) took 2(m + 1).
//
// ## The register arrangement ("mixed")
// The unpacks leave 128-bit lane L of a register holding row 2L + h (h = 0, 1)
// and the chunk pair k (chunks 2k, 2k + 1; k = 0..3): its 4 int32 lanes of
// VPDPBUSD products are gemm.h's lanes l = 4k .. 4k + 3 of that row. A batch row's
// inputs for chunk pair k are broadcast to the 4 lanes. Accumulators keep the
// same arrangement, and ReduceMixed runs LaneTree on 4 rows at once. Every
// (row, l) gets exactly gemm.h's integers and float values.
//
// ## float(I) * scale in one operation
// VPDPBUSD accumulates onto the activations' float_offsets, so its int32 result
// read as a float is 1.5 x 2^23 + I, and fma(that, scale, float_bias_scale)
// rounds I * scale once: the value of converting and multiplying, one vector
// operation fewer per 64 products (activations.h says why it is exact).
//
// Batch rows 1 and 2 use the arrangement directly. From 3 batch rows on, each
// row block's d is formed once, turned into one register per row (a 4x4
// transpose of 128-bit lanes) and stored in an L1-sized buffer that a 4 x 4
// register tile reads for every batch row.
#include <immintrin.h>

#include <array>
#include <vector>

#include "sefp/kernels/internal.h"

namespace otaro::sefp::internal {
namespace {

// --- the lookup tables, from the DigitProgram ------------------------------------
// The transposed byte holds planes 0..7 (bit j = plane j); plane 8 is added
// with a mask. A part is looked up either by that byte as is ("direct": its
// planes are all below bit 6, or below bit 7 for the 128-entry table of m = 6),
// or by a byte whose low bits are its planes in increasing order, gathered by a
// GF2P8AFFINEQB with `select` ("selected").
struct PartTable {
  bool selected = false;
  uint64_t select = 0;  // the affine matrix: row 7 - q = 1 << (q-th plane)
  int entries = 64;     // 64 (VPERMB) or 128 (VPERMI2B)
  std::array<uint8_t, 128> table = {};
  bool has_plane8 = false;
  int8_t plane8_add = 0;
};

constexpr PartTable MakePartTable(const DigitPart& part, bool split) {
  PartTable p;
  int bit_of_plane[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
  int max_plane = 0, planes = 0;
  for (int t = 0; t < part.terms; ++t) {
    if (part.plane[t] == 8) {
      p.has_plane8 = true;
      p.plane8_add = part.add[t];
    } else {
      max_plane = part.plane[t] > max_plane ? part.plane[t] : max_plane;
      ++planes;
    }
  }
  if (max_plane <= 5 || (!split && max_plane == 6)) {
    p.entries = max_plane <= 5 ? 64 : 128;
    for (int j = 0; j < 8; ++j) bit_of_plane[j] = j;
  } else {
    p.selected = true;
    int q = 0;
    for (int j = 0; j < 8; ++j) {
      bool used = false;
      for (int t = 0; t < part.terms; ++t) used = used || part.plane[t] == j;
      if (!used) continue;
      bit_of_plane[j] = q;
      p.select |= uint64_t{1} << j << (8 * (7 - q));
      ++q;
    }
  }
  for (int idx = 0; idx < p.entries; ++idx) {
    int v = part.base + 128;
    for (int t = 0; t < part.terms; ++t) {
      const int j = part.plane[t];
      if (j < 8 && ((idx >> bit_of_plane[j]) & 1)) v += part.add[t];
    }
    p.table[idx] = static_cast<uint8_t>(v & 0xFF);
  }
  return p;
}

template <int M, bool kTruncate>
struct Digits {
  static constexpr DigitProgram kProgram =
      MakeDigitProgram(M, kTruncate ? Reconstruction::kTruncate : Reconstruction::kMidpoint);
  static constexpr bool kSplit = kProgram.split;
  static constexpr int kParts = kSplit ? 2 : 1;
  // Two objects, not an array: a template argument may name a complete object
  // only (clang refuses an array element).
  static constexpr PartTable kTable0 = MakePartTable(kProgram.part[0], kSplit);
  static constexpr PartTable kTable1 = MakePartTable(kProgram.part[1], kSplit);
};

// x byte i = 1 << i: with a data word as the matrix, GF2P8AFFINEQB's byte i gets
// bit i of data byte 7 - b as its bit b.
constexpr uint64_t kTransposeIdentity = 0x8040201008040201ull;

template <const PartTable& kT>
__attribute__((always_inline)) inline __m512i LookUp(__m512i bits) {
  const __m512i idx =
      kT.selected ? _mm512_gf2p8affine_epi64_epi8(bits, _mm512_set1_epi64(kT.select), 0) : bits;
  const __m512i lo = _mm512_loadu_si512(kT.table.data());
  if constexpr (kT.entries == 128) {
    return _mm512_permutex2var_epi8(lo, idx, _mm512_loadu_si512(kT.table.data() + 64));
  } else {
    return _mm512_permutexvar_epi8(idx, lo);
  }
}

// d (+128) of one tile (row block, group) in the mixed arrangement for row
// parity H: d[p][k] is part p, chunk pair k. `tile` is the tile's byte offset
// inside a plane array.
// |d| = 2 q_7 + 1 - t of m = 7 (at most 255: one u8) from the transposed byte
// (bit j = plane j): bit 8 - j of |d| is digit plane j XOR the sign (plane 0),
// j = 1..7, and bit 0 is the constant 1 - t (the affine's immediate).
constexpr uint64_t kMagnitude7 = 0x0081412111090503ull;

template <int M, bool kTruncate, int H, bool kMagnitude = false>
__attribute__((always_inline)) inline void FormMixed(const uint8_t* const* planes, int64_t tile,
                                                     __m512i (&d)[2][4]) {
  static_assert(!kMagnitude || M == 7, "only m = 7's magnitudes fit a byte with planes 0..7");
  using D = Digits<M, kTruncate>;
  constexpr int kTop = M < 8 ? M : 7;  // planes in the transposed byte
  auto plane = [&](int j) {
    return j <= kTop ? _mm512_load_si512(planes[j] + tile) : _mm512_setzero_si512();
  };
  auto unpack8 = [](__m512i a, __m512i b) {
    return H == 0 ? _mm512_unpacklo_epi8(a, b) : _mm512_unpackhi_epi8(a, b);
  };
  // Bytes of a data word: plane 7 - b at byte b (so plane j lands on bit j).
  const __m512i s76 = kTop >= 6 ? unpack8(plane(7), plane(6)) : _mm512_setzero_si512();
  const __m512i s54 = kTop >= 4 ? unpack8(plane(5), plane(4)) : _mm512_setzero_si512();
  const __m512i s32 = unpack8(plane(3), plane(2));
  const __m512i s10 = unpack8(plane(1), plane(0));
  const __m512i hi_lo = kTop >= 4 ? _mm512_unpacklo_epi16(s76, s54) : _mm512_setzero_si512();
  const __m512i hi_hi = kTop >= 4 ? _mm512_unpackhi_epi16(s76, s54) : _mm512_setzero_si512();
  const __m512i lo_lo = _mm512_unpacklo_epi16(s32, s10);
  const __m512i lo_hi = _mm512_unpackhi_epi16(s32, s10);
  const __m512i words[4] = {
      _mm512_unpacklo_epi32(hi_lo, lo_lo), _mm512_unpackhi_epi32(hi_lo, lo_lo),
      _mm512_unpacklo_epi32(hi_hi, lo_hi), _mm512_unpackhi_epi32(hi_hi, lo_hi)};
  const __m512i identity = _mm512_set1_epi64(static_cast<int64_t>(kTransposeIdentity));
  __m512i plane8_words = _mm512_setzero_si512();
  if constexpr (M == 8) {
    // Both 64-bit halves of lane L get row 2L + H's plane-8 word.
    plane8_words = _mm512_permutexvar_epi64(
        _mm512_setr_epi64(H, H, 2 + H, 2 + H, 4 + H, 4 + H, 6 + H, 6 + H),
        _mm512_load_si512(planes[8] + tile));
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    const __m512i bits = _mm512_gf2p8affine_epi64_epi8(identity, words[k], 0);
    if constexpr (kMagnitude) {
      d[0][k] = _mm512_gf2p8affine_epi64_epi8(
          bits, _mm512_set1_epi64(static_cast<int64_t>(kMagnitude7)), kTruncate ? 0 : 1);
      continue;
    }
    d[0][k] = LookUp<D::kTable0>(bits);
    if constexpr (D::kSplit) d[1][k] = LookUp<D::kTable1>(bits);
    if constexpr (M == 8) {
      // Byte 16L + i takes bit 16k + i of its word.
      const __m512i bit_index = _mm512_add_epi8(
          _mm512_set1_epi8(static_cast<char>(16 * k)),
          _mm512_setr4_epi32(0x03020100, 0x07060504, 0x0B0A0908, 0x0F0E0D0C));
      const __mmask64 set = _mm512_bitshuffle_epi64_mask(plane8_words, bit_index);
      constexpr int p8 = D::kTable0.has_plane8 ? 0 : 1;
      constexpr int8_t plane8_add = p8 == 0 ? D::kTable0.plane8_add : D::kTable1.plane8_add;
      d[p8][k] = _mm512_mask_add_epi8(d[p8][k], set, d[p8][k],
                                      _mm512_set1_epi8(plane8_add));
    }
  }
}

// LaneTree of each of 4 accumulators (16 lanes each), the 4 sums in order:
// the halving steps done for the 4 at once by 128-bit lane shuffles.
inline __m128 ReduceFour(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  // v8[i] = l[i] + l[i + 8]: quarters 0, 1 plus quarters 2, 3.
  const __m512 v8_01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44),
                                     _mm512_shuffle_f32x4(a0, a1, 0xEE));
  const __m512 v8_23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44),
                                     _mm512_shuffle_f32x4(a2, a3, 0xEE));
  // v4[i] = v8[i] + v8[i + 4]: quarter j of v4 belongs to accumulator j.
  const __m512 v4 = _mm512_add_ps(_mm512_shuffle_f32x4(v8_01, v8_23, 0x88),
                                  _mm512_shuffle_f32x4(v8_01, v8_23, 0xDD));
  const __m512 v2 = _mm512_add_ps(v4, _mm512_permute_ps(v4, 0x0E));  // v4[0]+v4[2], v4[1]+v4[3]
  const __m512 v1 = _mm512_add_ps(v2, _mm512_permute_ps(v2, 0x01));
  return _mm512_castps512_ps128(
      _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                            v1));
}

// LaneTree of 4 rows at once: acc[k] lane L holds lanes 4k..4k+3 of row 2L + h.
// Returns the 4 sums in elements 0, 4, 8, 12.
inline __m512 ReduceMixed(const __m512 (&acc)[4]) {
  const __m512 v8a = _mm512_add_ps(acc[0], acc[2]);  // l[i] + l[i + 8], i = 0..3
  const __m512 v8b = _mm512_add_ps(acc[1], acc[3]);  // i = 4..7
  const __m512 v4 = _mm512_add_ps(v8a, v8b);         // v8[i] + v8[i + 4]
  const __m512 v2 = _mm512_add_ps(v4, _mm512_permute_ps(v4, 0x0E));  // v4[0]+v4[2], v4[1]+v4[3]
  return _mm512_add_ps(v2, _mm512_permute_ps(v2, 0x01));
}

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

// kFloatBiasBits + the exact integer products of one d register (both parts)
// with a batch row's inputs: `off` takes the parts' +128 back out, `float_off`
// (off + kFloatBiasBits) also adds the bias, so the int32 result read as a
// float is kFloatBias + I (activations.h).
template <bool kSplit>
__attribute__((always_inline)) inline __m512i BiasedProducts(__m512i off, __m512i float_off,
                                                             __m512i d0, __m512i d1, __m512i xq) {
  if constexpr (kSplit) {
    __m512i sum = _mm512_dpbusd_epi32(off, d0, xq);
    sum = _mm512_add_epi32(_mm512_slli_epi32(sum, kSplitShift), float_off);
    return _mm512_dpbusd_epi32(sum, d1, xq);
  } else {
    return _mm512_dpbusd_epi32(float_off, d0, xq);
  }
}

// float(I) * scale_x, rounded once: fma(kFloatBias + I, scale_x, -kFloatBias * scale_x).
__attribute__((always_inline)) inline __m512 ScaledProducts(__m512i biased, __m512 scale_x,
                                                            __m512 bias_scale_x) {
  return _mm512_fmadd_ps(_mm512_castsi512_ps(biased), scale_x, bias_scale_x);
}

// Where batch rows b0 .. b0 + C - 1 of a job's activations are (activations.h).
template <int C>
struct BatchRows {
  BatchRows(const GemmJob& job, int64_t b0) {
    for (int c = 0; c < C; ++c) {
      const int64_t b = job.row0 + b0 + c;
      values[c] = job.x->values(b);
      scales[c] = job.x->scales(b);
      float_bias_scales[c] = job.x->float_bias_scales(b);
      offsets[c] = job.x->offsets(b);
      float_offsets[c] = job.x->float_offsets(b);
    }
  }
  const int8_t* values[C];
  const float* scales[C];
  const float* float_bias_scales[C];
  const int32_t* offsets[C];
  const int32_t* float_offsets[C];
};

// Rows of parity H0 .. H0 + NH - 1 of row block rb (4 each) times batch rows
// b0 .. b0 + C - 1, d formed in registers for every group (batch rows 1, 2).
template <int M, bool kTruncate, int H0, int NH, int C>
void MixedTile(const GemmJob& job, int64_t rb, int64_t b0, const float* ws) {
  using D = Digits<M, kTruncate>;
  const PackedMatrix& w = *job.w;
  const uint8_t* planes[kMasterBits + 1];
  for (int j = 0; j <= M; ++j) planes[j] = w.plane(j);
  const BatchRows<C> in(job, b0);
  __m512 acc[NH][C][4];
  for (int h = 0; h < NH; ++h) {
    for (int c = 0; c < C; ++c) {
      for (int k = 0; k < 4; ++k) acc[h][c][k] = _mm512_setzero_ps();
    }
  }
  // Lane L of the weight-scale vector of parity h: ws of row 2L + h.
  const __m512i ws_index[2] = {
      _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6),
      _mm512_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7)};
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int64_t tile = w.TileIndex(rb, g) * kTileBytes;
    __m512i d[NH][2][4];
    if constexpr (H0 == 0) FormMixed<M, kTruncate, 0>(planes, tile, d[0]);
    if constexpr (NH == 2) FormMixed<M, kTruncate, 1>(planes, tile, d[1]);
    if constexpr (H0 == 1 && NH == 1) FormMixed<M, kTruncate, 1>(planes, tile, d[0]);
    const __m512 ws8 = _mm512_castps256_ps512(_mm256_loadu_ps(ws + 8 * g));
    __m512 wsv[NH];
    for (int h = 0; h < NH; ++h) wsv[h] = _mm512_permutexvar_ps(ws_index[H0 + h], ws8);
#pragma GCC unroll 2
    for (int c = 0; c < C; ++c) {
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m512i xq = _mm512_broadcast_i32x4(
            _mm_load_si128(reinterpret_cast<const __m128i*>(in.values[c] + g * kGroupSize +
                                                            16 * k)));
        const int64_t lane = g * kLanesPerGroup + 4 * k;
        const __m512i off = D::kSplit ? _mm512_broadcast_i32x4(_mm_load_si128(
                                            reinterpret_cast<const __m128i*>(in.offsets[c] + lane)))
                                      : _mm512_setzero_si512();
        const __m512i float_off = _mm512_broadcast_i32x4(
            _mm_load_si128(reinterpret_cast<const __m128i*>(in.float_offsets[c] + lane)));
        const __m512 scale_x = _mm512_broadcast_f32x4(_mm_load_ps(in.scales[c] + lane));
        const __m512 bias_scale_x =
            _mm512_broadcast_f32x4(_mm_load_ps(in.float_bias_scales[c] + lane));
#pragma GCC unroll 2
        for (int h = 0; h < NH; ++h) {
          const __m512i sum = BiasedProducts<D::kSplit>(off, float_off, d[h][0][k], d[h][1][k], xq);
          acc[h][c][k] = _mm512_fmadd_ps(ScaledProducts(sum, scale_x, bias_scale_x), wsv[h],
                                         acc[h][c][k]);
        }
      }
    }
  }
  const int64_t rows = w.rows();
  for (int h = 0; h < NH; ++h) {
    for (int c = 0; c < C; ++c) {
      alignas(64) float sums[16];
      _mm512_store_ps(sums, ReduceMixed(acc[h][c]));
      for (int L = 0; L < 4; ++L) {
        const int64_t n = rb * kRowBlock + 2 * L + H0 + h;
        if (n < rows) job.y[(b0 + c) * rows + n] = sums[4 * L];
      }
    }
  }
}

// d (+128) of the 8 rows of row block rb for every group, formed once for a
// whole batch: part p of row r, group g at digits[p][(g * 8 + r) * 64], in the
// weights' own order (a 4x4 transpose of the mixed registers' 128-bit lanes).
// kMagnitude (m = 7 only): |d| instead of d's parts, one part.
template <int M, bool kTruncate, bool kMagnitude = false>
void FormRowBlock(const PackedMatrix& w, int64_t rb, uint8_t* const* digits) {
  using D = Digits<M, kTruncate>;
  constexpr int kParts = kMagnitude ? 1 : D::kParts;
  const uint8_t* planes[kMasterBits + 1];
  for (int j = 0; j <= M; ++j) planes[j] = w.plane(j);
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int64_t tile = w.TileIndex(rb, g) * kTileBytes;
    __m512i d[2][2][4];
    FormMixed<M, kTruncate, 0, kMagnitude>(planes, tile, d[0]);
    FormMixed<M, kTruncate, 1, kMagnitude>(planes, tile, d[1]);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 2
      for (int p = 0; p < kParts; ++p) {
        const __m512i* t = d[h][p];
        uint8_t* out = digits[p] + (g * kRowBlock + h) * kGroupSize;
        const __m512i u0 = _mm512_shuffle_i64x2(t[0], t[1], 0x44);
        const __m512i u1 = _mm512_shuffle_i64x2(t[0], t[1], 0xEE);
        const __m512i u2 = _mm512_shuffle_i64x2(t[2], t[3], 0x44);
        const __m512i u3 = _mm512_shuffle_i64x2(t[2], t[3], 0xEE);
        // Row 2L + h is lane L of every chunk pair.
        _mm512_store_si512(out + 0 * kGroupSize, _mm512_shuffle_i64x2(u0, u2, 0x88));
        _mm512_store_si512(out + 2 * kGroupSize, _mm512_shuffle_i64x2(u0, u2, 0xDD));
        _mm512_store_si512(out + 4 * kGroupSize, _mm512_shuffle_i64x2(u1, u3, 0x88));
        _mm512_store_si512(out + 6 * kGroupSize, _mm512_shuffle_i64x2(u1, u3, 0xDD));
      }
    }
  }
}

// The outputs of rows r0 .. r0 + 3 of row block rb for batch rows b0 .. b0 + C - 1:
// LaneTree of each accumulator.
template <int C>
__attribute__((always_inline)) inline void StoreFour(const GemmJob& job, int64_t rb, int r0,
                                                     int64_t b0, const __m512 (&acc)[4][C]) {
  const int64_t rows = job.w->rows();
  const int64_t n0 = rb * kRowBlock + r0;
  for (int c = 0; c < C; ++c) {
    float* y = job.y + (b0 + c) * rows + n0;
    const __m128 sums = ReduceFour(acc[0][c], acc[1][c], acc[2][c], acc[3][c]);
    if (n0 + 4 <= rows) {
      _mm_storeu_ps(y, sums);
    } else {
      alignas(16) float v[4];
      _mm_store_ps(v, sums);
      for (int r = 0; n0 + r < rows; ++r) y[r] = v[r];
    }
  }
}

// Rows r0 .. r0 + R - 1 of row block rb times batch rows b0 .. b0 + C - 1 (of the
// job), d read from FormRowBlock's `digits`; ws = WeightScales(rb).
template <int M, bool kTruncate, int R, int C>
void Tile(const GemmJob& job, int64_t rb, int r0, int64_t b0, const float* ws,
          const uint8_t* const* digits) {
  static_assert(R == 4, "the epilogue reduces 4 rows at once");
  using D = Digits<M, kTruncate>;
  const PackedMatrix& w = *job.w;
  const BatchRows<C> in(job, b0);
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < w.groups(); ++g) {
    __m512i d0[R], d1[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t at = (g * kRowBlock + r0 + r) * kGroupSize;
      d0[r] = _mm512_load_si512(digits[0] + at);
      d1[r] = D::kSplit ? _mm512_load_si512(digits[1] + at) : _mm512_setzero_si512();
    }
    const float* ws_g = ws + 8 * g + r0;
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const int64_t lane = g * kLanesPerGroup;
      const __m512i xq = _mm512_load_si512(in.values[c] + g * kGroupSize);
      const __m512i off =
          D::kSplit ? _mm512_load_si512(in.offsets[c] + lane) : _mm512_setzero_si512();
      const __m512i float_off = _mm512_load_si512(in.float_offsets[c] + lane);
      const __m512 scale_x = _mm512_load_ps(in.scales[c] + lane);
      const __m512 bias_scale_x = _mm512_load_ps(in.float_bias_scales[c] + lane);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i sum = BiasedProducts<D::kSplit>(off, float_off, d0[r], d1[r], xq);
        acc[r][c] = _mm512_fmadd_ps(ScaledProducts(sum, scale_x, bias_scale_x),
                                    _mm512_set1_ps(ws_g[r]), acc[r][c]);
      }
    }
  }
  StoreFour(job, rb, r0, b0, acc);
}

// --- from 3 batch rows on, the weight scale in the conversion bias -------------
// Avx512Accumulate::kWeightScaleInBias (internal.h). Per (row, group) the float
// B = 1.5 x 2^(23 + k), k = e - m, has an ulp of 2^k, so the int32 bits(B) + I
// read as a float is B + I 2^k exactly (|I| < 2^22), and subtracting B leaves
// I x 2^(e - m) exactly. One multiply by the activation scale then rounds to
// round(I x scale) x 2^(e - m) (a power of two commutes with rounding while
// every value is a normal float: activations.h's kMinScale), and one add
// accumulates it: gemm.h's fma(float(I) * scale, 2^(e - m), acc), bit for bit.
// A zero group gets d = 0 and k = 0, so it adds 0 (NaN for a NaN scale, as the
// fma form gives). VPDPBUSD multiplies u8 by s8, so here the inputs carry the
// +128 (q ^ 0x80) and the digits are signed; the -128 sum(d) that takes it
// back out depends on the weights only and joins bits(B) in the value the
// products accumulate onto ("start"), once per row block for the whole batch.
// A split precision's hi part (d = 32 hi + lo) starts at -128 sum(hi), is
// shifted, and the lo part accumulates onto bits(B) - 128 sum(lo).

// bits(B) of a (row, group) with exponent e at precision m: 1.5 x 2^(23 + e - m),
// or 1.5 x 2^23 for a zero group (whose digits are 0, so any B gives 0).
inline int32_t ConversionBiasBits(int8_t e, int m) {
  return kFloatBiasBits + (e == kZeroGroupExponent ? 0 : (e - m) * (1 << 23));
}

// Rewrites FormRowBlock's digits of row block rb in place as signed bytes (0
// for a zero group) and fills, per part p, starts[p] (16 int32 per (group,
// row), the digits' order), and biases[8 g + r] = B.
template <int M, bool kTruncate>
void PrepareBiasedRowBlock(const PackedMatrix& w, int64_t rb, uint8_t* const* digits,
                           int32_t* const* starts, float* biases) {
  using D = Digits<M, kTruncate>;
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int8_t* e = w.exponents() + w.TileIndex(rb, g) * kRowBlock;
    for (int r = 0; r < kRowBlock; ++r) {
      const bool zero = e[r] == kZeroGroupExponent;
      const int64_t at = (g * kRowBlock + r) * kGroupSize;
      const int32_t bias_bits = ConversionBiasBits(e[r], M);
      __builtin_memcpy(&biases[8 * g + r], &bias_bits, sizeof(float));
#pragma GCC unroll 2
      for (int p = 0; p < D::kParts; ++p) {
        const __m512i d = zero ? _mm512_setzero_si512()
                               : _mm512_xor_si512(_mm512_load_si512(digits[p] + at), flip);
        _mm512_store_si512(digits[p] + at, d);
        const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, d);
        const __m512i base = _mm512_set1_epi32(p == D::kParts - 1 ? bias_bits : 0);
        _mm512_store_si512(starts[p] + at / 4, _mm512_sub_epi32(base, _mm512_slli_epi32(sum, 7)));
      }
    }
  }
}

// Tile's work in the kWeightScaleInBias form, from PrepareBiasedRowBlock's
// digits, starts and biases.
template <int M, bool kTruncate, int R, int C>
void BiasedTile(const GemmJob& job, int64_t rb, int r0, int64_t b0, const float* biases,
                const uint8_t* const* digits, const int32_t* const* starts) {
  static_assert(R == 4, "the epilogue reduces 4 rows at once");
  using D = Digits<M, kTruncate>;
  const PackedMatrix& w = *job.w;
  const BatchRows<C> in(job, b0);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < w.groups(); ++g) {
    __m512i d0[R], s0[R];
    __m512 bias[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if constexpr (!D::kSplit) {
        const int64_t at = (g * kRowBlock + r0 + r) * kGroupSize;
        d0[r] = _mm512_load_si512(digits[0] + at);
        s0[r] = _mm512_load_si512(starts[0] + at / 4);
      }
      bias[r] = _mm512_set1_ps(biases[8 * g + r0 + r]);
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const int64_t lane = g * kLanesPerGroup;
      const __m512i xu = _mm512_xor_si512(_mm512_load_si512(in.values[c] + g * kGroupSize), flip);
      const __m512 scale_x = _mm512_load_ps(in.scales[c] + lane);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        __m512i sum;
        if constexpr (D::kSplit) {
          // Read from L1 each time: 16 accumulators and 16 digit and start
          // registers would not fit in 32 (measured: faster than 2 batch rows
          // per tile with them in registers).
          const int64_t at = (g * kRowBlock + r0 + r) * kGroupSize;
          sum = _mm512_dpbusd_epi32(_mm512_load_si512(starts[0] + at / 4), xu,
                                    _mm512_load_si512(digits[0] + at));
          sum = _mm512_add_epi32(_mm512_slli_epi32(sum, kSplitShift),
                                 _mm512_load_si512(starts[1] + at / 4));
          sum = _mm512_dpbusd_epi32(sum, xu, _mm512_load_si512(digits[1] + at));
        } else {
          sum = _mm512_dpbusd_epi32(s0[r], xu, d0[r]);
        }
        const __m512 scaled_integer = _mm512_sub_ps(_mm512_castsi512_ps(sum), bias[r]);
        acc[r][c] = _mm512_add_ps(_mm512_mul_ps(scaled_integer, scale_x), acc[r][c]);
      }
    }
  }
  StoreFour(job, rb, r0, b0, acc);
}

// m = 7 in the kWeightScaleInBias form: |d| <= 255 is one u8, so VPDPBUSD
// multiplies it with the input, negated where the weight is negative (s8,
// |q| <= 127), onto bits(B): one product per pair instead of the split's two,
// a shift and an add; the negation (x ^ s) - s with s = 0xFF on negative
// weights costs two byte operations. FormRowBlock<7, t, true> wrote |d|; this
// zeroes a zero group's, stores each row's sign bytes s (64 per (group, row),
// the digits' order) and biases[8 g + r] = B.
template <bool kTruncate>
void PrepareMagnitudeRowBlock(const PackedMatrix& w, int64_t rb, uint8_t* magnitudes,
                              uint8_t* signs, float* biases) {
  constexpr int kM = 7;
  for (int64_t g = 0; g < w.groups(); ++g) {
    const int64_t tile = w.TileIndex(rb, g);
    const int8_t* e = w.exponents() + tile * kRowBlock;
    const uint64_t* sign_words = w.TileWords(0, tile);
    for (int r = 0; r < kRowBlock; ++r) {
      const int32_t bias_bits = ConversionBiasBits(e[r], kM);
      __builtin_memcpy(&biases[8 * g + r], &bias_bits, sizeof(float));
      const int64_t at = (g * kRowBlock + r) * kGroupSize;
      if (e[r] == kZeroGroupExponent) _mm512_store_si512(magnitudes + at, _mm512_setzero_si512());
      _mm512_store_si512(signs + at, _mm512_movm_epi8(sign_words[r]));
    }
  }
}

template <bool kTruncate, int R, int C>
void MagnitudeTile(const GemmJob& job, int64_t rb, int r0, int64_t b0, const float* biases,
                   const uint8_t* magnitudes, const uint8_t* signs) {
  static_assert(R == 4, "the epilogue reduces 4 rows at once");
  const PackedMatrix& w = *job.w;
  const BatchRows<C> in(job, b0);
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < w.groups(); ++g) {
    __m512i magnitude[R], sign[R];
    __m512 bias[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t at = (g * kRowBlock + r0 + r) * kGroupSize;
      magnitude[r] = _mm512_load_si512(magnitudes + at);
      sign[r] = _mm512_load_si512(signs + at);
      bias[r] = _mm512_set1_ps(biases[8 * g + r0 + r]);
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const __m512i x = _mm512_load_si512(in.values[c] + g * kGroupSize);
      const __m512 scale_x = _mm512_load_ps(in.scales[c] + g * kLanesPerGroup);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i signed_x = _mm512_sub_epi8(_mm512_xor_si512(x, sign[r]), sign[r]);
        const __m512i sum =
            _mm512_dpbusd_epi32(_mm512_castps_si512(bias[r]), magnitude[r], signed_x);
        const __m512 scaled_integer = _mm512_sub_ps(_mm512_castsi512_ps(sum), bias[r]);
        acc[r][c] = _mm512_add_ps(_mm512_mul_ps(scaled_integer, scale_x), acc[r][c]);
      }
    }
  }
  StoreFour(job, rb, r0, b0, acc);
}

// --- the split precisions (m = 7, 8) in 16-bit pairs --------------------------
// Avx512Accumulate::kWidePairs (internal.h). d = 32 hi + lo (|d| <= 511) is
// formed once per row block as int16, and so are the inputs once per job, both
// in the order that puts lane l's 4 inputs in two 16-bit pairs: the first
// register holds inputs 4l, 4l + 1 of every lane l, the second 4l + 2, 4l + 3.
// Two VPDPWSSD then give each lane exactly gemm.h's I[l] (|I| < 2^22, no
// saturation: the plain form wraps and never needs to), onto kFloatBiasBits,
// and the FMA form's two FMAs finish it: 4 operations per 64 products where
// the split form takes 6 (two VPDPBUSD, a shift and an add besides the FMAs).

// The input (0..63 of a group) in 16-bit word `word` (0..31) of pair register
// p: lane word / 2 holds inputs 4 l, 4 l + 1 in register 0, 4 l + 2, 4 l + 3
// in register 1. The one rule both the inputs' and the digits' orders follow.
constexpr int PairInput(int p, int word) { return 4 * (word / 2) + 2 * p + word % 2; }

// VPERMB indices putting register p's inputs in bytes 32 p .. 32 p + 31, so
// sign-extending each 32-byte half to int16 gives the two pair registers.
inline __m512i PairOrder() {
  alignas(64) static constexpr auto kIndex = [] {
    std::array<uint8_t, 64> index{};
    for (int i = 0; i < 64; ++i) index[i] = static_cast<uint8_t>(PairInput(i / 32, i % 32));
    return index;
  }();
  return _mm512_load_si512(kIndex.data());
}

// The two int16 pair registers of 64 signed bytes.
__attribute__((always_inline)) inline void WidenPairs(__m512i bytes, __m512i order, __m512i* first,
                                                      __m512i* second) {
  const __m512i paired = _mm512_permutexvar_epi8(order, bytes);
  *first = _mm512_cvtepi8_epi16(_mm512_castsi512_si256(paired));
  *second = _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64(paired, 1));
}

// VPERMI2B indices taking, from lo (bytes 0..63) and hi (64..127), the (lo, hi)
// byte pairs of d's int16 pair register `second` (0: inputs 4l, 4l + 1; 1:
// 4l + 2, 4l + 3), so that one VPMADDUBSW by (1, 32) gives lo + 32 hi.
inline __m512i LoHiPairOrder(int second) {
  alignas(64) static constexpr auto kIndex = [] {
    std::array<std::array<uint8_t, 64>, 2> index{};
    for (int p = 0; p < 2; ++p) {
      for (int word = 0; word < 32; ++word) {
        const int input = PairInput(p, word);
        index[p][2 * word] = static_cast<uint8_t>(input);            // lo
        index[p][2 * word + 1] = static_cast<uint8_t>(64 + input);   // hi
      }
    }
    return index;
  }();
  return _mm512_load_si512(kIndex[second].data());
}

// Rewrites FormRowBlock's two parts (+128 each) of row block rb in place as d's
// two int16 pair registers: digits[0] the first, digits[1] the second.
template <int M, bool kTruncate>
void PrepareWideRowBlock(const PackedMatrix& w, int64_t rb, uint8_t* const* digits) {
  static_assert(Digits<M, kTruncate>::kSplit, "only the split precisions need 16 bits");
  const __m512i order[2] = {LoHiPairOrder(0), LoHiPairOrder(1)};
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i weights = _mm512_set1_epi16(static_cast<int16_t>((1 << kSplitShift) << 8 | 1));
  for (int64_t g = 0; g < w.groups(); ++g) {
    for (int r = 0; r < kRowBlock; ++r) {
      const int64_t at = (g * kRowBlock + r) * kGroupSize;
      const __m512i hi = _mm512_xor_si512(_mm512_load_si512(digits[0] + at), flip);
      const __m512i lo = _mm512_xor_si512(_mm512_load_si512(digits[1] + at), flip);
#pragma GCC unroll 2
      for (int p = 0; p < 2; ++p) {
        // |lo + 32 hi| <= 511: VPMADDUBSW's saturation never applies.
        _mm512_store_si512(digits[p] + at, _mm512_maddubs_epi16(
                                               weights, _mm512_permutex2var_epi8(lo, order[p], hi)));
      }
    }
  }
}

// The job's inputs as int16 pairs: wide[2 (b G + g) + p] for batch row b of
// the job (from row0), group g of G, pair register p.
void WidenInputs(const GemmJob& job, std::vector<__m512i>* wide) {
  const int64_t groups = job.w->groups();
  wide->resize(static_cast<size_t>(2 * job.batch * groups));
  const __m512i order = PairOrder();
  for (int64_t b = 0; b < job.batch; ++b) {
    const int8_t* values = job.x->values(job.row0 + b);
    for (int64_t g = 0; g < groups; ++g) {
      __m512i* out = wide->data() + 2 * (b * groups + g);
      WidenPairs(_mm512_load_si512(values + g * kGroupSize), order, &out[0], &out[1]);
    }
  }
}

template <int R, int C>
void WideTile(const GemmJob& job, int64_t rb, int r0, int64_t b0, const float* ws,
              const uint8_t* const* digits, const __m512i* wide_inputs) {
  static_assert(R == 4, "the epilogue reduces 4 rows at once");
  const PackedMatrix& w = *job.w;
  const int64_t groups = w.groups();
  const BatchRows<C> in(job, b0);
  const __m512i float_bias = _mm512_set1_epi32(kFloatBiasBits);
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < groups; ++g) {
    __m512i d0[R], d1[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const int64_t at = (g * kRowBlock + r0 + r) * kGroupSize;
      d0[r] = _mm512_load_si512(digits[0] + at);
      d1[r] = _mm512_load_si512(digits[1] + at);
    }
    const float* ws_g = ws + 8 * g + r0;
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const __m512i* x = wide_inputs + 2 * ((b0 + c) * groups + g);
      const __m512i x0 = _mm512_load_si512(x), x1 = _mm512_load_si512(x + 1);
      const int64_t lane = g * kLanesPerGroup;
      const __m512 scale_x = _mm512_load_ps(in.scales[c] + lane);
      const __m512 bias_scale_x = _mm512_load_ps(in.float_bias_scales[c] + lane);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512i sum =
            _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(float_bias, d0[r], x0), d1[r], x1);
        acc[r][c] = _mm512_fmadd_ps(ScaledProducts(sum, scale_x, bias_scale_x),
                                    _mm512_set1_ps(ws_g[r]), acc[r][c]);
      }
    }
  }
  StoreFour(job, rb, r0, b0, acc);
}

// Calls tile.template operator()<C>(r0, b0) over the 8 rows of a row block
// (r0 = 0, 4) times every batch row: 4 batch rows per tile, then the rest.
template <typename TileFn>
__attribute__((always_inline)) inline void ForEachTile(int64_t batch, TileFn&& tile) {
  int64_t b0 = 0;
  for (; b0 + 4 <= batch; b0 += 4) {
    tile.template operator()<4>(0, b0);
    tile.template operator()<4>(4, b0);
  }
  for (int r0 : {0, 4}) {
    switch (batch - b0) {
      case 1: tile.template operator()<1>(r0, b0); break;
      case 2: tile.template operator()<2>(r0, b0); break;
      case 3: tile.template operator()<3>(r0, b0); break;
      default: break;
    }
  }
}

template <int M, bool kTruncate>
void RowBlocks(const GemmJob& job, int64_t rb0, int64_t rb1) {
  using D = Digits<M, kTruncate>;
  const int64_t groups = job.w->groups();
  thread_local std::vector<float> ws_storage;
  ws_storage.resize(static_cast<size_t>(groups) * kRowBlock);
  const float* ws = ws_storage.data();
  // From 3 batch rows on, each row block's d is formed once into an L1-sized
  // buffer and read back for every batch row (the integers, and so the results,
  // are the same as forming it in registers per tile).
  const bool formed = job.batch >= 3;
  const Avx512Accumulate form = Avx512AccumulateFor(M, job.batch);
  const bool biased = formed && form == Avx512Accumulate::kWeightScaleInBias;
  const bool wide = formed && D::kSplit && form == Avx512Accumulate::kWidePairs;
  thread_local std::vector<__m512i> wide_inputs;
  if (wide) WidenInputs(job, &wide_inputs);
  thread_local std::vector<__m512i> digit_storage, start_storage;
  uint8_t* digits[2] = {nullptr, nullptr};
  int32_t* starts[2] = {nullptr, nullptr};
  if (formed) {
    const size_t per_part = static_cast<size_t>(groups) * kRowBlock;
    digit_storage.resize(2 * per_part);
    digits[0] = reinterpret_cast<uint8_t*>(digit_storage.data());
    digits[1] = digits[0] + per_part * kGroupSize;
    if (biased) {
      start_storage.resize(2 * per_part);
      starts[0] = reinterpret_cast<int32_t*>(start_storage.data());
      starts[1] = starts[0] + per_part * kLanesPerGroup;
    }
  }
  for (int64_t rb = rb0; rb < rb1; ++rb) {
    if constexpr (D::kSplit) {
      if (wide) {
        FormRowBlock<M, kTruncate>(*job.w, rb, digits);
        PrepareWideRowBlock<M, kTruncate>(*job.w, rb, digits);
        WeightScales(*job.w, rb, M, ws_storage.data());
        ForEachTile(job.batch, [&]<int C>(int r0, int64_t b0) {
          WideTile<4, C>(job, rb, r0, b0, ws, digits, wide_inputs.data());
        });
        continue;
      }
    }
    if constexpr (M == 7) {
      if (biased) {
        // digits[0]: |d|; digits[1] (the split's second part, unused): signs.
        FormRowBlock<M, kTruncate, true>(*job.w, rb, digits);
        PrepareMagnitudeRowBlock<kTruncate>(*job.w, rb, digits[0], digits[1], ws_storage.data());
        ForEachTile(job.batch, [&]<int C>(int r0, int64_t b0) {
          MagnitudeTile<kTruncate, 4, C>(job, rb, r0, b0, ws, digits[0], digits[1]);
        });
        continue;
      }
    }
    if (biased) {
      FormRowBlock<M, kTruncate>(*job.w, rb, digits);
      // ws_storage holds the biases B here (no weight scales: they ride in B).
      PrepareBiasedRowBlock<M, kTruncate>(*job.w, rb, digits, starts, ws_storage.data());
      ForEachTile(job.batch, [&]<int C>(int r0, int64_t b0) {
        BiasedTile<M, kTruncate, 4, C>(job, rb, r0, b0, ws, digits, starts);
      });
      continue;
    }
    WeightScales(*job.w, rb, M, ws_storage.data());
    if (formed) {
      FormRowBlock<M, kTruncate>(*job.w, rb, digits);
      ForEachTile(job.batch, [&]<int C>(int r0, int64_t b0) {
        Tile<M, kTruncate, 4, C>(job, rb, r0, b0, ws, digits);
      });
      continue;
    }
    // One or two batch rows: d formed in registers, both row parities at once
    // for one batch row (for the split precisions 16 d + 8 accumulators: 1.12x
    // over one parity at a time at E5M8, sefp_gemv_bench), one at a time for two.
    if (job.batch == 1) {
      MixedTile<M, kTruncate, 0, 2, 1>(job, rb, 0, ws);
    } else {
      MixedTile<M, kTruncate, 0, 1, 2>(job, rb, 0, ws);
      MixedTile<M, kTruncate, 1, 1, 2>(job, rb, 0, ws);
    }
  }
}

}  // namespace

void RowBlocksAvx512(const GemmJob& job, int64_t rb0, int64_t rb1) {
  DispatchPrecision(job.m, job.mode,
                    [&]<int M, bool kTruncate>() { RowBlocks<M, kTruncate>(job, rb0, rb1); });
}

}  // namespace otaro::sefp::internal
