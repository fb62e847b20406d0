// TuningJobManager on its own (no gRPC, no server) with a real Store, in two
// halves:
//  - FakeRunner: a runner that trains nothing and does what each test scripts
//    (hold a job at its start, fail, throw), so queue order, cancel while
//    queued and while running, INTERRUPTED at start-up, resume and the
//    worker's survival are tested exactly and fast;
//  - the real trainer on stories260K, so the seam itself (callbacks, cancel,
//    checkpoints, resume) is tested against what the server really runs.
// The CI's ThreadSanitizer step runs it: the worker thread, the API threads
// and the runner's callbacks all touch the same jobs.
#include "server/tuning/job_manager.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"
#include "sefp/checkpoint.h"

namespace otaro::server {
namespace {

using otaro::v1::JobState;

std::string StoriesModel() {
  return otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}

otaro::v1::CreateTuningJobRequest Job(int steps, int checkpoint_every = 0) {
  otaro::v1::CreateTuningJobRequest request;
  request.mutable_dataset()->set_path("wiki.txt");
  request.mutable_dataset()->set_format(otaro::v1::DATASET_FORMAT_TEXT);
  auto* h = request.mutable_hyperparameters();
  h->set_max_steps(steps);
  h->set_seq_len(32);
  h->set_batch_size(2);
  h->set_optimizer(otaro::v1::OPTIMIZER_ADAMW);
  h->set_learning_rate(1e-3f);
  h->set_checkpoint_every_steps(checkpoint_every);
  request.mutable_evaluation()->set_max_items(2);
  return request;
}

// A runner that trains nothing. Every run waits at its start until the test
// lets its job go (Allow / AllowAll) or the manager cancels it; then it ends
// as scripted for that job: 3 steps and a (tiny, real) SEFP model, a returned
// error, or a thrown exception. A cancelled run writes checkpoints/LATEST as
// the trainer does, so resume can be told from a fresh start.
class FakeRunner {
 public:
  struct Call {
    std::string job_id;
    bool resume = false;
  };

  TuningRunner AsRunner() {
    return [this](const trainer::TuneOptions& options, const trainer::TuneCallbacks& callbacks,
                  const std::atomic<bool>* cancel) { return Run(options, callbacks, cancel); };
  }

