// Tuning jobs end to end: a real otaro_server over loopback serving stories260K
// while its worker tunes it on real text (WikiText-2), with the real gRPC API:
// a job runs while Generate streams keep working, its events stream, its model
// is published (greedy output and model version change, nothing fails); a kill
// -9 mid-job leaves it INTERRUPTED and resumable; cancel, broken data and path
// traversal behave; a job's zero-shot scores are those of the model it produced.
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/testing/shared_data.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/loader.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "otaro/v1/models.grpc.pb.h"
#include "otaro/v1/tuning.grpc.pb.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"
#include "eval/zero_shot.h"

namespace otaro {
namespace {

using ::testing::HasSubstr;
using otaro::v1::JobState;

std::unique_ptr<grpc::ClientContext> Context(int seconds = 30) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  return context;
}

// A folder the server may read tuning data from: an excerpt of WikiText-2.
std::string MakeDataDir(const std::string& dir) {
  const std::string data = dir + "/data";
  ::mkdir(data.c_str(), 0755);
  std::ifstream in(testing::SharedPath("data/corpora/wikitext-2-tokens/valid.txt"));
  std::string text, line;
  while (text.size() < 120000 && std::getline(in, line)) text += line + "\n";
  std::ofstream(data + "/wiki.txt") << text;
  std::ofstream(data + "/broken.jsonl") << "{\"instruction\": \"hi\", \"output\": \"ok\"}\n"
                                        << "{oops\n"
                                        << "[1, 2]\n";
  return data;
}

std::vector<std::string> ServerArgs(const std::string& dir) {
  return {"--model",
          testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"),
          "--set", "server.grpc_address=127.0.0.1:0",
          "--set", "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0",
          "--set", absl::StrCat("store.dir=", dir, "/store"),
          "--set", absl::StrCat("tuning.data_dir=", dir, "/data"),
          "--set", "tuning.threads=1",
          "--set", "engine.threads=1"};
}

otaro::v1::CreateTuningJobRequest JobRequest(int steps, int checkpoint_every = 0) {
  otaro::v1::CreateTuningJobRequest request;
  request.set_display_name("wiki");
  request.mutable_dataset()->set_path("wiki.txt");
  request.mutable_dataset()->set_format(otaro::v1::DATASET_FORMAT_TEXT);
  auto* h = request.mutable_hyperparameters();
  h->set_max_steps(steps);
  h->set_seq_len(64);
  h->set_batch_size(4);
  h->set_optimizer(otaro::v1::OPTIMIZER_ADAMW);
  h->set_learning_rate(3e-3f);
  h->set_max_grad_norm(1.0f);
  h->set_checkpoint_every_steps(checkpoint_every);
  request.mutable_evaluation()->set_max_items(4);
  return request;
}

class Client {
 public:
  explicit Client(std::shared_ptr<grpc::Channel> channel)
      : inference(otaro::v1::Inference::NewStub(channel)),
        tuning(otaro::v1::Tuning::NewStub(channel)),
        models(otaro::v1::ModelVersions::NewStub(channel)) {}

  otaro::v1::TuningJob Create(const otaro::v1::CreateTuningJobRequest& request,
                              grpc::Status* status) {
    otaro::v1::TuningJob job;
    *status = tuning->CreateTuningJob(Context().get(), request, &job);
    return job;
  }
  otaro::v1::TuningJob Get(const std::string& id) {
    otaro::v1::GetTuningJobRequest request;
    request.set_id(id);
    otaro::v1::TuningJob job;
    grpc::Status status = tuning->GetTuningJob(Context().get(), request, &job);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return job;
  }
  otaro::v1::TuningJob WaitFor(const std::string& id, std::function<bool(const otaro::v1::TuningJob&)> done,
                               absl::Duration timeout = absl::Minutes(4)) {
    const absl::Time end = absl::Now() + timeout;
    otaro::v1::TuningJob job;
    while (absl::Now() < end) {
      job = Get(id);
      if (done(job)) return job;
      absl::SleepFor(absl::Milliseconds(100));
    }
    ADD_FAILURE() << "job " << id << " stuck in " << otaro::v1::JobState_Name(job.state());
    return job;
  }
  std::vector<otaro::v1::TuningJobEvent> Events(const std::string& id, grpc::Status* status) {
    otaro::v1::StreamTuningJobEventsRequest request;
    request.set_id(id);
    auto context = Context(300);
    auto reader = tuning->StreamTuningJobEvents(context.get(), request);
    std::vector<otaro::v1::TuningJobEvent> events;
    otaro::v1::TuningJobEvent event;
    while (reader->Read(&event)) events.push_back(event);
    *status = reader->Finish();
    return events;
  }
  // Greedy text and the version that served it.
  std::pair<std::string, uint64_t> Greedy(grpc::Status* status) {
    otaro::v1::GenerateRequest request;
    request.set_text("Once upon a time");
    request.set_max_tokens(24);
    request.mutable_sampling()->set_temperature(0);
    request.mutable_decode_precision()->set_mantissa_bits(4);
    otaro::v1::GenerateResponse response;
    *status = inference->Generate(Context().get(), request, &response);
    return {response.text(), response.model_version()};
  }

