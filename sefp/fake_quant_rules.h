// The per-weight arithmetic of SEFP (../shared/design/SEFP.md), in a header that
// compiles both as host C++ (C++17 and later) and as CUDA device code, so that
// the CPU paths (EncodeGroup, DecodeWeight, FakeQuantizeGroup in format.cc, the
// GEMM kernels) and the CUDA trainer's fake quantization
// (trainer/cuda/fake_quant_kernel.cu) run ONE implementation of the rules.
// format.h includes this header; callers keep writing sefp::rules::X.
//
// Every step is free of libm calls and of per-weight branches (so that the CPU
// group loops vectorize), and every scale is an exact power of two built from
// the float32 exponent bits: a product by one is a single correctly rounded
// operation, the same value std::ldexp returns, on the CPU and on the GPU alike.
// No step depends on the compiler or on fast-math contractions: the only
// multiply-adds are of the form (exact integer + 0 or 1/2) * 2^k.
#ifndef OTARO_SEFP_FAKE_QUANT_RULES_H_
#define OTARO_SEFP_FAKE_QUANT_RULES_H_

#include <cstdint>
#include <cstring>
#if __cplusplus >= 202002L
#include <bit>
#endif

#if defined(__CUDACC__)
#define OTARO_HD __host__ __device__
#else
#define OTARO_HD
#endif

namespace otaro::sefp {

inline constexpr int kGroupSize = 64;
inline constexpr int kMasterBits = 8;
inline constexpr int kMinBits = 2;
inline constexpr int kMinExponent = -16;
inline constexpr int kMaxExponent = 15;
inline constexpr int8_t kZeroGroupExponent = -128;

enum class Reconstruction { kMidpoint, kTruncate };

namespace rules {

// The bits of a float32 and back (std::bit_cast where the dialect has it, the
// CUDA intrinsics on the device, a memcpy otherwise; all three are the same
// reinterpretation).
OTARO_HD inline uint32_t FloatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#elif __cplusplus >= 202002L
  return std::bit_cast<uint32_t>(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
OTARO_HD inline float BitsToFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#elif __cplusplus >= 202002L
  return std::bit_cast<float>(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// |w| as bits (sign cleared). For finite floats the order of these integers is the
// order of |w|, and NaN/Inf are exactly the values >= kNonFiniteBits.
OTARO_HD inline uint32_t AbsBits(float w) { return FloatBits(w) & 0x7fffffffu; }
inline constexpr uint32_t kNonFiniteBits = 0x7f800000u;

// 2^k, exact, for -126 <= k <= 127 (normal range).
OTARO_HD inline float PowerOfTwo(int k) { return BitsToFloat(static_cast<uint32_t>(k + 127) << 23); }

// The group exponent from AbsBits(max |w|) of a finite group: floor(log2 a) is the
// biased exponent field minus 127 for a normal a; a subnormal a (field 0) is below
// 2^-126 and clamps to kMinExponent like any a < 2^-16.
OTARO_HD inline int8_t GroupExponent(uint32_t max_abs_bits) {
  if (max_abs_bits == 0) return kZeroGroupExponent;
  const int e = static_cast<int>(max_abs_bits >> 23) - 127;
  return static_cast<int8_t>(e < kMinExponent ? kMinExponent : e > kMaxExponent ? kMaxExponent : e);
}

// 1 / step8 = 2^(7 - e) for a non-zero group (7 - e in [-8, 23]).
OTARO_HD inline float InverseStep8(int8_t exponent) {
  return PowerOfTwo(kMasterBits - 1 - exponent);
}

// q8 = min(floor(|w| / step8), 255), counting saturations in *saturated. The clamp
// comes before the conversion (which truncates, i.e. floors a non-negative value)
// so that huge weights in a group clamped at e = 15 never overflow it. The clamp
// is written as std::min(scaled, 255.0f) is defined, (255 < scaled ? 255 : scaled).
OTARO_HD inline int32_t QuantizeMagnitude(float abs_w, float inverse_step8, int32_t* saturated) {
  const float scaled = abs_w * inverse_step8;
  *saturated += scaled >= 256.0f ? 1 : 0;  // floor(scaled) > 255
  return static_cast<int32_t>(255.0f < scaled ? 255.0f : scaled);
}

// The decoded step 2^(e + 1 - m) (e + 1 - m in [-23, 14]); 0 for a zero group, so
// that every magnitude of a zero group decodes to exactly 0 through the same formula.
OTARO_HD inline float DecodeStep(int8_t exponent, int m) {
  return exponent == kZeroGroupExponent ? 0.0f : PowerOfTwo(exponent + 1 - m);
}

// c: 1/2 for midpoint, 0 for truncate.
OTARO_HD inline float ReconstructionOffset(Reconstruction mode) {
  return mode == Reconstruction::kMidpoint ? 0.5f : 0.0f;
}

// (q8 >> (8 - m) + c) * step: the sum is exact (< 512) and so is the product by a
// power of two (the result stays in the normal range).
OTARO_HD inline float DecodeMagnitude(int32_t q8, int m, float offset, float step) {
  return (static_cast<float>(q8 >> (kMasterBits - m)) + offset) * step;
}

// (-1)^sign * magnitude for a magnitude >= +0.0, keeping the sign on zeros.
OTARO_HD inline float ApplySign(float magnitude, uint32_t sign) {
  return BitsToFloat(FloatBits(magnitude) | (sign << 31));
}

// --- fake quantization, Q(w, m) straight from float32 weights ---------------
// What EncodeGroup followed by DecodeWeight computes, with the scales formed once
// per group. A caller (the CPU group loop, the CUDA kernel):
//   1. max_abs_bits = max over the group of AbsBits(w); the group holds NaN/Inf
//      iff max_abs_bits >= kNonFiniteBits, and must then be refused;
//   2. scales = FakeQuantScales(GroupExponent(max_abs_bits), m, mode);
//   3. out[i] = FakeQuantizeWeight(w[i], scales, m, &saturated) for each weight.

struct FakeQuantScales {
  float inverse_step8;  // 1 / step8; 0 for a zero group (every |w| is 0 there)
  float step;           // the decoded step 2^(e + 1 - m); 0 for a zero group
  float offset;         // ReconstructionOffset(mode)
};

OTARO_HD inline FakeQuantScales ScalesForGroup(int8_t exponent, int m, Reconstruction mode) {
  FakeQuantScales s;
  // A zero group: any finite scale does (every |w| is 0), and DecodeStep is 0.
  s.inverse_step8 = exponent == kZeroGroupExponent ? 0.0f : InverseStep8(exponent);
  s.step = DecodeStep(exponent, m);
  s.offset = ReconstructionOffset(mode);
  return s;
}

// Q(w, m) of one finite weight of a group with `scales`; adds its saturation to
// *saturated. The sign of w is kept, on zeros too.
OTARO_HD inline float FakeQuantizeWeight(float w, const FakeQuantScales& scales, int m,
                                         int32_t* saturated) {
  const uint32_t bits = FloatBits(w);
  const int32_t q8 = QuantizeMagnitude(BitsToFloat(bits & 0x7fffffffu), scales.inverse_step8,
                                       saturated);
  return ApplySign(DecodeMagnitude(q8, m, scales.offset, scales.step), bits >> 31);
}

}  // namespace rules
}  // namespace otaro::sefp

#endif  // OTARO_SEFP_FAKE_QUANT_RULES_H_
