// Model versions over loopback against the real otaro_server on stories260K:
// publishing a second version while GenerateStream calls are in flight (none
// fails, each ends on the version it started with), a version that cannot be
// loaded, rollback, the `otaro models` commands, and a restart that keeps the
// published version.
//
// Version 2 is stories260K with its final norm's sign flipped (greedy output
// differs from the first token). The test registers it through the store API
// (server/store), from this process while the server runs: the same call the
// tuning worker makes, on the same database file (SQLite locks it across
// processes), so no test-only path into the server is needed.
#include <csignal>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/testing/shared_data.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "otaro/v1/models.grpc.pb.h"
#include "server/model/testing/stories_checkpoints.h"
#include "server/store/store.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"

namespace otaro {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<grpc::ClientContext> Context(double seconds = 60) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  return context;
}

otaro::v1::GenerateRequest Greedy(const std::string& prompt, int max_tokens) {
  otaro::v1::GenerateRequest request;
  request.set_text(prompt);
  request.set_max_tokens(max_tokens);
  request.set_stop_at_eos(false);  // every call runs its full length
  return request;
}

struct Answer {
  grpc::Status status;
  std::string text;
  uint64_t version = 0;
};

Answer Generate(otaro::v1::Inference::Stub& stub, const otaro::v1::GenerateRequest& request) {
  otaro::v1::GenerateResponse response;
  Answer answer;
  answer.status = stub.Generate(Context().get(), request, &response);
  answer.text = response.text();
  answer.version = response.model_version();
  return answer;
}

class ModelVersionsServer {
 public:
  ModelVersionsServer(const std::string& name, const std::string& store_dir) {
    server_ = std::make_unique<testing::ServerProcess>(
        otaro::testing::ScratchDir(name),
        std::vector<std::string>{
            "--model", server::testing::Stories260KGguf(), "--set", "store.dir=" + store_dir,
            "--set", "server.grpc_address=127.0.0.1:0", "--set",
            "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0", "--set", "engine.threads=2"});
    inference_ = otaro::v1::Inference::NewStub(server_->channel());
    versions_ = otaro::v1::ModelVersions::NewStub(server_->channel());
  }

  otaro::v1::Inference::Stub& inference() { return *inference_; }
  otaro::v1::ModelVersions::Stub& versions() { return *versions_; }
  testing::ServerProcess& process() { return *server_; }

  uint64_t ServedVersion() {
    otaro::v1::ModelInfo info;
    grpc::Status status = inference_->GetModelInfo(Context().get(), {}, &info);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return info.model_version();
  }

  grpc::Status Publish(uint64_t version, otaro::v1::ModelVersion* out) {
    otaro::v1::PublishModelVersionRequest request;
    request.set_version(version);
    return versions_->PublishModelVersion(Context().get(), request, out);
  }

  std::string Metrics() {
    auto response = testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
    return response.ok() ? response->body : "";
  }

  testing::RunResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {testing::RunfilePath("client/otaro"), "--server",
                                     server_->address()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv, server_->dir());
  }

  void Stop() {
    server_->process().Signal(SIGTERM);
    auto code = server_->process().Wait(absl::Seconds(30));
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 0) << server_->process().Stderr();
  }

 private:
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<otaro::v1::Inference::Stub> inference_;
  std::unique_ptr<otaro::v1::ModelVersions::Stub> versions_;
};

