// The continuous-batching scheduler on the real CPU backend with stories260K:
// same tokens under load as alone, cancellation, queue limits, KV-full waits,
// stop conditions, shutdown, backend errors and timings.
//
// To hold the engine at a known point, a test blocks it inside a request's
// on_token callback (callbacks run on the engine thread), so what the test
// checks while it is held does not depend on timing.
#include "engine/serving/scheduler.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "common/testing/shared_data.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/testing/test_backend.h"
#include "engine/model/loader.h"
#include "engine/runtime/generator.h"
#include "gtest/gtest.h"

namespace otaro::engine {
namespace {

// Holds the engine thread inside a callback until the test opens it. (std
// primitives throughout: Debian's Abseil locks are invisible to --config=tsan.)
class Gate {
 public:
  void Block() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void WaitEntered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool open_ = false;
};

// Everything one request reported through its callbacks.
class Outcome {
 public:
  // `hook` runs on the engine thread after the n-th token was recorded.
  RequestCallbacks Callbacks(std::function<void(size_t n)> hook = {}) {
    RequestCallbacks cb;
    cb.on_token = [this, hook](Token token, absl::string_view text, double logprob) {
      size_t n;
      {
        std::lock_guard<std::mutex> lock(mu_);
        tokens_.push_back(token);
        logprobs_.push_back(logprob);
        streamed_.append(text.data(), text.size());
        n = tokens_.size();
      }
      if (hook) hook(n);
    };
    cb.on_finish = [this](const absl::Status& status, const GenerationResult& result,
                          const RequestTimings& timings) {
      std::lock_guard<std::mutex> lock(mu_);
      ++finish_calls_;
      status_ = status;
      result_ = result;
      timings_ = timings;
      finished_ = true;
      cv_.notify_all();
    };
    return cb;
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return finished_; });
  }
  bool finished() {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }
  int finish_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_calls_;
  }
  // After Wait().
  const absl::Status& status() const { return status_; }
  const GenerationResult& result() const { return result_; }
  const RequestTimings& timings() const { return timings_; }
  const std::vector<Token>& tokens() const { return tokens_; }
  const std::vector<double>& logprobs() const { return logprobs_; }
  const std::string& streamed() const { return streamed_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  int finish_calls_ = 0;
  absl::Status status_;
  GenerationResult result_;
  RequestTimings timings_;
  std::vector<Token> tokens_;
  std::vector<double> logprobs_;
  std::string streamed_;
};

// Delegates to a real backend but fails Forward on demand (a device error).
class FailingBackend : public Backend {
 public:
  explicit FailingBackend(Backend* inner) : inner_(inner) {}
  std::string name() const override { return inner_->name(); }
  const ModelConfig& config() const override { return inner_->config(); }
  absl::Status CheckPrecision(int m) const override { return inner_->CheckPrecision(m); }
  KVCache& kv_cache() override { return inner_->kv_cache(); }
  absl::Status Forward(const BatchStep& step, Logits* out) override {
    if (fail_next_.exchange(false)) {
      failed_rows_ = static_cast<int>(step.sequences.size());
      return absl::DataLossError("injected device fault");
    }
    return inner_->Forward(step, out);
  }
  size_t WorkspaceBytes() const override { return inner_->WorkspaceBytes(); }
  void FailNext() { fail_next_ = true; }
  int failed_rows() const { return failed_rows_; }

 private:
  Backend* inner_;
  std::atomic<bool> fail_next_{false};
  std::atomic<int> failed_rows_{0};
};

// Counts how many Forward calls run at once across every backend sharing one
// counter (two model versions' schedulers, say).
class OverlapCountingBackend : public Backend {
 public:
  OverlapCountingBackend(Backend* inner, std::atomic<int>* inside, std::atomic<int>* most)
      : inner_(inner), inside_(inside), most_(most) {}
  std::string name() const override { return inner_->name(); }
  const ModelConfig& config() const override { return inner_->config(); }
  absl::Status CheckPrecision(int m) const override { return inner_->CheckPrecision(m); }
  KVCache& kv_cache() override { return inner_->kv_cache(); }
  absl::Status Forward(const BatchStep& step, Logits* out) override {
    const int now = inside_->fetch_add(1) + 1;
    int seen = most_->load();
    while (now > seen && !most_->compare_exchange_weak(seen, now)) {
    }
    absl::Status status = inner_->Forward(step, out);
    inside_->fetch_sub(1);
    return status;
  }
  size_t WorkspaceBytes() const override { return inner_->WorkspaceBytes(); }

