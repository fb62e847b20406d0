// Float32 matrix products for what SEFP does not cover: unquantized (reference)
// linear layers and the lm_head. Y[b, n] = sum_k W[n, k] X[b, k], W row-major [N, K].
//
// Batch and thread invariance, as the SEFP kernels (the scheduler relies on it):
// every output is one dot product computed the same way whatever the batch and
// the blocking around it -- 8 lane partial sums over k in steps of 8 (the tail
// zero-padded), then a fixed reduction of the lanes -- by one thread. Both ISA
// builds do the same operations in the same order without contraction, so they
// agree bit for bit too.
#ifndef OTARO_ENGINE_CPU_DENSE_H_
#define OTARO_ENGINE_CPU_DENSE_H_

#include <cstdint>

#include "sefp/kernels/thread_pool.h"

namespace otaro::engine::cpu {

// pool may be null (calling thread only).
void DenseGemm(const float* w, int64_t n, int64_t k, const float* x, int64_t batch, float* y,
               sefp::ThreadPool* pool);

namespace internal {
// Output rows [n0, n1) for all batch rows; one implementation per ISA build.
void DenseRowsGeneric(const float* w, int64_t n0, int64_t n1, int64_t k, const float* x,
                      int64_t batch, float* y, int64_t n);
void DenseRowsAvx2(const float* w, int64_t n0, int64_t n1, int64_t k, const float* x,
                   int64_t batch, float* y, int64_t n);
}  // namespace internal

}  // namespace otaro::engine::cpu

#endif  // OTARO_ENGINE_CPU_DENSE_H_