TEST(ModelVersionsIntegrationTest, PublishRollbackAndRestartWhileServing) {
  const std::string dir = otaro::testing::ScratchDir("model_versions_it");
  const std::string store_dir = dir + "/store";
  ASSERT_TRUE(server::testing::WriteStories260KCheckpoint(dir + "/base.sefp").ok());
  ASSERT_TRUE(
      server::testing::WriteSignFlippedCheckpoint(dir + "/base.sefp", dir + "/flipped.sefp").ok());

  auto server = std::make_unique<ModelVersionsServer>("model_versions_it_a", store_dir);
  EXPECT_EQ(server->ServedVersion(), 1u);
  {
    auto health = grpc::health::v1::Health::NewStub(server->process().channel());
    grpc::health::v1::HealthCheckRequest request;
    request.set_service("otaro.v1.ModelVersions");
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(Context().get(), request, &response).ok());
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
  const otaro::v1::GenerateRequest probe = Greedy("Once upon a time", 24);
  const Answer v1 = Generate(server->inference(), probe);
  ASSERT_TRUE(v1.status.ok()) << v1.status.error_message();
  EXPECT_EQ(v1.version, 1u);
  const otaro::v1::GenerateRequest long_request = Greedy("Lily went to the park", 400);
  const Answer v1_long = Generate(server->inference(), long_request);
  ASSERT_TRUE(v1_long.status.ok());

  // Version 2, registered as the tuning worker would.
  {
    auto store = server::Store::Open(store_dir);
    ASSERT_TRUE(store.ok()) << store.status();
    auto version = (*store)->RegisterModelVersion(dir + "/flipped.sefp", {});
    ASSERT_TRUE(version.ok()) << version.status();
    ASSERT_EQ(*version, 2u);
  }

  // Streams in flight on version 1 while version 2 is published.
  constexpr int kStreams = 6;
  absl::Mutex mu;
  int started = 0;
  bool publish_returned = false;
  int finished_after_publish = 0;
  std::vector<Answer> answers(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      auto context = Context();
      auto stream = server->inference().GenerateStream(context.get(), long_request);
      otaro::v1::GenerateChunk chunk;
      bool first = true;
      while (stream->Read(&chunk)) {
        if (first) {
          absl::MutexLock lock(&mu);
          ++started;
          first = false;
        }
        answers[i].text += chunk.text();
        if (chunk.finish_reason() != otaro::v1::FINISH_REASON_UNSPECIFIED) {
          answers[i].version = chunk.model_version();
        }
      }
      answers[i].status = stream->Finish();
      absl::MutexLock lock(&mu);
      if (publish_returned) ++finished_after_publish;
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto all_started = [&] { return started == kStreams; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_started), absl::Seconds(60)));
  }
  otaro::v1::ModelVersion published;
  grpc::Status publish_status = server->Publish(2, &published);
  {
    absl::MutexLock lock(&mu);
    publish_returned = true;
  }
  ASSERT_TRUE(publish_status.ok()) << publish_status.error_message();
  EXPECT_EQ(published.version(), 2u);
  EXPECT_TRUE(published.serving());
  EXPECT_EQ(published.checkpoint_path(), store_dir + "/models/2/model.sefp");
  // New requests see version 2 at once, and its different output.
  const Answer v2 = Generate(server->inference(), probe);
  ASSERT_TRUE(v2.status.ok());
  EXPECT_EQ(v2.version, 2u);
  EXPECT_NE(v2.text, v1.text);
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kStreams; ++i) {
    EXPECT_TRUE(answers[i].status.ok()) << i << ": " << answers[i].status.error_message();
    EXPECT_EQ(answers[i].version, 1u) << i;
    EXPECT_EQ(answers[i].text, v1_long.text) << i;  // all of it from version 1
  }
  // The swap happened with requests still running, not after they ended.
  EXPECT_GT(finished_after_publish, 0);
  EXPECT_EQ(server->ServedVersion(), 2u);

  std::string metrics = server->Metrics();
  EXPECT_TRUE(absl::StrContains(metrics, "\notaro_model_version 2\n")) << metrics;
  EXPECT_TRUE(absl::StrContains(
      metrics, "otaro_model_publishes_total{action=\"publish\",outcome=\"OK\"} 1"));
  EXPECT_TRUE(absl::StrContains(metrics, "otaro_model_info{version=\"2\""));
  EXPECT_FALSE(absl::StrContains(metrics, "otaro_model_info{version=\"1\""));

  // Version 3 is damaged on disk after registration: publishing it fails and
  // version 2 keeps serving.
  {
    auto store = server::Store::Open(store_dir);
    ASSERT_TRUE(store.ok());
    auto version = (*store)->RegisterModelVersion(dir + "/base.sefp", {});
    ASSERT_TRUE(version.ok());
    ASSERT_EQ(*version, 3u);
    fs::resize_file((*store)->ModelCheckpointPath(3), 4096);
  }
  otaro::v1::ModelVersion ignored;
  grpc::Status bad = server->Publish(3, &ignored);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(bad.error_message(), "model version 3")) << bad.error_message();
  EXPECT_TRUE(absl::StrContains(bad.error_message(), "still serving version 2"));
  EXPECT_EQ(server->Publish(99, &ignored).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Generate(server->inference(), probe).text, v2.text);

  // The command line: list, rollback, errors.
  auto list = server->Cli({"models", "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, "VERSION")) << list.out;
  EXPECT_TRUE(absl::StrContains(list.out, store_dir + "/models/3/model.sefp")) << list.out;
  auto rollback = server->Cli({"models", "rollback"});
  EXPECT_EQ(rollback.exit_code, 0) << rollback.err;
  EXPECT_TRUE(absl::StrContains(rollback.out, "now serving model version 1")) << rollback.out;
  const Answer back = Generate(server->inference(), probe);
  EXPECT_EQ(back.version, 1u);
  EXPECT_EQ(back.text, v1.text);
  auto missing = server->Cli({"models", "publish", "42"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(missing.err, "no model version 42")) << missing.err;
  EXPECT_EQ(server->Cli({"models", "publish", "x"}).exit_code, 2);
  EXPECT_EQ(server->Cli({"models", "bogus"}).exit_code, 2);
  auto publish = server->Cli({"models", "publish", "2"});
  EXPECT_EQ(publish.exit_code, 0) << publish.err;
  EXPECT_TRUE(absl::StrContains(publish.out, "now serving model version 2")) << publish.out;

  otaro::v1::ListModelVersionsResponse versions;
  ASSERT_TRUE(server->versions().ListModelVersions(Context().get(), {}, &versions).ok());
  ASSERT_EQ(versions.versions_size(), 3);
  EXPECT_FALSE(versions.versions(0).serving());
  EXPECT_TRUE(versions.versions(1).serving());
  EXPECT_EQ(versions.versions(0).checkpoint_path(), server::testing::Stories260KGguf());

  // A restart serves the version published last.
  server->Stop();
  server.reset();
  ModelVersionsServer restarted("model_versions_it_b", store_dir);
  EXPECT_EQ(restarted.ServedVersion(), 2u);
  const Answer after_restart = Generate(restarted.inference(), probe);
  EXPECT_EQ(after_restart.version, 2u);
  EXPECT_EQ(after_restart.text, v2.text);
  auto rolled_back = restarted.Cli({"models", "rollback"});
  EXPECT_EQ(rolled_back.exit_code, 0) << rolled_back.err;
  EXPECT_EQ(Generate(restarted.inference(), probe).text, v1.text);
}

}  // namespace
}  // namespace otaro
