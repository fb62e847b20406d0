// Splits an elementwise pass over a parameter-sized vector across a thread pool.
// Internal to trainer/optim. A 135M-float pass is memory bound: threads help only
// up to the memory bandwidth, and small vectors are not worth waking the pool.
#ifndef OTARO_TRAINER_OPTIM_PARALLEL_H_
#define OTARO_TRAINER_OPTIM_PARALLEL_H_

#include <cstdint>
#include <functional>

#include "sefp/kernels/thread_pool.h"

namespace otaro::trainer::optim_internal {

// Below this many elements a pass runs on the caller's thread.
inline constexpr int64_t kMinParallelElements = int64_t{1} << 16;

// fn(begin, end) over disjoint ranges covering [0, n).
inline void ForRanges(sefp::ThreadPool* pool, int64_t n,
                      const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() <= 1 || n < kMinParallelElements) {
    fn(0, n);
    return;
  }
  pool->ParallelFor(n, fn);
}

}  // namespace otaro::trainer::optim_internal

#endif  // OTARO_TRAINER_OPTIM_PARALLEL_H_