  void Allow(const std::string& job_id) {
    std::lock_guard<std::mutex> lock(mu_);
    allowed_.insert(job_id);
    cv_.notify_all();
  }
  void AllowAll() {
    std::lock_guard<std::mutex> lock(mu_);
    allow_all_ = true;
    cv_.notify_all();
  }
  void FailWith(const std::string& job_id, absl::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    failures_[job_id] = std::move(status);
  }
  void ThrowIn(const std::string& job_id) {
    std::lock_guard<std::mutex> lock(mu_);
    throws_.insert(job_id);
  }
  // True once a run of `job_id` has started (waits up to 30 s).
  bool WaitStarted(const std::string& job_id) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] {
      return std::any_of(calls_.begin(), calls_.end(),
                         [&](const Call& c) { return c.job_id == job_id; });
    });
  }
  std::vector<Call> calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  // Tuned models come out worse (4.0) at this width too, bit set or not.
  void WorseAt(int bits) {
    std::lock_guard<std::mutex> lock(mu_);
    worse_at_ = bits;
  }
  // The most runs that were ever in progress at once.
  int max_in_flight() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_in_flight_;
  }

 private:
  // Counts the runs in progress around RunOne (an exception included).
  absl::StatusOr<trainer::TuneResult> Run(const trainer::TuneOptions& options,
                                          const trainer::TuneCallbacks& callbacks,
                                          const std::atomic<bool>* cancel) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    }
    auto leave = [this] {
      std::lock_guard<std::mutex> lock(mu_);
      --in_flight_;
    };
    try {
      absl::StatusOr<trainer::TuneResult> result = RunOne(options, callbacks, cancel);
      leave();
      return result;
    } catch (...) {
      leave();
      throw;
    }
  }

  absl::StatusOr<trainer::TuneResult> RunOne(const trainer::TuneOptions& options,
                                             const trainer::TuneCallbacks& callbacks,
                                             const std::atomic<bool>* cancel) {
    // The manager runs job J in <jobs_dir>/J/run.
    const std::string job_id =
        std::filesystem::path(options.output_dir).parent_path().filename().string();
    std::filesystem::create_directories(options.output_dir + "/checkpoints");
    std::unique_lock<std::mutex> lock(mu_);
    calls_.push_back({job_id, options.resume});
    cv_.notify_all();
    // The manager sets `cancel` without notifying us: poll it.
    while (!allow_all_ && allowed_.count(job_id) == 0 && !cancel->load()) {
      cv_.wait_for(lock, std::chrono::milliseconds(5));
    }
    trainer::TuneResult result;
    if (cancel->load()) {
      std::ofstream(options.output_dir + "/checkpoints/LATEST") << "step-00000001\n";
      result.cancelled = true;
      result.steps = 1;
      return result;
    }
    if (auto failure = failures_.find(job_id); failure != failures_.end()) return failure->second;
    if (throws_.count(job_id) != 0) throw std::runtime_error("fake trainer ran out of memory");
    const int worse_at = worse_at_;
    lock.unlock();
    // Held-out losses: 3.0 before, 2.0 after, at every width of the bit set
    // (so an auto_publish job beats its base there); widths evaluated besides
    // the bit set (evaluation.mantissa_bits) come out worse, 4.0.
    auto evaluation = [&](int64_t step, double loss) {
      trainer::Evaluation e;
      e.step = step;
      for (int bits : options.eval_bits.empty() ? options.bits : options.eval_bits) {
        const bool in_bit_set =
            std::find(options.bits.begin(), options.bits.end(), bits) != options.bits.end();
        const double l = step == 0 || (in_bit_set && bits != worse_at) ? loss : 4.0;
        e.points.push_back({bits, l, std::exp(l), 64, {}});
      }
      return e;
    };
    if (options.evaluate_at_start) callbacks.on_evaluation(evaluation(0, 3.0));
    for (int64_t step = 1; step <= 3; ++step) {
      trainer::StepMetrics metrics;
      metrics.step = step;
      metrics.total_steps = 3;
      metrics.bits = 4;
      metrics.loss = 2.0;
      metrics.tokens = step * 64;
      callbacks.on_step(metrics);
    }
    sefp::Checkpoint model;
    model.metadata.source_model = "fake runner";
    sefp::DenseTensor norm;
    norm.shape = {2};
    const float values[2] = {1.0f, -1.0f};
    norm.bytes.assign(reinterpret_cast<const uint8_t*>(values),
                      reinterpret_cast<const uint8_t*>(values) + sizeof(values));
    model.dense["norm.weight"] = norm;
    result.sefp_path = options.output_dir + "/model.sefp";
    if (absl::Status written = sefp::WriteCheckpoint(result.sefp_path, model); !written.ok()) {
      return written;
    }
    result.steps = 3;
    result.tokens = 192;
    result.final_evaluation = evaluation(3, 2.0);
    callbacks.on_evaluation(*result.final_evaluation);
    result.master_path = options.output_dir + "/checkpoints/step-00000003/master.safetensors";
    return result;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::set<std::string> allowed_;
  bool allow_all_ = false;
  std::map<std::string, absl::Status> failures_;
  std::set<std::string> throws_;
  int in_flight_ = 0;
  int max_in_flight_ = 0;
  int worse_at_ = -1;  // WorseAt
};

class JobManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = otaro::testing::ScratchDir(
        std::string("job_manager_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    const std::string data = dir_ + "/data";
    std::filesystem::create_directories(data);
    std::ifstream in(otaro::testing::SharedPath("data/corpora/wikitext-2-tokens/valid.txt"));
    std::string text, line;
    while (text.size() < 40000 && std::getline(in, line)) text += line + "\n";
    std::ofstream(data + "/wiki.txt") << text;
    OpenStore();
  }
  void TearDown() override {
    manager_.reset();
    store_.reset();
  }

  void OpenStore() {
    auto store = Store::Open(dir_ + "/store");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    ASSERT_TRUE(store_->InitializeServing(StoriesModel()).ok());
  }

  // `runner`: the real trainer unless a test passes a fake; `publish`: the
  // hook auto_publish calls (default: records the version).
  void StartManager(TuningRunner runner = trainer::RunTuning,
                    std::function<absl::Status(uint64_t)> publish = nullptr) {
    TuningSettings settings;
    settings.jobs_dir = dir_ + "/store/jobs";
    settings.environment.data_dir = dir_ + "/data";
    settings.environment.threads = 1;
    settings.base_model_path = StoriesModel();
    ModelVersionHooks hooks;
    hooks.current_version = []() -> absl::StatusOr<uint64_t> { return 1; };
    hooks.publish = publish ? std::move(publish) : [this](uint64_t version) {
      std::lock_guard<std::mutex> lock(mu_);
      published_.push_back(version);
      return absl::OkStatus();
    };
    manager_ = std::make_unique<TuningJobManager>(store_.get(), settings, hooks, nullptr,
                                                  std::move(runner));
    ASSERT_TRUE(manager_->Start().ok());
  }

  otaro::v1::TuningJob Create(const otaro::v1::CreateTuningJobRequest& request) {
    auto job = manager_->Create(request);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : otaro::v1::TuningJob();
  }

  // Polls job `id` until `done` holds (fails the test after `timeout`).
  otaro::v1::TuningJob WaitFor(const std::string& id,
                               const std::function<bool(const otaro::v1::TuningJob&)>& done,
                               absl::Duration timeout = absl::Minutes(3)) {
    const absl::Time end = absl::Now() + timeout;
    otaro::v1::TuningJob job;
    while (absl::Now() < end) {
      auto got = manager_->Get(id);
      EXPECT_TRUE(got.ok()) << got.status();
      if (!got.ok()) break;
      job = *got;
      if (done(job)) return job;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "job " << id << " stuck in " << JobState_Name(job.state());
    return job;
  }
  otaro::v1::TuningJob WaitFinal(const std::string& id) {
    return WaitFor(id, [](const otaro::v1::TuningJob& j) { return IsFinalJobState(j.state()); });
  }

  std::vector<std::string> RunOrder() {
    std::vector<std::string> ids;
    for (const FakeRunner::Call& call : fake_.calls()) ids.push_back(call.job_id);
    return ids;
  }

  FakeRunner fake_;
  FakeRunner restarted_;  // the runner of a manager started again on the same store
  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<TuningJobManager> manager_;
  std::mutex mu_;
  std::vector<uint64_t> published_;
};

// --- With the fake runner -------------------------------------------------

TEST_F(JobManagerTest, QueuedJobsRunOneAtATimeInCreationOrder) {
  StartManager(fake_.AsRunner());
  const std::string a = Create(Job(3)).id();
  ASSERT_TRUE(fake_.WaitStarted(a));
  const std::string b = Create(Job(3)).id();
  const std::string c = Create(Job(3)).id();
  // While a is held, b and c wait in the queue and the runner never sees them.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(RunOrder(), std::vector<std::string>({a}));
  EXPECT_EQ(manager_->Get(a)->state(), otaro::v1::JOB_STATE_RUNNING);
  EXPECT_EQ(manager_->Get(b)->state(), otaro::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(manager_->Get(c)->state(), otaro::v1::JOB_STATE_QUEUED);

  fake_.AllowAll();
  const otaro::v1::TuningJob done_c = WaitFinal(c);
  EXPECT_EQ(RunOrder(), std::vector<std::string>({a, b, c}));
  EXPECT_EQ(manager_->Get(a)->result_version().version(), 2u);
  EXPECT_EQ(manager_->Get(b)->result_version().version(), 3u);
  ASSERT_EQ(done_c.state(), otaro::v1::JOB_STATE_SUCCEEDED) << done_c.error();
  EXPECT_EQ(done_c.result_version().version(), 4u);
  EXPECT_EQ(done_c.step(), 3u);  // the runner's steps reached the job's progress
  EXPECT_EQ(fake_.max_in_flight(), 1);  // never two runs at once
}

TEST_F(JobManagerTest, CancelWhileQueuedNeverRunsTheJobAndWhileRunningStopsIt) {
  StartManager(fake_.AsRunner());
  const std::string running = Create(Job(3)).id();
  ASSERT_TRUE(fake_.WaitStarted(running));
  const std::string queued = Create(Job(3)).id();
  const std::string after = Create(Job(3)).id();

  auto cancelled = manager_->Cancel(queued);
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), otaro::v1::JOB_STATE_CANCELLED);

  // The runner sees the cancel flag; Cancel answers with the final state.
  auto stopped = manager_->Cancel(running);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->state(), otaro::v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(stopped->has_result_version());

  fake_.Allow(after);
  EXPECT_EQ(WaitFinal(after).state(), otaro::v1::JOB_STATE_SUCCEEDED);
  // The cancelled queued job was skipped, not run.
  EXPECT_EQ(RunOrder(), std::vector<std::string>({running, after}));
  EXPECT_EQ(manager_->Get(queued)->state(), otaro::v1::JOB_STATE_CANCELLED);
  EXPECT_FALSE(manager_->Cancel(queued).ok());  // nothing left to cancel
}

