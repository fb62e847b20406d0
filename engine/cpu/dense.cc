#include "engine/cpu/dense.h"

#include "sefp/kernels/gemm.h"

namespace otaro::engine::cpu {

void DenseGemm(const float* w, int64_t n, int64_t k, const float* x, int64_t batch, float* y,
               sefp::ThreadPool* pool) {
  if (n == 0 || batch == 0) return;
  static const bool avx2 = sefp::CpuSupports(sefp::Isa::kAvx2);
  auto rows = [&](int64_t n0, int64_t n1) {
    if (avx2) {
      internal::DenseRowsAvx2(w, n0, n1, k, x, batch, y, n);
    } else {
      internal::DenseRowsGeneric(w, n0, n1, k, x, batch, y, n);
    }
  };
  // Ranges in whole blocks of 8 output rows, so the blocking inside a range
  // (which does not change any result anyway) stays regular.
  const int64_t blocks = (n + 7) / 8;
  if (pool == nullptr || pool->num_threads() == 1 || blocks == 1) {
    rows(0, n);
    return;
  }
  pool->ParallelFor(blocks, [&](int64_t b0, int64_t b1) {
    rows(b0 * 8, std::min(b1 * 8, n));
  });
}

}  // namespace otaro::engine::cpu
