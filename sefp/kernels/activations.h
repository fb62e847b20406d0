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
//     scale = amax / 127                     (float division)
//     q_i   = round_half_even(x_i * (127 / amax)), clamped to [-127, 127]
//
// An all-zero block has scale 0 and q = 0; a block holding NaN or Inf has scale
// NaN and q = 0, so every output it touches is NaN (never a silent number).
// The kernels then compute sum_i Q(w_i, m) * q_i * scale with the integer part
// exact, so the only difference from float activations is this rounding of x
// (error <= 1/254 of the block's largest input per element).
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
};

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_KERNELS_ACTIVATIONS_H_
