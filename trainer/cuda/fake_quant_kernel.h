// SEFP fake quantization on the GPU: Q(W, m) of a row-major [rows, cols]
// float32 tensor, groups of 64 along each row (the last group of a row may be
// shorter), with exactly the rules of sefp::FakeQuantize: both run the inline
// per-weight steps of sefp/fake_quant_rules.h, so the results are equal bit for
// bit (fake_quant_device_test checks it on every kind of group). Plain C++
// declarations; the kernel is in fake_quant_kernel.cu.
#ifndef OTARO_TRAINER_CUDA_FAKE_QUANT_KERNEL_H_
#define OTARO_TRAINER_CUDA_FAKE_QUANT_KERNEL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "sefp/fake_quant_rules.h"
#include "trainer/cuda/device_context.h"

namespace otaro::trainer::cuda {

// The value the caller puts in *first_non_finite before a launch.
inline constexpr unsigned long long kNoNonFinite = ~0ull;

// Queues out = Q(w, m) on `stream` (device pointers; `out` may alias `w`). A
// group holding NaN or Inf is not written; *first_non_finite (a device value)
// is lowered atomically to the row-major index of its first non-finite weight,
// so after the launch it holds the first one of the tensor, or kNoNonFinite.
// m must be 2..8 (the caller checks with sefp::CheckPrecision).
absl::Status LaunchFakeQuantize(Stream stream, const float* w, int64_t rows, int64_t cols, int m,
                                sefp::Reconstruction mode, float* out,
                                unsigned long long* first_non_finite);

}  // namespace otaro::trainer::cuda

#endif  // OTARO_TRAINER_CUDA_FAKE_QUANT_KERNEL_H_