TEST_F(JobManagerTest, StartUpInterruptsARunningJobAndRequeuesQueuedOnesInOrder) {
  StartManager(fake_.AsRunner());
  const std::string was_running = Create(Job(3)).id();
  ASSERT_TRUE(fake_.WaitStarted(was_running));
  const std::string b = Create(Job(3)).id();
  const std::string c = Create(Job(3)).id();
  manager_.reset();  // a clean stop leaves b and c QUEUED in the store
  // ... and a crash would have left the running job RUNNING: make it so.
  ASSERT_TRUE(store_->UpdateJobState(was_running, otaro::v1::JOB_STATE_RUNNING).ok());

  restarted_.AllowAll();
  StartManager(restarted_.AsRunner());
  EXPECT_EQ(manager_->Get(was_running)->state(), otaro::v1::JOB_STATE_INTERRUPTED);
  EXPECT_EQ(WaitFinal(c).state(), otaro::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(WaitFinal(b).state(), otaro::v1::JOB_STATE_SUCCEEDED);
  std::vector<std::string> order;
  for (const FakeRunner::Call& call : restarted_.calls()) order.push_back(call.job_id);
  EXPECT_EQ(order, std::vector<std::string>({b, c}));  // never the interrupted one
}

TEST_F(JobManagerTest, ResumeRunsAnInterruptedJobAgainFromItsCheckpoint) {
  StartManager(fake_.AsRunner());
  const std::string id = Create(Job(3)).id();
  ASSERT_TRUE(fake_.WaitStarted(id));
  manager_->Shutdown();  // the held run is cancelled, checkpoints, INTERRUPTED
  EXPECT_EQ(manager_->Get(id)->state(), otaro::v1::JOB_STATE_INTERRUPTED);

  restarted_.AllowAll();
  manager_.reset();
  StartManager(restarted_.AsRunner());
  otaro::v1::CreateTuningJobRequest resume;
  resume.set_resume_job_id(id);
  auto resumed = manager_->Create(resume);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->state(), otaro::v1::JOB_STATE_QUEUED);
  const otaro::v1::TuningJob done = WaitFinal(id);
  ASSERT_EQ(done.state(), otaro::v1::JOB_STATE_SUCCEEDED) << done.error();
  ASSERT_EQ(restarted_.calls().size(), 1u);
  EXPECT_TRUE(restarted_.calls()[0].resume);  // from the checkpoint, not from scratch
  EXPECT_FALSE(fake_.calls()[0].resume);

  // A job that succeeded cannot be resumed.
  auto again = manager_->Create(resume);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition) << again.status();
}

