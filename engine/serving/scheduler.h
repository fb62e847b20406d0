// Continuous batching over a Backend: requests queue, join the running batch
// between steps as soon as a batch slot and their worst-case KV blocks are
// free, and every step mixes decode tokens and prefill chunks of all running
// sequences at their own precisions. The gRPC Generate service drives it.
//
// One engine thread owns the batch, the backend and the KV sequences; Submit,
// Cancel, stats and Shutdown may be called from any thread. Callbacks run on
// the engine thread (never under the scheduler's lock), so they must be quick
// and must not call Shutdown or destroy the Scheduler.
//
// Tokens do not depend on load: the backend is batch invariant and sampling is
// keyed by (seed, index of the generated token), so a request yields the same
// tokens as when run alone through Generator.
#ifndef OTARO_ENGINE_SERVING_SCHEDULER_H_
#define OTARO_ENGINE_SERVING_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/generator.h"
#include "engine/serving/step_gate.h"
#include "engine/tokenizer/tokenizer.h"

namespace otaro::engine {

// Durations from a monotonic clock. A phase that was never reached is zero
// (e.g. prefill and time_to_first_token of a request cancelled while waiting).
struct RequestTimings {
  absl::Duration queue;                // submitted -> admitted (KV allocated)
  absl::Duration prefill;              // admitted -> prompt fully processed
  absl::Duration time_to_first_token;  // submitted -> first generated token
  absl::Duration decode;               // first -> last generated token
  absl::Duration total;                // submitted -> finished
};

struct RequestCallbacks {
  // Every generated token with the text it releases (possibly empty: held back for an
  // incomplete UTF-8 character or a possible stop string) and its logprob (0 if not asked).
  std::function<void(Token token, absl::string_view text, double logprob)> on_token;
  // Exactly once. OK with the full result; or CANCELLED (Cancel()), RESOURCE_EXHAUSTED
  // (waited longer than max_queue_time), UNAVAILABLE (shutdown), INTERNAL (backend error
  // for this request only) -- with whatever was generated so far in `result`.
  std::function<void(const absl::Status& status, const GenerationResult& result,
                     const RequestTimings& timings)> on_finish;
};

class RequestHandle {
 public:
  // Thread-safe, idempotent: the request leaves the queue or the batch at the next step
  // boundary, its KV blocks are freed at once, on_finish gets CANCELLED. A no-op once the
  // request has finished; safe even after the Scheduler is gone.
  virtual void Cancel() = 0;
  virtual uint64_t id() const = 0;
  virtual ~RequestHandle() = default;
};

struct SchedulerOptions {
  int max_running = 16;          // sequences in one batch step
  int max_waiting = 64;          // waiting-queue cap: Submit -> RESOURCE_EXHAUSTED beyond it
  absl::Duration max_queue_time = absl::Seconds(30);  // waiting longer -> RESOURCE_EXHAUSTED
  int64_t prefill_chunk = 256;   // prompt tokens per sequence per step
  int64_t max_step_tokens = 1024;  // all tokens in one step (prefill chunks + decodes)
  // Shared by the schedulers of every model version a server holds, so that
  // they step in turns (step_gate.h); null: step whenever there is work.
  std::shared_ptr<StepGate> step_gate;
};

struct SchedulerStats {
  int waiting = 0;
  int running = 0;
  int64_t kv_used_blocks = 0;
  int64_t kv_total_blocks = 0;
  double kv_usage_ratio = 0;
  uint64_t steps = 0;
  uint64_t generated_tokens = 0;
};

class Scheduler {
 public:
  // `backend` and `tokenizer` (may be null: token ids only, no stop strings) must outlive
  // it. The backend must not be used by anything else meanwhile (Forward is not
  // reentrant). InvalidArgument for options out of range (max_step_tokens must be at least
  // max_running, so every running sequence decodes in every step).
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(Backend* backend,
                                                           const tokenizer::Tokenizer* tokenizer,
                                                           SchedulerOptions options);
  ~Scheduler();  // Shutdown() + join

  // Validates like Generator::Validate (precision resident, prompt + max_tokens fit the
  // context and can EVER fit the KV cache, sampling values), plus prompt token ids within
  // the vocabulary -> INVALID_ARGUMENT naming the field; queue full -> RESOURCE_EXHAUSTED;
  // after Shutdown -> UNAVAILABLE. Callbacks run on the scheduler's thread: keep them
  // quick (they push into the caller's queue).
  absl::StatusOr<std::shared_ptr<RequestHandle>> Submit(GenerationRequest request,
                                                        RequestCallbacks callbacks);

  SchedulerStats stats() const;  // thread-safe

  // Stops admitting (new Submit -> UNAVAILABLE), lets running requests finish within
  // `grace`, then cancels the rest (on_finish UNAVAILABLE) and stops the thread. Requests
  // already queued are still served during the grace period. Blocks until the engine
  // thread has stopped; idempotent (a later call can only shorten the grace).
  void Shutdown(absl::Duration grace = absl::ZeroDuration());

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

 private:
  struct Core;     // state shared with handles and the engine thread
  struct Request;  // one request's state
  class Handle;

  Scheduler(Backend* backend, const tokenizer::Tokenizer* tokenizer, SchedulerOptions options);

  std::shared_ptr<Core> core_;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_SERVING_SCHEDULER_H_
