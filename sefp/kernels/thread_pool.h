// A small fixed-size thread pool for the SEFP kernels. ParallelFor splits [0, n)
// into one contiguous range per thread, in a fixed way that depends only on n and
// the thread count; the caller's thread runs the first range. Kernels assign whole
// output rows to ranges, so every output is computed by one thread in one fixed
// order and results do not depend on the thread count.
//
// Workers spin briefly after a job (decode calls come back-to-back, ~10-100 us
// apart, and a futex wake costs several us) and then sleep on a condition variable.
// The caller waits for the workers the same way. Both spins are short and
// bounded: on a machine whose cores are shared (the server's gRPC threads, a
// tuning job, other processes), a thread that spins for long steals the core
// from the very thread it waits for.
#ifndef OTARO_SEFP_KERNELS_THREAD_POOL_H_
#define OTARO_SEFP_KERNELS_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace otaro::sefp {

class ThreadPool {
 public:
  // num_threads >= 1 counts the caller: num_threads - 1 workers are started.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n), one per thread (empty
  // ranges are skipped), and returns when all are done. Not reentrant: one
  // ParallelFor at a time per pool.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);
  void RunRange(int index);

  const int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;  // workers: a new job (or stop)
  std::condition_variable done_;  // caller: the last worker finished
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  // The current job (written before generation_ is bumped).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace otaro::sefp

#endif  // OTARO_SEFP_KERNELS_THREAD_POOL_H_
