// IEEE binary16 (fp16) and bfloat16 <-> float32, bit-exact. One copy for the
// whole project: model readers (safetensors, GGUF), SEFP encoding from half
// inputs, and the writers of half-precision tensors all use these.
#ifndef OTARO_COMMON_FLOAT16_H_
#define OTARO_COMMON_FLOAT16_H_

#include <cstdint>
#include <cmath>
#include <cstring>

namespace otaro {

inline float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint32_t FloatToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// Exact: every bfloat16 value is a float32 value.
inline float Bf16ToFloat(uint16_t bits) { return BitsToFloat(static_cast<uint32_t>(bits) << 16); }

// Round to nearest even; NaN stays NaN (quiet).
inline uint16_t FloatToBf16(float f) {
  uint32_t bits = FloatToBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// Exact: every fp16 value (subnormals, infinities, NaN payloads) is a float32 value.
inline float Fp16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return BitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return BitsToFloat(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return BitsToFloat(sign);
  // Subnormal: normalise the mantissa.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  mantissa &= 0x3ffu;
  return BitsToFloat(sign | static_cast<uint32_t>(113 - shift) << 23 | (mantissa << 13));
}

// Round to nearest even, with overflow to infinity and gradual underflow.
inline uint16_t FloatToFp16(float f) {
  const uint32_t bits = FloatToBits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;  // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // Rounds to >= 65520: infinity.
  if (abs < 0x38800000u) {                        // Below the smallest normal: subnormal.
    // Scale into the subnormal range exactly with float arithmetic, which rounds
    // to nearest even at 2^-24.
    float magnitude = BitsToFloat(abs) * 16777216.0f;  // 2^24
    return sign | static_cast<uint16_t>(static_cast<uint32_t>(std::nearbyint(magnitude)));
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - (112u << 23)) >> 13);
}

}  // namespace otaro

#endif  // OTARO_COMMON_FLOAT16_H_