 private:
  Backend* inner_;
  std::atomic<int>* inside_;
  std::atomic<int>* most_;
};

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { model_ = testing::LoadStories260K().release(); }
  static void TearDownTestSuite() { delete model_; }

  void SetUp() override { backend_ = MakeBackend(8 << 20); }
  static std::unique_ptr<cpu::CpuBackend> MakeBackend(int64_t budget) {
    return testing::MakeBackend(model_, budget);
  }
  static int64_t BlockBytes(Backend& b) { return b.kv_cache().BytesPerBlock(); }

  static GenerationRequest Request(absl::string_view prompt, int m, int64_t max_tokens) {
    GenerationRequest r;
    r.prompt = model_->tokenizer->Encode(prompt, {.add_special = true});
    r.precision = m;
    r.max_tokens = max_tokens;
    r.ignore_eos = true;
    return r;
  }
  std::unique_ptr<Scheduler> MakeScheduler(Backend* backend, SchedulerOptions options = {}) {
    auto s = Scheduler::Create(backend, model_->tokenizer.get(), options);
    EXPECT_TRUE(s.ok()) << s.status();
    return std::move(*s);
  }
  // The same request alone through the plain generation loop.
  GenerationResult Alone(const GenerationRequest& r) {
    auto reference = MakeBackend(8 << 20);
    auto result = Generator(reference.get(), model_->tokenizer.get()).Generate(r);
    EXPECT_TRUE(result.ok()) << result.status();
    return *result;
  }
  static std::shared_ptr<RequestHandle> MustSubmit(Scheduler& s, GenerationRequest r,
                                                   RequestCallbacks cb) {
    auto h = s.Submit(std::move(r), std::move(cb));
    EXPECT_TRUE(h.ok()) << h.status();
    return h.ok() ? *h : nullptr;
  }
  // Timings are ordered as the phases are, and plausible for a tiny model.
  static void ExpectSaneTimings(const RequestTimings& t) {
    EXPECT_GE(t.queue, absl::ZeroDuration());
    EXPECT_GT(t.prefill, absl::ZeroDuration());
    EXPECT_GE(t.time_to_first_token, t.queue + t.prefill);
    EXPECT_GE(t.decode, absl::ZeroDuration());
    EXPECT_GE(t.total, t.time_to_first_token + t.decode);
    EXPECT_LT(t.total, absl::Seconds(60));
  }

  static LlamaModel* model_;
  std::unique_ptr<cpu::CpuBackend> backend_;
};
LlamaModel* SchedulerTest::model_ = nullptr;

const char* const kPrompts[] = {
    "Once upon a time",
    "Lily went to the park and",
    "The cat",
    "Once upon a time there was a little dog named Max. Max liked to run in the big green park",
};

