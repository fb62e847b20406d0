#include "engine/serving/scheduler.h"

#include "engine/runtime/sequence_output.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/mutex.h"
#include "engine/runtime/sampler.h"

namespace otaro::engine {
namespace {

// Timings come from a monotonic clock: wall-clock jumps must not produce
// negative latencies in the metrics.
using Clock = std::chrono::steady_clock;

absl::Duration Between(Clock::time_point from, Clock::time_point to) {
  return absl::FromChrono(to - from);
}

}  // namespace

struct Scheduler::Request {
  uint64_t id = 0;
  GenerationRequest request;
  RequestCallbacks callbacks;
  int64_t max_total = 0;  // prompt + max_tokens: the KV slots reserved at admission
  Clock::time_point submitted;
  std::atomic<bool> cancelled{false};

  // Engine thread only from here on.
  std::optional<Clock::time_point> admitted, prefilled_at, first_token, last_token;
  bool has_seq = false;
  SequenceHandle seq = 0;
  int64_t prefilled = 0;  // prompt tokens in the cache
  Token next = -1;        // sampled, not yet fed back
  bool finished = false;  // on_finish has been called
  // Tokens, text and the stop rules; done() = ended normally (on_finish OK
  // pending). Refers to `request`: set once the request is in place.
  std::optional<SequenceOutput> out;

  int64_t prompt_size() const { return static_cast<int64_t>(request.prompt.size()); }
  bool prefilling() const { return prefilled < prompt_size(); }
};

struct Scheduler::Core {
  Core(Backend* b, const tokenizer::Tokenizer* t, SchedulerOptions o)
      : backend(b), tokenizer(t), options(o), generator(b, t, {.prefill_chunk = o.prefill_chunk}) {}

  void Run();
  void RequestShutdown(absl::Duration grace);
  void Join();

  // Engine thread.
  void Step();
  // Takes the token sampled for the request from its row of the step's logits.
  absl::Status Accept(Request& r, absl::StatusOr<SampledToken> tok);
  // Frees the request's KV blocks, leaves the running count and calls on_finish.
  void Finish(Request& r, const absl::Status& status);
  void EraseFinished();

  Backend* const backend;
  const tokenizer::Tokenizer* const tokenizer;
  const SchedulerOptions options;
  const Generator generator;  // validation and end-of-generation ids, shared with tools

  mutable Mutex mu;  // common/mutex.h: visible to TSan, checked by clang
  CondVar cv;        // new work, a cancel or shutdown
  std::deque<std::shared_ptr<Request>> waiting ABSL_GUARDED_BY(mu);
  bool shutting_down ABSL_GUARDED_BY(mu) = false;
  Clock::time_point shutdown_deadline ABSL_GUARDED_BY(mu);
  uint64_t next_id ABSL_GUARDED_BY(mu) = 1;

  // Published for stats(); running is changed only by the engine thread.
  std::atomic<int> running_count{0};
  std::atomic<uint64_t> steps{0};
  std::atomic<uint64_t> generated_tokens{0};

  std::thread thread;
  std::thread::id engine_id;  // set before Create returns, read-only afterwards
  Mutex join_mu;              // one joiner at a time

  // Engine thread only.
  std::vector<std::shared_ptr<Request>> running;  // in admission order
  Logits logits;
};

class Scheduler::Handle : public RequestHandle {
 public:
  Handle(std::shared_ptr<Request> request, std::weak_ptr<Core> core)
      : request_(std::move(request)), core_(std::move(core)) {}

  void Cancel() override {
    if (request_->cancelled.exchange(true)) return;
    // The engine looks at the flag at every step boundary; this only wakes it
    // in case it sleeps. A handle may outlive the scheduler.
    if (std::shared_ptr<Core> core = core_.lock()) {
      MutexLock lock(&core->mu);
      core->cv.SignalAll();
    }
  }
  uint64_t id() const override { return request_->id; }

