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
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sefp/fake_quant_rules.h"

namespace otaro::sefp {

// kGroupSize, kMasterBits, kMinBits, kMin/MaxExponent, kZeroGroupExponent and
// Reconstruction come from fake_quant_rules.h.

// "midpoint" / "truncate".
absl::string_view ReconstructionName(Reconstruction mode);
absl::StatusOr<Reconstruction> ParseReconstruction(absl::string_view name);

// Accepts "4" or "E5M4" (any case); refuses anything outside 2..8.
absl::StatusOr<int> ParsePrecision(absl::string_view text);
// OK iff 2 <= m <= 8.
absl::Status CheckPrecision(int m);

// --- the per-weight rules ---------------------------------------------------
// Every path that encodes or decodes (EncodeGroup, DecodeWeight, FakeQuantizeGroup,
// the CPU kernels, the CUDA trainer's fake quantization) is a loop over the inline
// steps in namespace rules (fake_quant_rules.h, shared by host and device code),
// so there is one implementation of the arithmetic.

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
