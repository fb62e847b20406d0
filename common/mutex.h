// The one lock type for state shared between threads, and waiting on it.
//
// Why not absl::Mutex: Debian's Abseil is not built with ThreadSanitizer, so
// TSan cannot see the ordering an absl::Mutex creates and reports every
// hand-over through one as a race. Why not a bare std::mutex: it carries no
// thread-safety annotations, so clang's -Wthread-safety cannot check the
// ABSL_GUARDED_BY contracts. otaro::Mutex is a std::mutex (pthread, visible to
// TSan) declared as an Abseil capability (checked by clang; the annotations
// are empty under GCC). CI runs both: the TSan step and the clang
// thread-safety build (.ci/run).
#ifndef OTARO_COMMON_MUTEX_H_
#define OTARO_COMMON_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace otaro {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  // Tells the analysis a caller holds it where it cannot see that (no check).
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

  // BasicLockable, for CondVar's std::condition_variable_any.
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// Waiting until a condition over Mutex-guarded state holds. Every wait takes
// the Mutex held and returns with it held; `done` is evaluated under it.
class CondVar {
 public:
  template <typename Predicate>
  void Wait(Mutex* mu, Predicate done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    cv_.wait(*mu, done);
  }
  // False if `deadline` passed with `done` still false.
  template <typename Predicate>
  bool WaitUntil(Mutex* mu, absl::Time deadline, Predicate done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return cv_.wait_until(*mu, absl::ToChronoTime(deadline), done);
  }
  template <typename Predicate>
  bool WaitFor(Mutex* mu, absl::Duration timeout, Predicate done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return WaitUntil(mu, absl::Now() + timeout, done);
  }
  // One wait, woken by a Signal, the timeout or spuriously: for callers that
  // re-check in a loop what no predicate under `mu` can express (e.g. state
  // kept elsewhere). False when the timeout passed.
  bool WaitOnceFor(Mutex* mu, absl::Duration timeout) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return cv_.wait_for(*mu, absl::ToChronoNanoseconds(timeout)) == std::cv_status::no_timeout;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace otaro

#endif  // OTARO_COMMON_MUTEX_H_
