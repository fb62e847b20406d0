#include "server/service/generation_call.h"

#include <chrono>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "common/mutex.h"

namespace otaro::server {
namespace {

struct CallState {
  Mutex mu;
  CondVar changed;  // a token or the end arrived
  GenerationDelta pending ABSL_GUARDED_BY(mu);
  absl::Time last_token ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  std::vector<absl::Duration> gaps ABSL_GUARDED_BY(mu);
  size_t delivered_bytes ABSL_GUARDED_BY(mu) = 0;  // text handed to on_token
  bool finished ABSL_GUARDED_BY(mu) = false;
  GenerationOutcome outcome ABSL_GUARDED_BY(mu);
};

// How often the handler looks at the client while no token arrives.
constexpr absl::Duration kClientPoll = absl::Milliseconds(20);

}  // namespace

GenerationOutcome RunGeneration(engine::Scheduler& scheduler, engine::GenerationRequest request,
                                grpc::ServerContext* context,
                                const std::function<bool(const GenerationDelta&)>& emit) {
  auto state = std::make_shared<CallState>();
  engine::RequestCallbacks callbacks;
  const bool want_deltas = static_cast<bool>(emit);
  callbacks.on_token = [state, want_deltas](engine::Token token, absl::string_view text,
                                            double logprob) {
    const absl::Time now = absl::Now();
    MutexLock lock(&state->mu);
    if (state->last_token != absl::InfinitePast()) state->gaps.push_back(now - state->last_token);
    state->last_token = now;
    state->delivered_bytes += text.size();
    if (!want_deltas) return;  // Unary calls read the final result only.
    state->pending.tokens.push_back(token);
    state->pending.text.append(text.data(), text.size());
    state->pending.logprobs.push_back(static_cast<float>(logprob));
    state->changed.SignalAll();
  };
  callbacks.on_finish = [state](const absl::Status& status,
                                const engine::GenerationResult& result,
                                const engine::RequestTimings& timings) {
    MutexLock lock(&state->mu);
    state->outcome.status = status;
    state->outcome.result = result;
    state->outcome.timings = timings;
    state->finished = true;
    state->changed.SignalAll();
  };
  auto handle = scheduler.Submit(std::move(request), std::move(callbacks));
  if (!handle.ok()) {
    GenerationOutcome refused;
    refused.status = handle.status();
    return refused;
  }

  bool cancelled = false;
  while (true) {
    GenerationDelta delta;
    bool finished;
    {
      MutexLock lock(&state->mu);
      auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(state->mu) {
        return state->finished || !state->pending.tokens.empty();
      };
      state->changed.WaitFor(&state->mu, kClientPoll, ready);
      std::swap(delta, state->pending);
      finished = state->finished;
    }
    if (!delta.tokens.empty() && !cancelled && !emit(delta)) {
      (*handle)->Cancel();  // The client is gone: stop spending compute on it.
      cancelled = true;
    }
    if (finished) break;
    if (!cancelled && context->IsCancelled()) {
      (*handle)->Cancel();
      cancelled = true;
    }
  }
  MutexLock lock(&state->mu);
  GenerationOutcome outcome = state->outcome;
  outcome.inter_token_gaps = std::move(state->gaps);
  if (state->delivered_bytes < outcome.result.text.size()) {
    outcome.final_text = outcome.result.text.substr(state->delivered_bytes);
  }
  if (cancelled && outcome.status.code() == absl::StatusCode::kCancelled &&
      context->deadline() <= std::chrono::system_clock::now()) {
    outcome.status = absl::DeadlineExceededError("the call's deadline passed during generation");
  }
  return outcome;
}

}  // namespace otaro::server
