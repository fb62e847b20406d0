// Row-major float32 matrix products on the GPU through cuBLASLt, with the
// calling convention of cblas_sgemm(CblasRowMajor, ...) so that the CUDA
// training model reads like the CPU one (trainer/model/ops.cc).
//
// Arithmetic: CUBLAS_COMPUTE_32F, i.e. float32 products and sums with no TF32
// or reduced-precision shortcut, so that the GPU computes the CPU model's
// function up to summation order.
//
// cuBLASLt wants a matmul descriptor, three matrix layouts and an algorithm
// (from its heuristic) per problem shape; a training step repeats the same few
// dozen shapes every layer and every step, so they are made once per shape and
// kept (the cache key includes the pointers' alignment, which limits the
// algorithms the heuristic may pick).
#ifndef OTARO_TRAINER_CUDA_MATMUL_H_
#define OTARO_TRAINER_CUDA_MATMUL_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "trainer/cuda/device_context.h"

namespace otaro::trainer::cuda {

class Matmul {
 public:
  // A cuBLASLt handle and a workspace of `workspace_bytes` on the context's
  // device; products run on the context's stream. `context` must outlive it.
  static absl::StatusOr<std::unique_ptr<Matmul>> Create(DeviceContext* context,
                                                        size_t workspace_bytes);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // C[m, n] = alpha op(A) op(B) + beta C, all row-major with leading dimensions
  // lda, ldb, ldc; op(X) = X^T when trans_x. Device pointers. C may not alias A
  // or B. With beta = 0, C's old contents are ignored (NaN included).
  absl::Status Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                    int64_t ldc);

  // Shapes planned so far, and the workspace size.
  size_t cached_plans() const;
  size_t workspace_bytes() const;

 private:
  struct Impl;
  explicit Matmul(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace otaro::trainer::cuda

#endif  // OTARO_TRAINER_CUDA_MATMUL_H_