TEST_F(SchedulerTest, ConcurrentMixedPrecisionRequestsGiveTheTokensOfRunningAlone) {
  std::vector<GenerationRequest> requests;
  for (int m = 3; m <= 8; ++m) {
    const int i = m - 3;
    GenerationRequest r = Request(kPrompts[i % 4], m, 15 + 4 * i);
    r.logprobs = true;
    if (i % 2 == 1) {  // seeded sampling; the others greedy
      r.sampling.temperature = 0.9;
      r.sampling.top_k = i == 3 ? 20 : 0;
      r.sampling.top_p = i == 5 ? 0.9 : 1;
      r.sampling.seed = 77 + i;
    }
    if (i == 2) r.prefill_precision = 7;
    requests.push_back(r);
  }
  // Small chunks and a small step budget: steps mix decodes with prefill
  // chunks of several sequences, and some requests queue for a slot.
  auto s = MakeScheduler(backend_.get(),
                         {.max_running = 4, .prefill_chunk = 5, .max_step_tokens = 9});
  Gate gate;
  std::atomic<int> max_running{0};
  auto observe = [&](size_t) {
    const int running = s->stats().running;
    int seen = max_running.load();
    while (running > seen && !max_running.compare_exchange_weak(seen, running)) {
    }
  };
  std::vector<std::unique_ptr<Outcome>> outcomes;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (size_t i = 0; i < requests.size(); ++i) {
    outcomes.push_back(std::make_unique<Outcome>());
    // The first request holds the engine at its first token until all are queued.
    auto hook = i == 0 ? std::function<void(size_t)>([&](size_t n) {
      observe(n);
      if (n == 1) gate.Block();
    })
                       : std::function<void(size_t)>(observe);
    handles.push_back(MustSubmit(*s, requests[i], outcomes[i]->Callbacks(hook)));
    if (i == 0) gate.WaitEntered();
  }
  EXPECT_EQ(s->stats().waiting, static_cast<int>(requests.size()) - 1);
  gate.Open();
  uint64_t generated = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    Outcome& o = *outcomes[i];
    o.Wait();
    ASSERT_TRUE(o.status().ok()) << o.status();
    const GenerationResult alone = Alone(requests[i]);
    EXPECT_EQ(o.result().tokens, alone.tokens) << "precision " << requests[i].precision;
    EXPECT_EQ(o.result().logprobs, alone.logprobs) << i;
    EXPECT_EQ(o.result().text, alone.text) << i;
    EXPECT_EQ(o.result().tokens.size(), static_cast<size_t>(requests[i].max_tokens));
    EXPECT_EQ(o.result().finish, FinishReason::kMaxTokens);
    // The stream is the result.
    EXPECT_EQ(o.tokens(), o.result().tokens);
    EXPECT_EQ(o.logprobs(), o.result().logprobs);
    EXPECT_EQ(o.streamed(), o.result().text);
    ExpectSaneTimings(o.timings());
    generated += o.result().tokens.size();
  }
  EXPECT_GE(max_running.load(), 3) << "requests never shared a step";
  const SchedulerStats st = s->stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.kv_used_blocks, 0);
  EXPECT_EQ(st.generated_tokens, generated);
  EXPECT_GT(st.kv_total_blocks, 0);
  EXPECT_GT(st.steps, 0u);
  // Sanity of the reference: seeded sampling differs from greedy at one precision.
  GenerationRequest greedy = requests[1];
  greedy.sampling = {};
  EXPECT_NE(Alone(greedy).tokens, outcomes[1]->result().tokens);
}

TEST_F(SchedulerTest, PrefillPrecisionMayDifferFromDecodePrecision) {
  auto s = MakeScheduler(backend_.get(), {.prefill_chunk = 4});
  GenerationRequest low_prefill = Request(kPrompts[3], 8, 20);
  low_prefill.prefill_precision = 3;
  low_prefill.logprobs = true;
  GenerationRequest same = low_prefill;
  same.prefill_precision = 0;
  Outcome a, b;
  auto ha = MustSubmit(*s, low_prefill, a.Callbacks());
  auto hb = MustSubmit(*s, same, b.Callbacks());
  a.Wait();
  b.Wait();
  ASSERT_TRUE(a.status().ok() && b.status().ok());
  const GenerationResult alone = Alone(low_prefill);
  EXPECT_EQ(a.result().tokens, alone.tokens);
  EXPECT_EQ(a.result().logprobs, alone.logprobs);
  // The first token comes from the E5M3 prompt pass: its distribution differs.
  EXPECT_NE(a.result().logprobs[0], b.result().logprobs[0]);
  EXPECT_EQ(b.result().tokens, Alone(same).tokens);
}

