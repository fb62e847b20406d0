// SEFP (Shared Exponent Floating Point): the number format's rules, in one place.
// ../shared/design/SEFP.md is normative; this file implements it exactly and the
// golden vectors (sefp_golden.json) check it bit for bit.
//
// A group is 64 consecutive weights of one row ([out, in] row-major, along `in`).
// Encoding stores per group an exponent e = clamp(floor(log2 max|w|), -16, 15)
// (-128 for an all-zero group), and per weight a sign bit and an 8-bit magnitude
// q8 = min(floor(|w| / 2^(e-7)), 255), kept as 8 bit-planes. Decoding at precision m
// keeps the top m bits: Q(w, m) = (-1)^s (q8 >> (8-m) + c) 2^(e+1-m), with c = 1/2
// (midpoint, default) or 0 (truncate). A lower precision is a bit-prefix of a
// higher one, so one stored model serves every m.
#ifndef OTARO_SEFP_FORMAT_H_
#define OTARO_SEFP_FORMAT_H_

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace otaro::sefp {

inline constexpr int kGroupSize = 64;
inline constexpr int kMasterBits = 8;
inline constexpr int kMinBits = 2;
inline constexpr int kMinExponent = -16;
inline constexpr int kMaxExponent = 15;
inline constexpr int8_t kZeroGroupExponent = -128;

enum class Reconstruction { kMidpoint, kTruncate };

// "midpoint" / "truncate".
absl::string_view ReconstructionName(Reconstruction mode);
absl::StatusOr<Reconstruction> ParseReconstruction(absl::string_view name);

// Accepts "4" or "E5M4" (any case); refuses anything outside 2..8.
absl::StatusOr<int> ParsePrecision(absl::string_view text);
// OK iff 2 <= m <= 8.
absl::Status CheckPrecision(int m);

// --- the per-weight rules ----------------------------------------------------
// Every path that encodes or decodes (EncodeGroup, DecodeWeight, FakeQuantizeGroup)
// is a loop over these few inline steps, so there is one implementation of the
// arithmetic. They are inline, and free of libm calls and per-weight branches, so
// that the group loops vectorize. Scales are exact powers of two built from the
// float32 exponent bits: a product by one is a single correctly rounded operation,
// the same value std::ldexp returns, so nothing here depends on the compiler.
namespace rules {

inline uint32_t FloatBits(float f) { return std::bit_cast<uint32_t>(f); }

// |w| as bits (sign cleared). For finite floats the order of these integers is the
// order of |w|, and NaN/Inf are exactly the values >= kNonFiniteBits.
inline uint32_t AbsBits(float w) { return FloatBits(w) & 0x7fffffffu; }
inline constexpr uint32_t kNonFiniteBits = 0x7f800000u;

// 2^k, exact, for -126 <= k <= 127 (normal range).
inline float PowerOfTwo(int k) { return std::bit_cast<float>(static_cast<uint32_t>(k + 127) << 23); }

// The group exponent from AbsBits(max |w|) of a finite group: floor(log2 a) is the
// biased exponent field minus 127 for a normal a; a subnormal a (field 0) is below
// 2^-126 and clamps to kMinExponent like any a < 2^-16.
inline int8_t GroupExponent(uint32_t max_abs_bits) {
  if (max_abs_bits == 0) return kZeroGroupExponent;
  const int e = static_cast<int>(max_abs_bits >> 23) - 127;
  return static_cast<int8_t>(std::clamp(e, kMinExponent, kMaxExponent));
}

// 1 / step8 = 2^(7 - e) for a non-zero group (7 - e in [-8, 23]).
inline float InverseStep8(int8_t exponent) { return PowerOfTwo(kMasterBits - 1 - exponent); }

// q8 = min(floor(|w| / step8), 255), counting saturations in *saturated. The clamp
// comes before the conversion (which truncates, i.e. floors a non-negative value)
// so that huge weights in a group clamped at e = 15 never overflow it.
inline int32_t QuantizeMagnitude(float abs_w, float inverse_step8, int32_t* saturated) {
  const float scaled = abs_w * inverse_step8;
  *saturated += scaled >= 256.0f ? 1 : 0;  // floor(scaled) > 255
  return static_cast<int32_t>(std::min(scaled, 255.0f));
}

// The decoded step 2^(e + 1 - m) (e + 1 - m in [-23, 14]); 0 for a zero group, so
// that every magnitude of a zero group decodes to exactly 0 through the same formula.
inline float DecodeStep(int8_t exponent, int m) {
  return exponent == kZeroGroupExponent ? 0.0f : PowerOfTwo(exponent + 1 - m);
}

// c: 1/2 for midpoint, 0 for truncate.
inline float ReconstructionOffset(Reconstruction mode) {
  return mode == Reconstruction::kMidpoint ? 0.5f : 0.0f;
}

// (q8 >> (8 - m) + c) * step: the sum is exact (< 512) and so is the product by a
// power of two (the result stays in the normal range).
inline float DecodeMagnitude(int32_t q8, int m, float offset, float step) {
  return (static_cast<float>(q8 >> (kMasterBits - m)) + offset) * step;
}

// (-1)^sign * magnitude for a magnitude >= +0.0, keeping the sign on zeros.
inline float ApplySign(float magnitude, uint32_t sign) {
  return std::bit_cast<float>(FloatBits(magnitude) | (sign << 31));
}

}  // namespace rules

// --- one group -------------------------------------------------------------

// Encodes `n` (1..64) finite weights. Writes n sign bits (0/1) and n q8 values.
// Returns the group exponent (kZeroGroupExponent for an all-zero group) and adds
// the number of weights whose q8 saturated at 255 (only possible when e was clamped
// at 15) to *saturated. Non-finite input is the caller's job to refuse (EncodeTensor
// does, naming the tensor).
int8_t EncodeGroup(const float* w, int n, uint8_t* sign, uint8_t* q8, int64_t* saturated);

// Q for one weight from its stored code. Exactly representable in float32; the sign
// is kept on zeros (-0.0 for s = 1), and a zero group decodes to +-0.0.
float DecodeWeight(int8_t exponent, uint8_t sign, uint8_t q8, int m, Reconstruction mode);

// Q(w, m) for one group of `n` (1..64) float32 weights, straight from the weights:
// bit for bit EncodeGroup followed by DecodeWeight of every weight, built from the
// same rules above, but with the scales computed once per group and finiteness
// checked once per group (on max |w|). This is the trainer's hot path
// (FakeQuantize). `out` may alias `w`. Returns false, writing nothing, if the group
// holds NaN or Inf; otherwise sets *exponent and adds saturations to *saturated.
bool FakeQuantizeGroup(const float* w, int n, int m, Reconstruction mode, float* out,
                       int8_t* exponent, int64_t* saturated);

// --- whole tensors -----------------------------------------------------------

// The logical content of one quantized [rows, cols] weight (SEFP.md "Storage").
// Bit arrays are packed per row, LSB first: element c of row r is bit (c % 8) of
// byte r * row_bytes() + c / 8; the unused high bits of a row's last byte are 0.
// This is the on-disk form of the checkpoint; kernels use PackedMatrix (layout.h).
struct SefpTensor {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<int8_t> exponents;              // [rows, groups_per_row()]
  std::vector<uint8_t> signs;                 // [rows, row_bytes()] bits
  std::array<std::vector<uint8_t>, 8> planes; // planes[p]: bit p of q8, [rows, row_bytes()]
  int64_t saturated = 0;                      // weights whose q8 was clamped to 255

  int64_t groups_per_row() const { return (cols + kGroupSize - 1) / kGroupSize; }
  int64_t row_bytes() const { return (cols + 7) / 8; }
  uint8_t sign(int64_t r, int64_t c) const { return Bit(signs, r, c); }
  uint8_t q8(int64_t r, int64_t c) const;
  int8_t exponent(int64_t r, int64_t c) const {
    return exponents[r * groups_per_row() + c / kGroupSize];
  }
  // Q(w[r, c], m).
  float Decode(int64_t r, int64_t c, int m, Reconstruction mode) const {
    return DecodeWeight(exponent(r, c), sign(r, c), q8(r, c), m, mode);
  }
  // The whole tensor at precision m, row-major [rows, cols].
  absl::StatusOr<std::vector<float>> DecodeAll(int m, Reconstruction mode) const;
  // Checks sizes, exponent range, zero padding bits and that zero groups carry no
  // magnitude bits. `name` is used in the error.
  absl::Status Validate(absl::string_view name) const;

 private:
  uint8_t Bit(const std::vector<uint8_t>& a, int64_t r, int64_t c) const {
    return (a[r * row_bytes() + c / 8] >> (c % 8)) & 1;
  }
};

// Encodes a row-major [rows, cols] float32 tensor. Refuses NaN/Inf with an error
// naming `name` and the position. Saturations are counted in the result and logged.
absl::StatusOr<SefpTensor> EncodeTensor(absl::string_view name, absl::Span<const float> w,
                                        int64_t rows, int64_t cols);

// bf16 / fp16 inputs are converted exactly (common/float16.h) and encoded as float32.
absl::StatusOr<SefpTensor> EncodeTensorBf16(absl::string_view name,
                                            absl::Span<const uint16_t> w, int64_t rows,
                                            int64_t cols);
absl::StatusOr<SefpTensor> EncodeTensorFp16(absl::string_view name,
                                            absl::Span<const uint16_t> w, int64_t rows,
                                            int64_t cols);

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_FORMAT_H_
