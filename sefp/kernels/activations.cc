#include "sefp/kernels/activations.h"

#include "sefp/kernels/activations_avx512.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

namespace otaro::sefp {
namespace {

template <typename T>
T* AlignedAlloc(size_t count) {
  const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<T*>(p);
}

// One group of n <= 64 inputs (the rest are 0) into q[64], its 16 lane scales
// and lane offsets.
void QuantizeGroup(const float* x, int n, int8_t* q, float* scales, int32_t* offsets) {
  for (int l = 0; l < kLanesPerGroup; ++l) {
    const int i0 = l * kLaneInputs;
    const int i1 = std::min(n, i0 + kLaneInputs);
    float amax = 0.0f;
    bool finite = true;
    for (int i = i0; i < i1; ++i) {
      const float a = std::fabs(x[i]);
      finite &= a <= std::numeric_limits<float>::max();
      amax = a > amax ? a : amax;
    }
    int32_t sum = 0;
    if (!finite || amax == 0.0f) {
      for (int i = i0; i < i0 + kLaneInputs; ++i) q[i] = 0;
      scales[l] = finite ? 0.0f : std::numeric_limits<float>::quiet_NaN();
    } else {
      const float inv = 127.0f / amax;
      for (int i = i0; i < i0 + kLaneInputs; ++i) {
        // nearbyint rounds half to even in the default rounding mode, like the
        // SIMD conversions; |x * inv| <= 127 (1 + 2^-23) rounds into range, and
        // the clamp only guards that bound.
        const float r = i < i1 ? std::nearbyint(x[i] * inv) : 0.0f;
        q[i] = static_cast<int8_t>(r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r));
        sum += q[i];
      }
      scales[l] = amax / 127.0f;
    }
    offsets[l] = -128 * sum;
  }
}

// The steps every path shares after the group's amax-based quantization: the
// scale cut to 22 significant bits, the diverged-block rule, and the AVX-512
// kernel's conversion constants (activations.h).
void FinishGroup(int8_t* q, float* scales, int32_t* offsets, int32_t* float_offsets,
                 float* float_bias_scales) {
  constexpr float kMaxScale = 0x1p93f;
  for (int l = 0; l < kLanesPerGroup; ++l) {
    float scale = scales[l];
    if (scale >= kMaxScale || (scale > 0.0f && scale < kMinScale)) {
      for (int i = 0; i < kLaneInputs; ++i) q[l * kLaneInputs + i] = 0;
      offsets[l] = 0;
      scale = scale >= kMaxScale ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
    }
    uint32_t bits;
    std::memcpy(&bits, &scale, sizeof(bits));
    bits &= ~uint32_t{3};
    std::memcpy(&scale, &bits, sizeof(bits));
    scales[l] = scale;
    float_offsets[l] = offsets[l] + kFloatBiasBits;
    float_bias_scales[l] = -kFloatBias * scale;
  }
}

bool CpuHasAvx512() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return has;
#else
  return false;
#endif
}

}  // namespace

void QuantizedActivations::Quantize(absl::Span<const float> x, int64_t rows, int64_t cols,
                                    bool simd) {
  Resize(rows, cols);
  QuantizeRows(x, 0, rows, simd);
}

void QuantizedActivations::Resize(int64_t rows, int64_t cols) {
  rows_ = rows;
  cols_ = cols;
  groups_ = (cols + kGroupSize - 1) / kGroupSize;
  const size_t need = static_cast<size_t>(rows * groups_);
  if (need > capacity_rows_groups_) {
    values_.reset(AlignedAlloc<int8_t>(need * kGroupSize));
    scales_.reset(AlignedAlloc<float>(need * kLanesPerGroup));
    offsets_.reset(AlignedAlloc<int32_t>(need * kLanesPerGroup));
    float_offsets_.reset(AlignedAlloc<int32_t>(need * kLanesPerGroup));
    float_bias_scales_.reset(AlignedAlloc<float>(need * kLanesPerGroup));
    capacity_rows_groups_ = need;
  }
}

void QuantizedActivations::QuantizeRows(absl::Span<const float> x, int64_t row0, int64_t row1,
                                        bool simd) {
  const bool avx512 = simd && CpuHasAvx512();
  for (int64_t r = row0; r < row1; ++r) {
    const float* xr = x.data() + r * cols_;
    for (int64_t g = 0; g < groups_; ++g) {
      const int64_t c0 = g * kGroupSize;
      const int n = static_cast<int>(std::min<int64_t>(kGroupSize, cols_ - c0));
      int8_t* q = values_.get() + (r * groups_ + g) * kGroupSize;
      float* scales = scales_.get() + (r * groups_ + g) * kLanesPerGroup;
      const int64_t lane0 = (r * groups_ + g) * kLanesPerGroup;
      int32_t* offsets = offsets_.get() + lane0;
      if (n == kGroupSize && avx512) {
        internal::QuantizeGroupAvx512(xr + c0, q, scales, offsets);
      } else {
        QuantizeGroup(xr + c0, n, q, scales, offsets);
      }
      FinishGroup(q, scales, offsets, float_offsets_.get() + lane0,
                  float_bias_scales_.get() + lane0);
    }
  }
}

std::vector<float> QuantizedActivations::Dequantize(int64_t r) const {
  std::vector<float> out(static_cast<size_t>(cols_));
  for (int64_t c = 0; c < cols_; ++c) {
    out[c] = static_cast<float>(values(r)[c]) * scales(r)[c / kLaneInputs];
  }
  return out;
}

}  // namespace otaro::sefp