TEST_F(SchedulerTest, CancellingFreesKvAndFinishesOnceWithCancelled) {
  auto s = MakeScheduler(backend_.get(), {.max_running = 1});
  Gate gate;
  Outcome running, waiting;
  auto hr = MustSubmit(*s, Request(kPrompts[0], 5, 200), running.Callbacks([&](size_t n) {
    if (n == 3) gate.Block();
  }));
  gate.WaitEntered();
  auto hw = MustSubmit(*s, Request(kPrompts[1], 5, 20), waiting.Callbacks());
  SchedulerStats st = s->stats();
  EXPECT_EQ(st.running, 1);
  EXPECT_EQ(st.waiting, 1);
  EXPECT_GT(st.kv_used_blocks, 0);
  EXPECT_NEAR(st.kv_usage_ratio, static_cast<double>(st.kv_used_blocks) / st.kv_total_blocks,
              1e-12);
  EXPECT_NE(hr->id(), hw->id());
  hw->Cancel();
  hw->Cancel();
  hr->Cancel();
  hr->Cancel();
  gate.Open();
  running.Wait();
  waiting.Wait();
  EXPECT_EQ(running.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(running.result().tokens.size(), 3u);  // what it had before the cancel
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(waiting.result().tokens.empty());
  EXPECT_EQ(waiting.timings().prefill, absl::ZeroDuration());
  EXPECT_EQ(waiting.timings().queue, waiting.timings().total);
  st = s->stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.waiting, 0);
  EXPECT_EQ(st.kv_used_blocks, 0);
  // Cancelling a finished request does nothing; the scheduler still serves.
  hr->Cancel();
  Outcome next;
  auto hn = MustSubmit(*s, Request(kPrompts[2], 5, 10), next.Callbacks());
  next.Wait();
  EXPECT_TRUE(next.status().ok()) << next.status();
  EXPECT_EQ(running.finish_calls(), 1);
  EXPECT_EQ(waiting.finish_calls(), 1);
  // A handle may outlive its scheduler.
  s.reset();
  hn->Cancel();
  EXPECT_EQ(next.finish_calls(), 1);
}

TEST_F(SchedulerTest, FullQueueRefusesWithResourceExhausted) {
  auto s = MakeScheduler(backend_.get(), {.max_running = 1, .max_waiting = 2});
  Gate gate;
  Outcome a, b, c;
  auto ha = MustSubmit(*s, Request(kPrompts[0], 6, 10), a.Callbacks([&](size_t n) {
    if (n == 1) gate.Block();
  }));
  gate.WaitEntered();
  auto hb = MustSubmit(*s, Request(kPrompts[1], 6, 10), b.Callbacks());
  auto hc = MustSubmit(*s, Request(kPrompts[2], 6, 10), c.Callbacks());
  Outcome refused;
  auto full = s->Submit(Request(kPrompts[0], 6, 10), refused.Callbacks());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted) << full.status();
  EXPECT_TRUE(absl::StrContains(full.status().message(), "max_waiting")) << full.status();
  gate.Open();
  for (Outcome* o : {&a, &b, &c}) {
    o->Wait();
    EXPECT_TRUE(o->status().ok()) << o->status();
  }
  EXPECT_FALSE(refused.finished());  // a refused Submit never calls back
  Outcome later;
  auto hl = MustSubmit(*s, Request(kPrompts[0], 6, 10), later.Callbacks());
  later.Wait();
  EXPECT_TRUE(later.status().ok());
}

TEST_F(SchedulerTest, WaitingPastMaxQueueTimeIsResourceExhausted) {
  auto s = MakeScheduler(backend_.get(),
                         {.max_running = 1, .max_queue_time = absl::Milliseconds(50)});
  Gate gate;
  Outcome a, b;
  auto ha = MustSubmit(*s, Request(kPrompts[0], 4, 10), a.Callbacks([&](size_t n) {
    if (n == 1) gate.Block();
  }));
  gate.WaitEntered();
  auto hb = MustSubmit(*s, Request(kPrompts[1], 4, 10), b.Callbacks());
  absl::SleepFor(absl::Milliseconds(150));
  gate.Open();
  a.Wait();
  b.Wait();
  EXPECT_TRUE(a.status().ok()) << a.status();
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted) << b.status();
  EXPECT_TRUE(absl::StrContains(b.status().message(), "max_queue_time")) << b.status();
  EXPECT_GE(b.timings().queue, absl::Milliseconds(150));
  EXPECT_TRUE(b.result().tokens.empty());
  EXPECT_EQ(s->stats().waiting, 0);
}