  std::unique_ptr<otaro::v1::Inference::Stub> inference;
  std::unique_ptr<otaro::v1::Tuning::Stub> tuning;
  std::unique_ptr<otaro::v1::ModelVersions::Stub> models;
};

bool Final(const otaro::v1::TuningJob& job) {
  return job.state() == otaro::v1::JOB_STATE_SUCCEEDED ||
         job.state() == otaro::v1::JOB_STATE_FAILED ||
         job.state() == otaro::v1::JOB_STATE_CANCELLED ||
         job.state() == otaro::v1::JOB_STATE_INTERRUPTED;
}

TEST(TuningJobsTest, JobRunsWhileServingThenPublishChangesTheModel) {
  const std::string dir = testing::ScratchDir("tune_publish");
  MakeDataDir(dir);
  testing::ServerProcess server(dir, ServerArgs(dir));
  ASSERT_GT(server.grpc_port(), 0);
  Client client(server.channel());

  grpc::Status status;
  const auto [before_text, before_version] = client.Greedy(&status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(before_version, 1u);

  // Streams at mixed precisions for as long as the job runs.
  std::atomic<bool> stop{false};
  std::atomic<int> streams_ok{0}, streams_failed{0};
  std::vector<std::thread> generators;
  for (int i = 0; i < 2; ++i) {
    generators.emplace_back([&, i] {
      auto stub = otaro::v1::Inference::NewStub(server.channel());
      while (!stop.load()) {
        otaro::v1::GenerateRequest request;
        request.set_text("Lily went to the park");
        request.set_max_tokens(16);
        request.mutable_decode_precision()->set_mantissa_bits(i == 0 ? 3 : 8);
        auto context = Context();
        auto reader = stub->GenerateStream(context.get(), request);
        otaro::v1::GenerateChunk chunk;
        while (reader->Read(&chunk)) {
        }
        grpc::Status s = reader->Finish();
        (s.ok() ? streams_ok : streams_failed).fetch_add(1);
        if (!s.ok()) ADD_FAILURE() << "stream failed: " << s.error_message();
      }
    });
  }

  otaro::v1::TuningJob job = client.Create(JobRequest(60), &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(job.state(), otaro::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.base_version().version(), 1u);
  std::vector<otaro::v1::TuningJobEvent> events = client.Events(job.id(), &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
  stop.store(true);
  for (auto& t : generators) t.join();
  EXPECT_GT(streams_ok.load(), 0);
  EXPECT_EQ(streams_failed.load(), 0);

  // The stream told the whole story, in order.
  int steps = 0, evaluations = 0, checkpoints = 0;
  std::vector<JobState> states;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), i + 1) << events[i].DebugString();
    if (events[i].has_step()) ++steps;
    if (events[i].has_evaluation()) {
      ++evaluations;
      EXPECT_EQ(events[i].evaluation().rows_size(), 7);
    }
    if (events[i].has_checkpoint()) ++checkpoints;
    if (events[i].event_case() == otaro::v1::TuningJobEvent::kStateChange) {
      states.push_back(events[i].state_change());
    }
  }
  EXPECT_GT(steps, 0);
  EXPECT_GE(evaluations, 1);
  EXPECT_GE(checkpoints, 1);
  EXPECT_EQ(states, (std::vector<JobState>{otaro::v1::JOB_STATE_QUEUED,
                                           otaro::v1::JOB_STATE_RUNNING,
                                           otaro::v1::JOB_STATE_SUCCEEDED}));

  job = client.Get(job.id());
  EXPECT_EQ(job.state(), otaro::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(job.step(), 60u);
  EXPECT_GT(job.trained_tokens(), 0u);
  ASSERT_EQ(job.result_version().version(), 2u);
  ASSERT_GE(job.checkpoints_size(), 1);

  // A late attach gets the whole history again.
  EXPECT_EQ(client.Events(job.id(), &status).size(), events.size());

  // Publish: new requests are served by version 2, with the tuned output.
  otaro::v1::PublishModelVersionRequest publish;
  publish.set_version(2);
  otaro::v1::ModelVersion published;
  status = client.models->PublishModelVersion(Context(120).get(), publish, &published);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const auto [after_text, after_version] = client.Greedy(&status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(after_version, 2u);
  EXPECT_NE(after_text, before_text);
}

TEST(TuningJobsTest, KilledServerLeavesJobInterruptedAndResumeFinishesIt) {
  const std::string dir = testing::ScratchDir("tune_kill");
  MakeDataDir(dir);
  std::string job_id;
  // Each server run has its own folder (ready file, logs); the store is shared.
  ::mkdir((dir + "/first").c_str(), 0755);
  ::mkdir((dir + "/second").c_str(), 0755);
  {
    testing::ServerProcess server(dir + "/first", ServerArgs(dir));
    ASSERT_GT(server.grpc_port(), 0);
    Client client(server.channel());
    grpc::Status status;
    otaro::v1::TuningJob job = client.Create(JobRequest(400, 10), &status);
    ASSERT_TRUE(status.ok()) << status.error_message();
    job_id = job.id();
    client.WaitFor(job_id, [](const otaro::v1::TuningJob& j) { return j.checkpoints_size() >= 2; });
    server.process().Signal(SIGKILL);
  }
  testing::ServerProcess server(dir + "/second", ServerArgs(dir));
  ASSERT_GT(server.grpc_port(), 0);
  Client client(server.channel());
  otaro::v1::TuningJob job = client.Get(job_id);
  EXPECT_EQ(job.state(), otaro::v1::JOB_STATE_INTERRUPTED);
  const uint64_t checkpointed = job.checkpoints(job.checkpoints_size() - 1).step();
  EXPECT_GE(checkpointed, 20u);
  // The step a resume continues from, not how far the killed run had got.
  EXPECT_EQ(job.step(), checkpointed);

  otaro::v1::CreateTuningJobRequest resume;
  resume.set_resume_job_id(job_id);
  grpc::Status status;
  client.Create(resume, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  job = client.WaitFor(job_id, Final, absl::Minutes(8));
  EXPECT_EQ(job.state(), otaro::v1::JOB_STATE_SUCCEEDED) << job.error();
  EXPECT_EQ(job.step(), 400u);
  EXPECT_EQ(job.result_version().version(), 2u);
  // The history says it resumed from a checkpoint rather than starting over.
  bool resumed = false;
  for (const auto& event : client.Events(job_id, &status)) {
    resumed |= absl::StrContains(event.message(), "resuming");
  }
  EXPECT_TRUE(resumed);
}

TEST(TuningJobsTest, CancelBrokenDataAndPathTraversal) {
  const std::string dir = testing::ScratchDir("tune_errors");
  MakeDataDir(dir);
  testing::ServerProcess server(dir, ServerArgs(dir));
  ASSERT_GT(server.grpc_port(), 0);
  Client client(server.channel());
  grpc::Status status;

  // Paths outside the data folder never reach the queue.
  for (const char* path : {"../store/otaro.db", "/etc/passwd", "sub/../../x"}) {
    auto request = JobRequest(10);
    request.mutable_dataset()->set_path(path);
    client.Create(request, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << path;
  }
  // One rule for every tuning error (tuning.proto): the code says whose fault,
  // the message starts with the field.
  {
    auto missing = JobRequest(10);
    missing.mutable_dataset()->set_path("missing.txt");
    client.Create(missing, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), ::testing::StartsWith("dataset.path: "));
    auto bad_lr = JobRequest(10);
    bad_lr.mutable_hyperparameters()->set_learning_rate(-1);
    client.Create(bad_lr, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), ::testing::StartsWith("hyperparameters: "));
    auto no_version = JobRequest(10);
    no_version.mutable_base_version()->set_version(999);
    client.Create(no_version, &status);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(status.error_message(), ::testing::StartsWith("base_version.version: "));
  }

  // Broken data fails the job with the line numbers.
  auto broken = JobRequest(10);
  broken.mutable_dataset()->set_path("broken.jsonl");
  broken.mutable_dataset()->set_format(otaro::v1::DATASET_FORMAT_ALPACA);
  broken.mutable_hyperparameters()->set_seq_len(128);
  otaro::v1::TuningJob job = client.Create(broken, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  job = client.WaitFor(job.id(), Final);
  EXPECT_EQ(job.state(), otaro::v1::JOB_STATE_FAILED);
  EXPECT_THAT(job.error(), HasSubstr("broken.jsonl:2:"));
  EXPECT_THAT(job.error(), HasSubstr("broken.jsonl:3:"));

  // Cancel mid-job: stops at a step boundary with a checkpoint kept.
  job = client.Create(JobRequest(5000), &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  client.WaitFor(job.id(), [](const otaro::v1::TuningJob& j) { return j.step() >= 5; });
  otaro::v1::CancelTuningJobRequest cancel;
  cancel.set_id(job.id());
  otaro::v1::TuningJob cancelled;
  status = client.tuning->CancelTuningJob(Context(120).get(), cancel, &cancelled);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(cancelled.state(), otaro::v1::JOB_STATE_CANCELLED);
  EXPECT_GE(cancelled.checkpoints_size(), 1);
  EXPECT_LT(cancelled.step(), 5000u);
  // Cancelling again is a precondition error, not a crash.
  status = client.tuning->CancelTuningJob(Context().get(), cancel, &cancelled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), ::testing::StartsWith("id: "));
  // The CLI shows the same (otaro tune get / list), and refuses bad input.
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {testing::RunfilePath("client/otaro"), "--server",
                                     server.address(), "tune"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv, server.dir());
  };
  auto shown = cli({"get", job.id()});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr("CANCELLED"));
  auto listed = cli({"list"});
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_THAT(listed.out, HasSubstr(job.id()));
  EXPECT_THAT(listed.out, HasSubstr("FAILED"));
  EXPECT_EQ(cli({"create", "steps=ten"}).exit_code, 2);
  auto traversal = cli({"create", "data=../x", "steps=5"});
  EXPECT_EQ(traversal.exit_code, 1);
  EXPECT_THAT(traversal.err, HasSubstr(".."));

  // Unknown job.
  otaro::v1::GetTuningJobRequest get;
  get.set_id("job-nope");
  status = client.tuning->GetTuningJob(Context().get(), get, &cancelled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), ::testing::StartsWith("id: "));
}

// acc / acc_norm of `model_path` on the first `limit` questions of `task`,
// straight from eval/ at `precision` (8 for a float32 model).
std::pair<double, double> ZeroShotOf(const std::string& model_path, bool quantize,
                                     const std::string& task, int limit, int precision) {
  engine::LoadOptions load;
  load.quantize = quantize;
  auto model = engine::LoadModel(model_path, load);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {-1, -1};
  auto backend = engine::cpu::CpuBackend::Create(model->get(), {});
  EXPECT_TRUE(backend.ok()) << backend.status();
  auto questions = eval::LoadNamedTask(task, testing::SharedPath("data/eval"));
  EXPECT_TRUE(questions.ok()) << questions.status();
  if (!backend.ok() || !questions.ok()) return {-1, -1};
  eval::ZeroShotOptions options;
  options.limit = limit;
  auto result = eval::EvaluateZeroShot(**backend, *(*model)->tokenizer, *questions, precision,
                                       options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (!result.ok()) return {-1, -1};
  EXPECT_EQ(result->count, limit);
  return {result->acc, result->acc_norm};
}

TEST(TuningJobsTest, ZeroShotScoresAreThoseOfTheTunedModelAtEveryPrecision) {
  const std::string dir = testing::ScratchDir("tune_zero_shot");
  MakeDataDir(dir);
  std::vector<std::string> args = ServerArgs(dir);
  args.push_back("--set");
  args.push_back(absl::StrCat("tuning.zero_shot_dir=", testing::SharedPath("data/eval")));
  testing::ServerProcess server(dir, args);
  ASSERT_GT(server.grpc_port(), 0);
  Client client(server.channel());
  grpc::Status status;

  // An unknown set never reaches the queue, and the answer says what exists.
  auto unknown = JobRequest(5);
  unknown.mutable_evaluation()->add_zero_shot_tasks("mmlu");
  client.Create(unknown, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("evaluation.zero_shot_tasks"));
  EXPECT_THAT(status.error_message(), HasSubstr("'mmlu'"));
  EXPECT_THAT(status.error_message(), HasSubstr("known: arc_easy"));

  // OpenBookQA: short questions, and on its first 20 the tuned stories260K
  // answers differently at E5M3 than at E5M8, so a score taken at the wrong
  // width (or on the wrong weights) would not match below.
  constexpr int kItems = 20;
  auto request = JobRequest(6);
  request.mutable_hyperparameters()->add_bit_set(3);
  request.mutable_hyperparameters()->add_bit_set(8);
  request.mutable_evaluation()->add_zero_shot_tasks("obqa");
  request.mutable_evaluation()->set_max_items(kItems);
  otaro::v1::TuningJob job = client.Create(request, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  job = client.WaitFor(job.id(), Final);
  ASSERT_EQ(job.state(), otaro::v1::JOB_STATE_SUCCEEDED) << job.error();
  ASSERT_GE(job.checkpoints_size(), 1);
  const otaro::v1::EvaluationTable& table =
      job.checkpoints(job.checkpoints_size() - 1).evaluation();
  ASSERT_EQ(table.rows_size(), 3);  // fp32, E5M8, E5M3

  // The model the job produced (version 2) and the float32 masters it was
  // exported from, scored independently.
  otaro::v1::ListModelVersionsResponse versions;
  status = client.models->ListModelVersions(Context().get(), {}, &versions);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(versions.versions_size(), 2);
  const otaro::v1::ModelVersion& produced = versions.versions(1);
  ASSERT_EQ(produced.tuning_job_id(), job.id());
  std::string latest;
  std::ifstream(absl::StrCat(dir, "/store/jobs/", job.id(), "/run/checkpoints/LATEST")) >> latest;
  ASSERT_FALSE(latest.empty());
  const std::string master =
      absl::StrCat(dir, "/store/jobs/", job.id(), "/run/checkpoints/", latest,
                   "/master.safetensors");
  for (const auto& row : table.rows()) {
    const std::string label = row.mantissa_bits() ? absl::StrCat("E5M", row.mantissa_bits())
                                                  : std::string("fp32");
    ASSERT_EQ(row.accuracy().count("obqa"), 1u) << label;
    ASSERT_EQ(row.accuracy_norm().count("obqa"), 1u) << label;
    const double acc = row.accuracy().at("obqa");
    const double acc_norm = row.accuracy_norm().at("obqa");
    EXPECT_GE(acc, 0) << label;
    EXPECT_LE(acc, 1) << label;
    EXPECT_GE(acc_norm, 0) << label;
    EXPECT_LE(acc_norm, 1) << label;
    const auto [expected_acc, expected_norm] =
        row.mantissa_bits() != 0
            ? ZeroShotOf(produced.checkpoint_path(), /*quantize=*/true, "obqa", kItems,
                         static_cast<int>(row.mantissa_bits()))
            : ZeroShotOf(master, /*quantize=*/false, "obqa", kItems, 8);
    EXPECT_DOUBLE_EQ(acc, expected_acc) << label;
    EXPECT_DOUBLE_EQ(acc_norm, expected_norm) << label;
    // The version's provenance carries the same table.
    bool found = false;
    for (const auto& p : produced.evaluation().rows()) {
      if (p.mantissa_bits() != row.mantissa_bits()) continue;
      found = true;
      EXPECT_DOUBLE_EQ(p.accuracy().at("obqa"), acc) << label;
    }
    EXPECT_TRUE(found) << label;
  }

  // The final evaluation event carries them too, and `otaro tune get` shows them.
  bool event_with_scores = false;
  for (const auto& event : client.Events(job.id(), &status)) {
    if (event.has_evaluation() && event.evaluation().rows_size() > 0 &&
        event.evaluation().rows(0).accuracy().count("obqa") == 1) {
      event_with_scores = true;
    }
  }
  EXPECT_TRUE(event_with_scores);
  auto shown = testing::Run({testing::RunfilePath("client/otaro"), "--server", server.address(),
                             "tune", "get", job.id()},
                            server.dir());
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_THAT(shown.out, HasSubstr("zero-shot obqa  acc% fp32="));
  EXPECT_THAT(shown.out, HasSubstr("E5M3="));
}

}  // namespace
}  // namespace otaro