TEST_F(JobManagerTest, AFailingOrThrowingRunnerFailsItsJobAndTheWorkerGoesOn) {
  StartManager(fake_.AsRunner());
  const std::string fails = Create(Job(3)).id();
  const std::string throws = Create(Job(3)).id();
  const std::string fine = Create(Job(3)).id();
  fake_.FailWith(fails, absl::DataLossError("disk full"));
  fake_.ThrowIn(throws);
  fake_.AllowAll();

  const otaro::v1::TuningJob failed = WaitFinal(fails);
  EXPECT_EQ(failed.state(), otaro::v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed.error(), "disk full");
  const otaro::v1::TuningJob threw = WaitFinal(throws);
  EXPECT_EQ(threw.state(), otaro::v1::JOB_STATE_FAILED);
  EXPECT_NE(threw.error().find("fake trainer ran out of memory"), std::string::npos)
      << threw.error();
  const otaro::v1::TuningJob done = WaitFinal(fine);
  ASSERT_EQ(done.state(), otaro::v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.result_version().version(), 2u);  // the failed jobs made no version
  EXPECT_EQ(RunOrder(), std::vector<std::string>({fails, throws, fine}));
  EXPECT_EQ(fake_.max_in_flight(), 1);
}

TEST_F(JobManagerTest, AThrowingPublishFailsTheJobNotTheServer) {
  StartManager(fake_.AsRunner(), [](uint64_t) -> absl::Status {
    throw std::bad_alloc();  // e.g. loading the new version ran out of memory
  });
  otaro::v1::CreateTuningJobRequest request = Job(3);
  request.set_auto_publish(true);
  const std::string id = Create(request).id();
  fake_.AllowAll();
  const otaro::v1::TuningJob failed = WaitFinal(id);
  EXPECT_EQ(failed.state(), otaro::v1::JOB_STATE_FAILED);
  EXPECT_NE(failed.error().find("exception"), std::string::npos) << failed.error();
  // The worker goes on with the next job.
  const std::string next = Create(Job(3)).id();
  EXPECT_EQ(WaitFinal(next).state(), otaro::v1::JOB_STATE_SUCCEEDED);
}

TEST_F(JobManagerTest, EvaluationBitsAreReportedAndAutoPublishComparesTheBitSetOnly) {
  StartManager(fake_.AsRunner());
  otaro::v1::CreateTuningJobRequest request = Job(3);
  for (uint32_t b : {3, 4, 8}) request.mutable_hyperparameters()->add_bit_set(b);
  for (uint32_t b : {8, 2, 6}) request.mutable_evaluation()->add_mantissa_bits(b);
  request.set_auto_publish(true);
  const std::string id = Create(request).id();
  fake_.AllowAll();
  const otaro::v1::TuningJob done = WaitFinal(id);
  ASSERT_EQ(done.state(), otaro::v1::JOB_STATE_SUCCEEDED) << done.error();
  // E5M2 and E5M6 got worse (the fake's rule) but are not in the bit set.
  {
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_EQ(published_, std::vector<uint64_t>({2}));
  }
  bool ended = false;
  auto events = manager_->WaitEvents(id, 0, absl::Now() + absl::Seconds(5), &ended);
  ASSERT_TRUE(events.ok()) << events.status();
  std::vector<uint32_t> final_rows;
  for (const otaro::v1::TuningJobEvent& e : *events) {
    if (!e.has_evaluation() || e.evaluation().step() != 3) continue;
    final_rows.clear();
    for (const auto& row : e.evaluation().rows()) final_rows.push_back(row.mantissa_bits());
  }
  // The union of the bit set and evaluation.mantissa_bits reached the trainer
  // (the fake reports the widths it was asked for, in that order).
  EXPECT_EQ(final_rows, std::vector<uint32_t>({2, 3, 4, 6, 8}));
}

TEST_F(JobManagerTest, AutoPublishSkipsATunedModelWorseAtAWidthOfTheBitSet) {
  StartManager(fake_.AsRunner());
  fake_.WorseAt(4);
  otaro::v1::CreateTuningJobRequest request = Job(3);
  for (uint32_t b : {3, 4, 8}) request.mutable_hyperparameters()->add_bit_set(b);
  request.set_auto_publish(true);
  fake_.AllowAll();
  const otaro::v1::TuningJob done = WaitFinal(Create(request).id());
  ASSERT_EQ(done.state(), otaro::v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.result_version().version(), 2u);  // made, not published
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_TRUE(published_.empty());
}

