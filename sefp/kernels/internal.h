// Internal interface between the kernel dispatcher (gemm.cc) and the per-ISA
// implementations (gemm_scalar.cc, gemm_avx2.cc, gemm_avx512.cc). Not for other
// users. gemm.h states the arithmetic every path performs.
#ifndef OTARO_SEFP_KERNELS_INTERNAL_H_
#define OTARO_SEFP_KERNELS_INTERNAL_H_

#include <cstdint>

#include "sefp/format.h"
#include "sefp/kernels/activations.h"
#include "sefp/layout.h"

namespace otaro::sefp::internal {

struct GemmJob {
  const PackedMatrix* w;
  int m;
  Reconstruction mode;
  const QuantizedActivations* x;
  int64_t row0;   // first row of x
  int64_t batch;  // rows of x from row0
  float* y;       // [batch][w->rows()]
};

// How the AVX-512 kernel scales and accumulates its exact integers from 3 batch
// rows on (gemm_avx512.cc). All perform gemm.h's arithmetic, bit for bit; they
// differ in which execution units they load:
// - kFma: fma(float(I), scale, bias) then fma(that, 2^(e - m), acc): two FMAs
//   beside each VPDPBUSD, which suits Intel, where every 512-bit float
//   operation shares ports 0 and 5;
// - kWeightScaleInBias: the weight's power of two rides in the conversion bias,
//   then VSUBPS, VMULPS, VADDPS: on AMD Zen 4 and 5 the adds run on pipes of
//   their own, 2 cycles per product instead of 3.
// - kWidePairs, for the split precisions (m = 7, 8) only: d widened to int16
//   once per row block, two VPDPWSSD per 64 products where the split takes two
//   VPDPBUSD, a shift and an add, then kFma's two FMAs. Forced at m <= 6, whose
//   d fits a byte (one VPDPBUSD per 64 products), it means kFma.
enum class Avx512Accumulate { kFma, kWeightScaleInBias, kWidePairs };
// The form for a product at `mantissa_bits` over `batch` rows, unless a test
// forced one. On AMD CPUs kWeightScaleInBias. Elsewhere kFma, except:
// - m = 7: kWeightScaleInBias, which has a path of its own there (|d| formed
//   by one GF2P8AFFINEQB, one product per pair where the FMA form splits d in
//   two): on an Intel Xeon (Sapphire Rapids class) it ran m = 7 in 76-82% of
//   the FMA form's time at batch 4..256 on 1 and 2 threads, and every other m
//   in 106-120%;
// - m = 8 from 16 rows: kWidePairs, whose widening per row block pays off
//   only over enough rows: same CPU, 1536x576, 1 thread, against kFma: batch
//   4 +4..8% time, 8 even, 16 -12..17%, 64 -17..21% (at m = 7 it was even with
//   the magnitude path at 16 rows and 6-9% faster at 64, so m = 7 keeps it).
Avx512Accumulate Avx512AccumulateFor(int mantissa_bits, int64_t batch);
// Tests: run the other form on this CPU (both are valid on any AVX-512 CPU).
void ForceAvx512AccumulateForTesting(Avx512Accumulate form);
void ClearForcedAvx512AccumulateForTesting();

// Computes the outputs of row blocks [rb0, rb1) for every batch row.
void RowBlocksScalar(const GemmJob& job, int64_t rb0, int64_t rb1);
void RowBlocksAvx2(const GemmJob& job, int64_t rb0, int64_t rb1);
void RowBlocksAvx512(const GemmJob& job, int64_t rb0, int64_t rb1);

// Calls fn.template operator()<M, kTruncate>() for precision m and `mode`: the
// SIMD paths compile one kernel per (m, mode), and this picks it.
template <typename Fn>
void DispatchPrecision(int m, Reconstruction mode, Fn&& fn) {
  auto with_mode = [&]<int M>() {
    if (mode == Reconstruction::kTruncate) {
      fn.template operator()<M, true>();
    } else {
      fn.template operator()<M, false>();
    }
  };
  switch (m) {
    case 2: with_mode.template operator()<2>(); break;
    case 3: with_mode.template operator()<3>(); break;
    case 4: with_mode.template operator()<4>(); break;
    case 5: with_mode.template operator()<5>(); break;
    case 6: with_mode.template operator()<6>(); break;
    case 7: with_mode.template operator()<7>(); break;
    case 8: with_mode.template operator()<8>(); break;
    default: break;  // the dispatcher checked m
  }
}

// 2^(e - m) (exact, e - m >= -24 is a normal float), 0 for a zero group.
inline float WeightScale(int8_t e, int m) {
  return e == kZeroGroupExponent ? 0.0f : rules::PowerOfTwo(e - m);
}

// The fixed reduction of the 16 lane sums (what a 512-bit horizontal sum does by
// halving): l[i] + l[i + 8], then + 4, + 2, + 1.
inline float LaneTree(const float* l) {
  float v8[8], v4[4];
  for (int i = 0; i < 8; ++i) v8[i] = l[i] + l[i + 8];
  for (int i = 0; i < 4; ++i) v4[i] = v8[i] + v8[i + 4];
  const float v2a = v4[0] + v4[2], v2b = v4[1] + v4[3];
  return v2a + v2b;
}

// --- forming d from the digit planes (the SIMD paths) --------------------------
// d = sum_j delta_j c_j over planes j = 0..m (layout.h), with c_0 = 2^m - t and
// c_j = 2^(m-j). A SIMD path starts every byte at `base` (the value when every
// mask bit is 0: sign bit 0 -> delta_0 = +1, digit bit 0 -> delta_j = -1) and adds
// `add[t]` where plane `plane[t]`'s bit is set. Byte arithmetic wraps, which is
// harmless: the final value is in range, and sums mod 256 are exact.
// For m <= 6, |d| <= 127 fits one int8 part. For m = 7, 8 it is split into two
// int8 parts, d = 32 * hi + lo: hi holds the digits with c_j >= 32 (divided by
// 32, |hi| <= 15), lo the rest (|lo| <= 32, including truncate's -delta_0).
struct DigitPart {
  int terms = 0;
  int8_t base = 0;
  int plane[kMasterBits + 2] = {};
  int8_t add[kMasterBits + 2] = {};
};

struct DigitProgram {
  bool split = false;   // d = 32 * part[0] + part[1]
  DigitPart part[2];
};

inline constexpr int kSplitShift = 5;  // the hi part's weight, 2^5

constexpr DigitProgram MakeDigitProgram(int m, Reconstruction mode) {
  const int t = mode == Reconstruction::kTruncate ? 1 : 0;
  DigitProgram p;
  auto add_term = [](DigitPart& part, int plane, int coef) constexpr {
    // delta = +1 (sign 0) contributes +coef at base; a set sign bit flips it.
    // Digit planes: base holds -coef; a set bit flips it to +coef.
    if (plane == 0) {
      part.base = static_cast<int8_t>(part.base + coef);
      part.add[part.terms] = static_cast<int8_t>(-2 * coef);
    } else {
      part.base = static_cast<int8_t>(part.base - coef);
      part.add[part.terms] = static_cast<int8_t>(2 * coef);
    }
    part.plane[part.terms++] = plane;
  };
  if (m <= 6) {
    add_term(p.part[0], 0, (1 << m) - t);
    for (int j = 1; j <= m; ++j) add_term(p.part[0], j, 1 << (m - j));
    return p;
  }
  p.split = true;
  add_term(p.part[0], 0, (1 << m) >> kSplitShift);
  for (int j = 1; j <= m; ++j) {
    const int c = 1 << (m - j);
    if (c >= (1 << kSplitShift)) {
      add_term(p.part[0], j, c >> kSplitShift);
    } else {
      add_term(p.part[1], j, c);
    }
  }
  if (t) add_term(p.part[1], 0, -1);
  return p;
}

}  // namespace otaro::sefp::internal

#endif  // OTARO_SEFP_KERNELS_INTERNAL_H_
