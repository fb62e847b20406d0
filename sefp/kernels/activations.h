// Activations as the SEFP kernels multiply them: int8, with one float scale per
// row and per block of 4 inputs (one int32 lane of the kernels: gemm.h). The
// kernels convert each lane's exact integer sum to float anyway, so a scale per
// lane costs them nothing over one per group (they multiply by a vector of 16
// scales instead of a broadcast one), and the rounding error is relative to the
// largest of 4 inputs, not of 64 or 32 (llama.cpp's Q8_0): measured on SmolLM2,
// per-64 scales moved perplexity by 0.6-1.4%, per-4 by far less
// (docs/PERFORMANCE.md). The rule, for each row and block (inputs past the row's
// end count as 0):
//
//     amax  = max |x_i|
//     scale = amax / 127 (float division), its 2 lowest significand bits cleared
//     q_i   = round_half_even(x_i * (127 / amax)), clamped to [-127, 127]
//
// An all-zero block has scale 0 and q = 0; a block holding NaN or Inf, or whose
// scale would reach 2^93 (amax ~1.3e30: a diverged model), has scale NaN and
// q = 0, so every output it touches is NaN (never a silent number). A block
// whose scale would be below kMinScale = 2^-102 (amax ~2.5e-29) counts as all
// zero: then every product I * scale * 2^(e - m) of the kernels is a normal
// float, so scaling by the weight's power of two commutes with rounding, and
// the AVX-512 kernel may apply it before the activation scale (gemm.h).
// The kernels then compute sum_i Q(w_i, m) * q_i * scale with the integer part
// exact, so the only difference from float activations is this rounding of x
// (error <= 1/254 of the block's largest input per element, the cut scale adds
// a relative 2^-22).
//
// Why the scale keeps 22 significant bits: the AVX-512 kernel turns a lane's
// exact integer I into float(I) * scale with ONE fused multiply-add,
//     fma(float(kFloatBias + I), scale, -kFloatBias * scale)
// where kFloatBias + I is formed by integer addition on the float's bits
// (float_offsets below) and -kFloatBias * scale is exact for such a scale
// (float_bias_scales below), so the fma rounds I * scale once: the same bits as
// converting I and multiplying, one operation fewer per lane.
//
// One object is quantized once and multiplied with several weights (q, k and v
// share their input). Quantization is row-by-row, so a row's values never depend
// on the other rows.
#ifndef OTARO_SEFP_KERNELS_ACTIVATIONS_H_
#define OTARO_SEFP_KERNELS_ACTIVATIONS_H_

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "sefp/format.h"

namespace otaro::sefp {

// 16 int32 lanes per group: lane l covers inputs 4l .. 4l + 3 (kernels/gemm.h),
// and each lane is one quantization block with its own scale.
inline constexpr int kLanesPerGroup = 16;
inline constexpr int kLaneInputs = kGroupSize / kLanesPerGroup;

// 1.5 x 2^23 and its float bits: for |I| < 2^22 (a lane's products are at most
// 4 x 127 x 511), the int32 kFloatBiasBits + I is the float kFloatBias + I.
inline constexpr float kFloatBias = 12582912.0f;
inline constexpr int32_t kFloatBiasBits = 0x4B400000;

// Lane scales below this are flushed to 0 (the rule above): 2^-102 times the
// smallest weight scale 2^-24 is the smallest normal float.
inline constexpr float kMinScale = 0x1p-102f;

class QuantizedActivations {
 public:
  QuantizedActivations() = default;
  QuantizedActivations(QuantizedActivations&&) = default;
  QuantizedActivations& operator=(QuantizedActivations&&) = default;

  // Quantizes x, row-major [rows, cols] (x.size() == rows * cols), reusing this
  // object's buffers. `simd` = false forces the portable code (tests: every
  // path gives the same bits).
  void Quantize(absl::Span<const float> x, int64_t rows, int64_t cols, bool simd = true);

  // The same in parts (threads may quantize disjoint row ranges at once):
  // Resize once, then QuantizeRows for each range [row0, row1) of x, which is
  // the whole [rows, cols] matrix.
  void Resize(int64_t rows, int64_t cols);
  void QuantizeRows(absl::Span<const float> x, int64_t row0, int64_t row1, bool simd = true);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int64_t groups() const { return groups_; }

  // Row r: groups() * 64 values, 0 past cols(); 64-byte aligned.
  const int8_t* values(int64_t r) const { return values_.get() + r * groups_ * kGroupSize; }
  // Row r: groups() x 16 scales, one per lane; 64-byte aligned.
  const float* scales(int64_t r) const { return scales_.get() + r * groups_ * kLanesPerGroup; }
  // Row r: groups() x 16 lanes of -128 * (sum of the lane's 4 values): what a
  // u8 x s8 dot product with weights offset by +128 adds back (AVX-512 VNNI).
  const int32_t* offsets(int64_t r) const {
    return offsets_.get() + r * groups_ * kLanesPerGroup;
  }
  // Row r: offsets + kFloatBiasBits, and -kFloatBias * scale, per lane (exact):
  // the AVX-512 kernel's int32 -> float conversion folded into its fma (above).
  const int32_t* float_offsets(int64_t r) const {
    return float_offsets_.get() + r * groups_ * kLanesPerGroup;
  }
  const float* float_bias_scales(int64_t r) const {
    return float_bias_scales_.get() + r * groups_ * kLanesPerGroup;
  }

  // Row r as the kernels see it: values * scale, cols() floats (tests compare the
  // kernels with a float64 reference on exactly these inputs).
  std::vector<float> Dequantize(int64_t r) const;

 private:
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  int64_t rows_ = 0, cols_ = 0, groups_ = 0;
  size_t capacity_rows_groups_ = 0;  // rows * groups the buffers hold
  std::unique_ptr<int8_t, FreeDeleter> values_;
  std::unique_ptr<float, FreeDeleter> scales_;
  std::unique_ptr<int32_t, FreeDeleter> offsets_;
  std::unique_ptr<int32_t, FreeDeleter> float_offsets_;
  std::unique_ptr<float, FreeDeleter> float_bias_scales_;
};

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_KERNELS_ACTIVATIONS_H_