TEST_F(SchedulerTest, SubmitRefusesInvalidRequestsNamingTheField) {
  // 4 blocks of 16 tokens: no request may need more than 64 slots.
  auto small = MakeBackend(4 * BlockBytes(*backend_));
  ASSERT_EQ(small->kv_cache().capacity_tokens(), 64);
  auto s = MakeScheduler(small.get());
  auto check = [&](GenerationRequest r, absl::string_view field) {
    Outcome o;
    absl::Status status = s->Submit(std::move(r), o.Callbacks()).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_TRUE(absl::StrContains(status.message(), field)) << status;
  };
  GenerationRequest r = Request(kPrompts[0], 8, 0);
  r.max_tokens = 65 - static_cast<int64_t>(r.prompt.size());
  check(r, "can never fit");
  r.max_tokens = 64 - static_cast<int64_t>(r.prompt.size());  // exactly fits: accepted
  Outcome fits;
  auto h = MustSubmit(*s, r, fits.Callbacks());
  fits.Wait();
  EXPECT_TRUE(fits.status().ok()) << fits.status();
  EXPECT_EQ(fits.result().tokens.size(), static_cast<size_t>(r.max_tokens));
  check(Request(kPrompts[0], 9, 5), "precision");
  r = Request(kPrompts[0], 8, 5);
  r.prefill_precision = 1;
  check(r, "prefill_precision");
  r = Request(kPrompts[0], 8, 5);
  r.sampling.top_p = 0;
  check(r, "top_p");
  r = Request(kPrompts[0], 8, 5);
  r.prompt.push_back(static_cast<Token>(model_->config.vocab_size));
  check(r, "prompt");
  r.prompt.clear();
  check(r, "prompt");
  // Options.
  EXPECT_EQ(Scheduler::Create(small.get(), nullptr, {.max_running = 0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Scheduler::Create(small.get(), nullptr, {.max_running = 8, .max_step_tokens = 4})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  // No tokenizer: token ids only, and stop strings are refused.
  auto ids_only = Scheduler::Create(small.get(), nullptr, {});
  ASSERT_TRUE(ids_only.ok());
  r = Request(kPrompts[0], 8, 5);
  r.stop = {"x"};
  Outcome o;
  EXPECT_EQ((*ids_only)->Submit(r, o.Callbacks()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SchedulerTest, RequestsWaitForKvBlocksAndRunWhenOthersFinish) {
  // 8 blocks of 16 tokens; A reserves 7, so B (4 blocks) waits though a slot is free.
  auto small = MakeBackend(8 * BlockBytes(*backend_));
  ASSERT_EQ(small->kv_cache().num_blocks(), 8);
  auto s = MakeScheduler(small.get(), {.max_running = 4});
  GenerationRequest ra = Request(kPrompts[0], 6, 0);
  ra.max_tokens = 7 * 16 - static_cast<int64_t>(ra.prompt.size());
  GenerationRequest rb = Request(kPrompts[1], 3, 0);
  rb.max_tokens = 4 * 16 - static_cast<int64_t>(rb.prompt.size());
  rb.sampling = {.temperature = 0.8, .seed = 5};
  ASSERT_EQ(small->kv_cache().BlocksFor(rb.prompt.size() + rb.max_tokens), 4);
  Gate gate;
  Outcome a, b;
  std::atomic<bool> a_done_before_b{false};
  auto ha = MustSubmit(*s, ra, a.Callbacks([&](size_t n) {
    if (n == 1) gate.Block();
  }));
  gate.WaitEntered();
  auto hb = MustSubmit(*s, rb, b.Callbacks([&](size_t n) {
    if (n == 1) a_done_before_b = a.finished();
  }));
  const SchedulerStats st = s->stats();
  EXPECT_EQ(st.running, 1);
  EXPECT_EQ(st.waiting, 1);
  EXPECT_EQ(st.kv_used_blocks, 7);
  EXPECT_NEAR(st.kv_usage_ratio, 7.0 / 8.0, 1e-12);
  absl::SleepFor(absl::Milliseconds(50));
  gate.Open();
  a.Wait();
  b.Wait();
  ASSERT_TRUE(a.status().ok()) << a.status();
  ASSERT_TRUE(b.status().ok()) << b.status();
  EXPECT_TRUE(a_done_before_b.load());
  EXPECT_GE(b.timings().queue, absl::Milliseconds(50));
  EXPECT_EQ(b.result().tokens, Alone(rb).tokens);
  ExpectSaneTimings(a.timings());
  ExpectSaneTimings(b.timings());
  EXPECT_EQ(s->stats().kv_used_blocks, 0);
}

TEST_F(SchedulerTest, StopStringsAndMaxTokensEndRequests) {
  auto s = MakeScheduler(backend_.get());
  Outcome full;
  auto hf = MustSubmit(*s, Request(kPrompts[0], 8, 60), full.Callbacks());
  full.Wait();
  ASSERT_TRUE(full.status().ok());
  EXPECT_EQ(full.result().finish, FinishReason::kMaxTokens);
  EXPECT_EQ(full.result().tokens.size(), 60u);
  const std::string& text = full.result().text;
  const size_t space = text.find(' ', text.size() / 2);
  ASSERT_NE(space, std::string::npos) << text;
  const std::string stop = text.substr(space, 4);
  GenerationRequest r = Request(kPrompts[0], 8, 60);
  r.stop = {"never appears in a story: #$%", stop};
  Outcome stopped;
  auto hs = MustSubmit(*s, r, stopped.Callbacks());
  stopped.Wait();
  ASSERT_TRUE(stopped.status().ok());
  EXPECT_EQ(stopped.result().finish, FinishReason::kStopString);
  EXPECT_EQ(stopped.result().text, text.substr(0, text.find(stop)));
  EXPECT_EQ(stopped.streamed(), stopped.result().text);  // the stop string never streams
  EXPECT_LT(stopped.result().tokens.size(), full.result().tokens.size());
  EXPECT_EQ(std::vector<Token>(full.result().tokens.begin(),
                               full.result().tokens.begin() + stopped.result().tokens.size()),
            stopped.result().tokens);
}

TEST_F(SchedulerTest, ShutdownLetsRunningRequestsFinishWithinGrace) {
  auto s = MakeScheduler(backend_.get(), {.max_running = 1});
  Gate gate;
  Outcome a, queued;
  auto ha = MustSubmit(*s, Request(kPrompts[0], 7, 30), a.Callbacks([&](size_t n) {
    if (n == 1) gate.Block();
  }));
  gate.WaitEntered();
  auto hq = MustSubmit(*s, Request(kPrompts[2], 7, 30), queued.Callbacks());
  std::thread shutdown([&] { s->Shutdown(absl::Seconds(60)); });
  // New requests are refused as soon as shutdown starts.
  absl::StatusOr<std::shared_ptr<RequestHandle>> refused;
  Outcome never;
  for (;;) {
    refused = s->Submit(Request(kPrompts[0], 7, 5), never.Callbacks());
    if (absl::IsUnavailable(refused.status())) break;
    if (refused.ok()) (*refused)->Cancel();  // accepted before the shutdown began
    absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  gate.Open();
  shutdown.join();
  ASSERT_TRUE(a.finished() && queued.finished());
  EXPECT_TRUE(a.status().ok()) << a.status();
  EXPECT_EQ(a.result().tokens.size(), 30u);
  EXPECT_TRUE(queued.status().ok()) << queued.status();  // already queued: still served
  EXPECT_EQ(queued.result().tokens.size(), 30u);
  EXPECT_EQ(s->stats().kv_used_blocks, 0);
}

TEST_F(SchedulerTest, ShutdownCancelsWhatOutlastsTheGrace) {
  auto s = MakeScheduler(backend_.get(), {.max_running = 1});
  Outcome slow, queued;
  // ~2 ms per token over up to ~500 tokens: far longer than the grace.
  auto hs = MustSubmit(*s, Request(kPrompts[0], 5, 0), slow.Callbacks([](size_t) {
    absl::SleepFor(absl::Milliseconds(2));
  }));
  auto hq = MustSubmit(*s, Request(kPrompts[1], 5, 10), queued.Callbacks());
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Time start = absl::Now();
  s->Shutdown(absl::Milliseconds(100));
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(100));
  EXPECT_LT(took, absl::Seconds(5));
  ASSERT_TRUE(slow.finished() && queued.finished());
  EXPECT_EQ(slow.status().code(), absl::StatusCode::kUnavailable) << slow.status();
  EXPECT_GT(slow.result().tokens.size(), 0u);  // what it had so far
  EXPECT_EQ(slow.tokens(), slow.result().tokens);
  EXPECT_EQ(queued.status().code(), absl::StatusCode::kUnavailable) << queued.status();
  EXPECT_EQ(slow.finish_calls(), 1);
  EXPECT_EQ(queued.finish_calls(), 1);
  EXPECT_EQ(s->stats().kv_used_blocks, 0);
  Outcome after;
  EXPECT_EQ(s->Submit(Request(kPrompts[0], 5, 5), after.Callbacks()).status().code(),
            absl::StatusCode::kUnavailable);
  s->Shutdown();  // idempotent
}

TEST_F(SchedulerTest, BackendErrorFailsThatStepsRequestsOnly) {
  FailingBackend failing(backend_.get());
  auto s = MakeScheduler(&failing, {.max_running = 4});
  Gate gate;
  Outcome first, second, third;
  auto h1 = MustSubmit(*s, Request(kPrompts[0], 8, 20), first.Callbacks([&](size_t n) {
    if (n == 2) gate.Block();
  }));
  gate.WaitEntered();
  // Both join the next step, which fails.
  auto h2 = MustSubmit(*s, Request(kPrompts[1], 4, 20), second.Callbacks());
  auto h3 = MustSubmit(*s, Request(kPrompts[2], 3, 20), third.Callbacks());
  failing.FailNext();
  gate.Open();
  for (Outcome* o : {&first, &second, &third}) {
    o->Wait();
    EXPECT_EQ(o->status().code(), absl::StatusCode::kInternal) << o->status();
    EXPECT_TRUE(absl::StrContains(o->status().message(), "injected device fault"));
    EXPECT_EQ(o->finish_calls(), 1);
  }
  EXPECT_EQ(failing.failed_rows(), 3);
  EXPECT_EQ(first.result().tokens.size(), 2u);
  EXPECT_EQ(s->stats().kv_used_blocks, 0);
  EXPECT_EQ(s->stats().running, 0);
  // The scheduler goes on, with the same tokens as ever.
  GenerationRequest r = Request(kPrompts[1], 4, 20);
  Outcome after;
  auto ha = MustSubmit(*s, r, after.Callbacks());
  after.Wait();
  ASSERT_TRUE(after.status().ok()) << after.status();
  EXPECT_EQ(after.result().tokens, Alone(r).tokens);
}

TEST_F(SchedulerTest, SchedulersSharingAStepGateNeverStepAtOnce) {
  // Two model versions' schedulers during a publish: each keeps its own
  // backend and requests, and with one StepGate their steps take turns.
  auto other = MakeBackend(8 << 20);
  std::atomic<int> inside{0}, most{0};
  OverlapCountingBackend first_backend(backend_.get(), &inside, &most);
  OverlapCountingBackend second_backend(other.get(), &inside, &most);
  auto gate = std::make_shared<StepGate>();
  auto first = MakeScheduler(&first_backend, {.max_running = 4, .step_gate = gate});
  auto second = MakeScheduler(&second_backend, {.max_running = 4, .step_gate = gate});
  std::vector<GenerationRequest> requests;
  std::vector<std::unique_ptr<Outcome>> outcomes;
  std::vector<std::shared_ptr<RequestHandle>> handles;
  for (int i = 0; i < 6; ++i) {
    requests.push_back(Request(kPrompts[i % 3], 8 - i % 3, 24));
    outcomes.push_back(std::make_unique<Outcome>());
    handles.push_back(
        MustSubmit(i % 2 == 0 ? *first : *second, requests.back(), outcomes.back()->Callbacks()));
  }
  for (size_t i = 0; i < outcomes.size(); ++i) {
    outcomes[i]->Wait();
    ASSERT_TRUE(outcomes[i]->status().ok()) << outcomes[i]->status();
    EXPECT_EQ(outcomes[i]->result().tokens, Alone(requests[i]).tokens) << "request " << i;
  }
  EXPECT_EQ(most.load(), 1) << "two steps ran at once";
  EXPECT_GT(first->stats().steps, 0u);
  EXPECT_GT(second->stats().steps, 0u);
  EXPECT_EQ(gate->queued(), 0);
}

}  // namespace
}  // namespace otaro::engine