 private:
  std::shared_ptr<Request> request_;
  std::weak_ptr<Core> core_;
};

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(Backend* backend,
                                                             const tokenizer::Tokenizer* tokenizer,
                                                             SchedulerOptions options) {
  if (backend == nullptr) return absl::InvalidArgumentError("scheduler: no backend");
  if (options.max_running < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_running: must be >= 1, got ", options.max_running));
  }
  if (options.max_waiting < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_waiting: must be >= 0, got ", options.max_waiting));
  }
  if (options.max_queue_time < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("max_queue_time: must not be negative");
  }
  if (options.prefill_chunk < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefill_chunk: must be >= 1, got ", options.prefill_chunk));
  }
  // Every running sequence decodes in every step, so a step must hold them all
  // (and then at least one prefill token is left whenever one is prefilling).
  if (options.max_step_tokens < options.max_running) {
    return absl::InvalidArgumentError(absl::StrCat("max_step_tokens: must be >= max_running (",
                                                   options.max_running, "), got ",
                                                   options.max_step_tokens));
  }
  std::unique_ptr<Scheduler> s(new Scheduler(backend, tokenizer, options));
  Core* core = s->core_.get();
  core->thread = std::thread([core] { core->Run(); });
  core->engine_id = core->thread.get_id();
  return s;
}

Scheduler::Scheduler(Backend* backend, const tokenizer::Tokenizer* tokenizer,
                     SchedulerOptions options)
    : core_(std::make_shared<Core>(backend, tokenizer, options)) {}

Scheduler::~Scheduler() { Shutdown(); }

absl::StatusOr<std::shared_ptr<RequestHandle>> Scheduler::Submit(GenerationRequest request,
                                                                 RequestCallbacks callbacks) {
  Core& core = *core_;
  {
    MutexLock lock(&core.mu);
    if (core.shutting_down) return absl::UnavailableError("scheduler: shutting down");
  }
  if (absl::Status s = core.generator.Validate(request); !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  // An id outside the vocabulary would fail the backend step of every request
  // sharing it; refuse it here instead.
  const int64_t vocab = core.backend->config().vocab_size;
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (request.prompt[i] < 0 || request.prompt[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt: token ", i, " has id ",
                                                     request.prompt[i], ", outside the vocabulary of ",
                                                     vocab));
    }
  }
  auto r = std::make_shared<Request>();
  const KVCache& kv = core.backend->kv_cache();
  r->max_total = request.max_tokens == 0 ? kv.max_sequence_tokens()
                                         : static_cast<int64_t>(request.prompt.size()) +
                                               request.max_tokens;
  r->request = std::move(request);
  const Generator* generator = &core.generator;
  r->out.emplace(r->request, core.tokenizer,
                 [generator](Token id) { return generator->IsEndOfGeneration(id); }, r->max_total);
  r->callbacks = std::move(callbacks);
  {
    MutexLock lock(&core.mu);
    if (core.shutting_down) return absl::UnavailableError("scheduler: shutting down");
    if (static_cast<int64_t>(core.waiting.size()) >= core.options.max_waiting) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "queue full: ", core.waiting.size(), " requests waiting (max_waiting ",
          core.options.max_waiting, ")"));
    }
    r->id = core.next_id++;
    r->submitted = Clock::now();
    core.waiting.push_back(r);
    core.cv.SignalAll();
  }
  return std::shared_ptr<RequestHandle>(std::make_shared<Handle>(r, core_));
}

SchedulerStats Scheduler::stats() const {
  const Core& core = *core_;
  SchedulerStats s;
  {
    MutexLock lock(&core.mu);
    s.waiting = static_cast<int>(core.waiting.size());
    s.running = core.running_count.load();
  }
  const KVCache& kv = core.backend->kv_cache();
  s.kv_total_blocks = kv.num_blocks();
  s.kv_used_blocks = kv.used_blocks();
  s.kv_usage_ratio = static_cast<double>(s.kv_used_blocks) / static_cast<double>(s.kv_total_blocks);
  s.steps = core.steps.load();
  s.generated_tokens = core.generated_tokens.load();
  return s;
}

void Scheduler::Shutdown(absl::Duration grace) {
  core_->RequestShutdown(grace);
  core_->Join();
}

void Scheduler::Core::RequestShutdown(absl::Duration grace) {
  // Clamped so that now + grace cannot overflow the clock.
  grace = std::clamp(grace, absl::ZeroDuration(), absl::Hours(24 * 365));
  const Clock::time_point deadline = Clock::now() + absl::ToChronoNanoseconds(grace);
  MutexLock lock(&mu);
  shutdown_deadline = shutting_down ? std::min(shutdown_deadline, deadline) : deadline;
  shutting_down = true;
  cv.SignalAll();
}

void Scheduler::Core::Join() {
  // From a callback (the engine thread itself) the loop stops on its own.
  if (std::this_thread::get_id() == engine_id) return;
  MutexLock lock(&join_mu);
  if (thread.joinable()) thread.join();
}

