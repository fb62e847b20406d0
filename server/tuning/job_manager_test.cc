// TuningJobManager on its own (no gRPC, no server): the real trainer on
// stories260K with a real Store, so queueing, cancel, shutdown -> INTERRUPTED
// and resume are tested where they live. The CI's ThreadSanitizer step runs
// it: the worker thread, the API threads and the trainer's callbacks all
// touch the same jobs.
#include "server/tuning/job_manager.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"

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

  void StartManager() {
    TuningSettings settings;
    settings.jobs_dir = dir_ + "/store/jobs";
    settings.environment.data_dir = dir_ + "/data";
    settings.environment.threads = 1;
    settings.base_model_path = StoriesModel();
    ModelVersionHooks hooks;
    hooks.current_version = []() -> absl::StatusOr<uint64_t> { return 1; };
    hooks.publish = [this](uint64_t version) {
      std::lock_guard<std::mutex> lock(mu_);
      published_.push_back(version);
      return absl::OkStatus();
    };
    manager_ = std::make_unique<TuningJobManager>(store_.get(), settings, hooks, nullptr);
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

  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<TuningJobManager> manager_;
  std::mutex mu_;
  std::vector<uint64_t> published_;
};

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