// --- With the real trainer -------------------------------------------------

TEST_F(JobManagerTest, JobsRunOneAtATimeInOrderAndEachMakesAVersion) {
  StartManager();
  const otaro::v1::TuningJob first = Create(Job(3));
  const otaro::v1::TuningJob second = Create(Job(3));
  // One worker: while the first runs or waits, the second is queued.
  EXPECT_EQ(manager_->Get(second.id())->state(), otaro::v1::JOB_STATE_QUEUED);

  const otaro::v1::TuningJob a = WaitFinal(first.id());
  const otaro::v1::TuningJob b = WaitFinal(second.id());
  ASSERT_EQ(a.state(), otaro::v1::JOB_STATE_SUCCEEDED) << a.error();
  ASSERT_EQ(b.state(), otaro::v1::JOB_STATE_SUCCEEDED) << b.error();
  EXPECT_EQ(a.step(), 3u);
  EXPECT_EQ(a.result_version().version(), 2u);
  EXPECT_EQ(b.result_version().version(), 3u);  // first in, first done

  bool ended = false;
  auto events = manager_->WaitEvents(first.id(), 0, absl::Now() + absl::Seconds(5), &ended);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_TRUE(ended);
  EXPECT_FALSE(events->empty());
  std::lock_guard<std::mutex> lock(mu_);
  EXPECT_TRUE(published_.empty());  // auto_publish was not asked for
}

TEST_F(JobManagerTest, CancelEndsAQueuedJobAtOnceAndARunningOneAtItsNextStep) {
  StartManager();
  const otaro::v1::TuningJob running = Create(Job(100000));
  const otaro::v1::TuningJob queued = Create(Job(3));
  WaitFor(running.id(), [](const otaro::v1::TuningJob& j) { return j.step() >= 1; });

  auto cancelled = manager_->Cancel(queued.id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), otaro::v1::JOB_STATE_CANCELLED);

  ASSERT_TRUE(manager_->Cancel(running.id()).ok());
  const otaro::v1::TuningJob stopped = WaitFinal(running.id());
  EXPECT_EQ(stopped.state(), otaro::v1::JOB_STATE_CANCELLED);
  EXPECT_LT(stopped.step(), 100000u);
  EXPECT_FALSE(stopped.has_result_version());

  // A cancelled job stays cancelled; cancelling it again is refused.
  auto again = manager_->Cancel(running.id());
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(manager_->Get(queued.id())->state(), otaro::v1::JOB_STATE_CANCELLED);
}

TEST_F(JobManagerTest, ShutdownInterruptsAndResumeContinuesFromTheLastCheckpoint) {
  StartManager();
  const otaro::v1::TuningJob job = Create(Job(60, /*checkpoint_every=*/5));
  WaitFor(job.id(), [](const otaro::v1::TuningJob& j) { return j.step() >= 12; });
  manager_->Shutdown();
  const otaro::v1::TuningJob interrupted = *manager_->Get(job.id());
  ASSERT_EQ(interrupted.state(), otaro::v1::JOB_STATE_INTERRUPTED);
  // A stop checkpoints where it stops: the step shown is where resume goes on.
  ASSERT_GE(interrupted.checkpoints_size(), 1);
  EXPECT_EQ(interrupted.checkpoints(interrupted.checkpoints_size() - 1).step(),
            interrupted.step());

  // A new manager on the same store (a restart) keeps it INTERRUPTED until
  // it is resumed, then finishes it.
  manager_.reset();
  StartManager();
  EXPECT_EQ(manager_->Get(job.id())->state(), otaro::v1::JOB_STATE_INTERRUPTED);
  otaro::v1::CreateTuningJobRequest resume;
  resume.set_resume_job_id(job.id());
  auto resumed = manager_->Create(resume);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->id(), job.id());
  const otaro::v1::TuningJob done = WaitFinal(job.id());
  ASSERT_EQ(done.state(), otaro::v1::JOB_STATE_SUCCEEDED) << done.error();
  EXPECT_EQ(done.step(), 60u);
  EXPECT_EQ(done.result_version().version(), 2u);
}

}  // namespace
}  // namespace otaro::server