void Scheduler::Core::Run() {
  KVCache& kv = backend->kv_cache();
  for (;;) {
    std::vector<std::pair<std::shared_ptr<Request>, absl::Status>> dropped;
    bool stop = false;
    bool blocked = false;  // requests wait but none can be admitted with nothing running
    {
      MutexLock lock(&mu);
      cv.Wait(&mu, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
        return !running.empty() || !waiting.empty() || shutting_down;
      });
      const Clock::time_point now = Clock::now();
      if (shutting_down &&
          (now >= shutdown_deadline || (running.empty() && waiting.empty()))) {
        stop = true;
        for (auto& r : waiting) {
          dropped.emplace_back(std::move(r), absl::UnavailableError("scheduler shut down"));
        }
        waiting.clear();
      } else {
        const auto max_queue = absl::ToChronoNanoseconds(options.max_queue_time);
        for (auto it = waiting.begin(); it != waiting.end();) {
          Request& r = **it;
          if (r.cancelled.load()) {
            dropped.emplace_back(std::move(*it), absl::CancelledError("cancelled"));
          } else if (now - r.submitted > max_queue) {
            dropped.emplace_back(std::move(*it), absl::ResourceExhaustedError(absl::StrCat(
                "waited longer than max_queue_time (", absl::FormatDuration(options.max_queue_time),
                ") for a batch slot and KV cache")));
          } else {
            ++it;
            continue;
          }
          it = waiting.erase(it);
        }
        // FIFO: the head waits for room rather than being overtaken by smaller
        // requests, so a long request cannot starve. Its whole worst case is
        // reserved now, so a running sequence never runs out of cache.
        while (static_cast<int>(running.size()) < options.max_running && !waiting.empty()) {
          std::shared_ptr<Request>& r = waiting.front();
          absl::StatusOr<SequenceHandle> seq = kv.Allocate(r->max_total, r->max_total);
          if (absl::IsResourceExhausted(seq.status())) break;
          if (!seq.ok()) {
            dropped.emplace_back(std::move(r), absl::InternalError(absl::StrCat(
                                                   "KV allocation: ", seq.status().message())));
          } else {
            r->has_seq = true;
            r->seq = *seq;
            r->admitted = now;
            running.push_back(std::move(r));
            running_count.fetch_add(1);
          }
          waiting.pop_front();
        }
        blocked = running.empty() && !waiting.empty();
      }
    }
    for (auto& [r, status] : dropped) Finish(*r, status);
    if (stop) {
      for (auto& r : running) Finish(*r, absl::UnavailableError("scheduler shut down"));
      running.clear();
      return;
    }
    for (auto& r : running) {
      if (r->cancelled.load()) Finish(*r, absl::CancelledError("cancelled"));
    }
    EraseFinished();
    if (running.empty()) {
      // Only when something outside the scheduler holds KV blocks: retry
      // shortly instead of spinning (queue expiry still applies).
      if (blocked) {
        MutexLock lock(&mu);
        cv.WaitOnceFor(&mu, absl::Milliseconds(5));
      }
      continue;
    }
    Step();
    EraseFinished();
  }
}

