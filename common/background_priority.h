// Running a piece of work on its own thread at a low CPU priority.
//
// Why: the server's engine threads and a model load share the same few cores.
// A publish loads the next version (read, dequantize, pack: about a second of
// one core) while streams are decoding; at equal priority the loader takes a
// core from an engine thread, and since a decode step is split evenly over the
// engine's threads, every step waits for the slowed one. At a lower priority
// the loader mostly gets what the engine leaves idle, so streams keep their
// pace and the load takes longer instead.
//
// Nice 10, not 19: measured on 2 cores with the engine on both and a tuning
// job beside it, a loader at nice 19 starved for up to 59 s (a client's publish
// deadline); at nice 10 the same publishes took 18-25 s and 1-3 s without the
// tuning job. The kernel still gives a nice-10 thread about a tenth of a busy
// core, so a load always ends.
// Threads started inside `fn` inherit its priority (Linux priorities are per
// thread), so `fn` must not start anything that outlives it, such as an engine
// thread pool or a scheduler: do only the loading inside, the rest after.
#ifndef OTARO_COMMON_BACKGROUND_PRIORITY_H_
#define OTARO_COMMON_BACKGROUND_PRIORITY_H_

#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

namespace otaro {

inline constexpr int kBackgroundNice = 10;

// Lowers the calling thread's CPU priority to kBackgroundNice (never raises
// it). An unprivileged thread cannot raise it again afterwards, hence the
// thread of its own below. Returns false when the OS refused.
bool LowerThisThreadToBackgroundPriority();

// Runs fn() on a new thread at kBackgroundNice, waits for it and returns
// its result. The caller's own priority is unchanged.
template <typename Fn>
std::invoke_result_t<Fn> RunAtBackgroundPriority(Fn&& fn) {
  std::optional<std::invoke_result_t<Fn>> result;
  std::thread worker([&] {
    LowerThisThreadToBackgroundPriority();
    result.emplace(std::forward<Fn>(fn)());
  });
  worker.join();
  return std::move(*result);
}

}  // namespace otaro

#endif  // OTARO_COMMON_BACKGROUND_PRIORITY_H_