void Scheduler::Core::Step() {
  BatchStep step;
  std::vector<Request*> rows;
  int64_t budget = options.max_step_tokens;
  // Decodes first so running streams keep their inter-token latency; the
  // budget left goes to prefill chunks, oldest request first.
  for (auto& r : running) {
    if (r->prefilling()) continue;
    SequenceStep s;
    s.seq = r->seq;
    s.start_position = r->prompt_size() + static_cast<int64_t>(r->out->result().tokens.size()) - 1;
    s.tokens = {r->next};
    s.precision = r->request.precision;
    step.sequences.push_back(std::move(s));
    rows.push_back(r.get());
    --budget;
  }
  for (auto& r : running) {
    if (!r->prefilling() || budget <= 0) continue;
    const int64_t n =
        std::min({options.prefill_chunk, r->prompt_size() - r->prefilled, budget});
    SequenceStep s;
    s.seq = r->seq;
    s.start_position = r->prefilled;
    s.tokens.assign(r->request.prompt.begin() + r->prefilled,
                    r->request.prompt.begin() + r->prefilled + n);
    s.precision = r->request.prefill_precision != 0 ? r->request.prefill_precision
                                                    : r->request.precision;
    step.sequences.push_back(std::move(s));
    rows.push_back(r.get());
    budget -= n;
  }

  absl::Status forward;
  {
    StepGate::Turn turn(options.step_gate.get());
    forward = backend->Forward(step, &logits);
  }
  if (absl::Status s = forward; !s.ok()) {
    // The backend reports errors before changing any state, so only this
    // step's requests are affected; later steps start clean.
    OTARO_LOG_ERROR("scheduler: backend step of {} sequences failed: {}", rows.size(), s);
    for (Request* r : rows) {
      Finish(*r, absl::InternalError(absl::StrCat("backend error: ", s.message())));
    }
    return;
  }
  steps.fetch_add(1);
  const Clock::time_point now = Clock::now();
  std::vector<size_t> sampling;  // the rows whose request takes a token now
  for (size_t j = 0; j < rows.size(); ++j) {
    Request& r = *rows[j];
    if (r.cancelled.load()) continue;  // dropped at the next boundary
    if (r.prefilling()) {
      r.prefilled += static_cast<int64_t>(step.sequences[j].tokens.size());
      if (r.prefilling()) continue;
      r.prefilled_at = now;
    }
    sampling.push_back(j);
  }
  // Sampling is a pure function of a row and its request (sampler.h), so the
  // rows are sampled on the backend's threads, idle between steps; the tokens
  // are then taken in row order here, where the callbacks run. (16 streams at
  // temperature 0.7 / top_p 0.9 sampled serially spent ~7 ms of a ~24 ms step
  // doing it; in parallel the total rate rose 10-16%.)
  std::vector<absl::StatusOr<SampledToken>> sampled(sampling.size());
  backend->ParallelFor(static_cast<int64_t>(sampling.size()), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Request& r = *rows[sampling[i]];
      // The index of the token keys the random number, so a seeded request
      // gets the same tokens whatever else runs.
      sampled[i] = Sample(logits.Last(sampling[i]), r.request.sampling,
                          r.out->result().tokens.size(), r.request.logprobs);
    }
  });
  for (size_t i = 0; i < sampling.size(); ++i) {
    Request& r = *rows[sampling[i]];
    if (absl::Status s = Accept(r, std::move(sampled[i])); !s.ok()) {
      OTARO_LOG_ERROR("scheduler: sampling request {} failed: {}", r.id, s);
      Finish(r, absl::InternalError(absl::StrCat("sampling: ", s.message())));
    } else if (r.out->done()) {
      Finish(r, absl::OkStatus());
    }
  }
}

absl::Status Scheduler::Core::Accept(Request& r, absl::StatusOr<SampledToken> tok) {
  const GenerationRequest& q = r.request;
  if (!tok.ok()) return tok.status();
  SequenceOutput::Accepted accepted = r.out->Accept(*tok);
  if (accepted.appended) {
    const Clock::time_point now = Clock::now();
    generated_tokens.fetch_add(1);
    if (!r.first_token) r.first_token = now;
    r.last_token = now;
    if (r.callbacks.on_token) {
      r.callbacks.on_token(tok->id, accepted.text, q.logprobs ? tok->logprob : 0);
    }
    r.next = tok->id;
  }
  return absl::OkStatus();
}

void Scheduler::Core::Finish(Request& r, const absl::Status& status) {
  if (r.finished) return;
  r.finished = true;
  if (r.has_seq) {
    if (absl::Status s = backend->kv_cache().Free(r.seq); !s.ok()) {
      OTARO_LOG_ERROR("scheduler: freeing KV of request {}: {}", r.id, s);
    }
    r.has_seq = false;
    running_count.fetch_sub(1);
  }
  const Clock::time_point now = Clock::now();
  RequestTimings t;
  t.total = Between(r.submitted, now);
  // A request that never left the queue spent its whole life there.
  t.queue = r.admitted ? Between(r.submitted, *r.admitted) : t.total;
  if (r.admitted && r.prefilled_at) t.prefill = Between(*r.admitted, *r.prefilled_at);
  if (r.first_token) {
    t.time_to_first_token = Between(r.submitted, *r.first_token);
    t.decode = Between(*r.first_token, *r.last_token);
  }
  if (r.callbacks.on_finish) r.callbacks.on_finish(status, r.out->result(), t);
}

void Scheduler::Core::EraseFinished() {
  running.erase(std::remove_if(running.begin(), running.end(),
                               [](const std::shared_ptr<Request>& r) { return r->finished; }),
                running.end());
}

}  // namespace otaro::engine
