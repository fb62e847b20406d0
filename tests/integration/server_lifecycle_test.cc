// End to end over loopback: the real otaro_server binary, a real gRPC client
// (health, reflection, the API), a real HTTP scrape checked by promtool, the
// real `otaro` CLI, and the shutdown sequence driven by real signals.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "common/testing/shared_data.h"
#include "google/protobuf/descriptor.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "otaro/v1/tuning.grpc.pb.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"

namespace otaro {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;
using testing::Subprocess;

std::unique_ptr<grpc::ClientContext> Context(double seconds = 10) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int>(seconds * 1000)));
  return context;
}

// One otaro_server process with its own config, on free ports.
class RunningServer {
 public:
  RunningServer(const std::string& name, const std::string& extra_yaml,
                std::vector<std::string> extra_args = {}) {
    const std::string dir = testing::ScratchDir(name);
    const std::string config_path = dir + "/otaro.yaml";
    std::ofstream(config_path) << "server:\n  grpc_address: \"127.0.0.1:0\"\n"
                                  "  metrics_address: \"127.0.0.1:0\"\n"
                                  "  http_address: \"127.0.0.1:0\"\n"
                               << extra_yaml;
    std::vector<std::string> args = {"--config", config_path};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    server_ = std::make_unique<testing::ServerProcess>(dir, args, absl::Seconds(30));
  }

  Subprocess& process() { return server_->process(); }
  int grpc_port() const { return server_->grpc_port(); }
  int metrics_port() const { return server_->metrics_port(); }
  std::string address() const { return server_->address(); }
  std::shared_ptr<grpc::Channel> channel() const { return server_->channel(); }
  const std::string& dir() const { return server_->dir(); }

  HealthCheckResponse::ServingStatus Health(const std::string& service = "") {
    auto stub = grpc::health::v1::Health::NewStub(channel());
    HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    auto context = Context();
    grpc::Status status = stub->Check(context.get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.status();
  }

 private:
  std::unique_ptr<testing::ServerProcess> server_;
};

TEST(ServerLifecycleTest, HealthIsServingWhileInferenceWaitsForAModel) {
  RunningServer server("health", "");
  ASSERT_GT(server.grpc_port(), 0);
  EXPECT_EQ(server.Health(), HealthCheckResponse::SERVING);
  // Readiness to generate is per service: no model, not ready.
  EXPECT_EQ(server.Health("otaro.v1.Inference"), HealthCheckResponse::NOT_SERVING);
}

TEST(ServerLifecycleTest, ReflectionListsAndDescribesEveryService) {
  RunningServer server("reflection", "");
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(server.channel());
  auto context = Context();
  auto stream = stub->ServerReflectionInfo(context.get());

  grpc::reflection::v1alpha::ServerReflectionRequest list;
  list.set_list_services("");
  ASSERT_TRUE(stream->Write(list));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.insert(service.name());
  }
  for (const char* expected : {"otaro.v1.Inference", "otaro.v1.Tuning", "otaro.v1.ModelVersions",
                               "grpc.health.v1.Health",
                               "grpc.reflection.v1alpha.ServerReflection"}) {
    EXPECT_TRUE(names.count(expected)) << expected << " not listed";
  }

  grpc::reflection::v1alpha::ServerReflectionRequest describe;
  describe.set_file_containing_symbol("otaro.v1.Inference");
  ASSERT_TRUE(stream->Write(describe));
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.has_file_descriptor_response()) << response.DebugString();
  bool found = false;
  for (const auto& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    if (file.name() != "otaro/v1/inference.proto") continue;
    found = true;
    ASSERT_EQ(file.service_size(), 1);
    std::set<std::string> methods;
    for (const auto& method : file.service(0).method()) methods.insert(method.name());
    EXPECT_EQ(methods, (std::set<std::string>{"Generate", "GenerateStream", "Tokenize",
                                              "Detokenize", "GetModelInfo"}));
  }
  EXPECT_TRUE(found);
  stream->WritesDone();
}

TEST(ServerLifecycleTest, ModelInfoWithoutModelIsFailedPrecondition) {
  RunningServer server("modelinfo", "");
  auto stub = otaro::v1::Inference::NewStub(server.channel());
  otaro::v1::ModelInfo info;
  auto context = Context();
  grpc::Status status = stub->GetModelInfo(context.get(), {}, &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "no model is loaded"))
      << status.error_message();

  otaro::v1::GenerateRequest request;
  request.set_text("hello");
  otaro::v1::GenerateResponse response;
  auto context2 = Context();
  status = stub->Generate(context2.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "no model is loaded"));

  // Tuning jobs need the persistent store, which this server has not: it says so.
  auto tuning = otaro::v1::Tuning::NewStub(server.channel());
  otaro::v1::TuningJob job;
  auto context3 = Context();
  status = tuning->CreateTuningJob(context3.get(), {}, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "store.dir")) << status.error_message();
}

TEST(ServerLifecycleTest, MetricsEndpointPassesPromtool) {
  RunningServer server("metrics", "");
  ASSERT_GT(server.metrics_port(), 0);
  auto response = testing::HttpGet("127.0.0.1", server.metrics_port(), "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(absl::StartsWith(response->content_type, "text/plain; version=0.0.4"))
      << response->content_type;
  for (const char* series : {"otaro_build_info{", "process_start_time_seconds",
                             "otaro_uptime_seconds", "process_resident_memory_bytes"}) {
    EXPECT_TRUE(absl::StrContains(response->body, series)) << series << "\n" << response->body;
  }
  int exit_code = -1;
  std::string lint = testing::PromtoolCheckMetrics(response->body, server.dir(), &exit_code);
  EXPECT_EQ(exit_code, 0) << lint << "\n" << response->body;
  EXPECT_EQ(lint, "") << "promtool reported problems";

  auto healthz = testing::HttpGet("127.0.0.1", server.metrics_port(), "/healthz");
  ASSERT_TRUE(healthz.ok());
  EXPECT_EQ(healthz->status, 200);
  // Not ready: no model to serve.
  auto readyz = testing::HttpGet("127.0.0.1", server.metrics_port(), "/readyz");
  ASSERT_TRUE(readyz.ok());
  EXPECT_EQ(readyz->status, 503);
}

TEST(ServerLifecycleTest, SigtermDrainsThenExitsZero) {
  RunningServer server("drain", "  drain_delay_seconds: 2\n  shutdown_timeout_seconds: 5\n");
  ASSERT_GT(server.grpc_port(), 0);

  // A health watcher sees the change, as a load balancer would.
  auto health = grpc::health::v1::Health::NewStub(server.channel());
  HealthCheckRequest watch_request;
  auto watch_context = Context(30);
  auto watch = health->Watch(watch_context.get(), watch_request);
  HealthCheckResponse update;
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);

  absl::Time signalled = absl::Now();
  server.process().Signal(SIGTERM);
  ASSERT_TRUE(watch->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);

  // During the drain delay new calls are turned away with UNAVAILABLE.
  auto stub = otaro::v1::Inference::NewStub(server.channel());
  otaro::v1::ModelInfo info;
  auto context = Context();
  grpc::Status status = stub->GetModelInfo(context.get(), {}, &info);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_TRUE(absl::StrContains(status.error_message(), "shutting down"));

  std::optional<int> code = server.process().Wait(absl::Seconds(20));
  ASSERT_TRUE(code.has_value()) << "server did not exit after SIGTERM";
  EXPECT_EQ(*code, 0) << server.process().Stderr();
  EXPECT_GE(absl::Now() - signalled, absl::Seconds(2)) << "drain delay not honoured";
  std::string log = server.process().Stderr();
  EXPECT_TRUE(absl::StrContains(log, "draining")) << log;
  EXPECT_TRUE(absl::StrContains(log, "stopped")) << log;
}

TEST(ServerLifecycleTest, SecondSignalForcesExit) {
  RunningServer server("force", "  drain_delay_seconds: 60\n");
  ASSERT_GT(server.grpc_port(), 0);
  server.process().Signal(SIGTERM);
  absl::SleepFor(absl::Milliseconds(300));
  server.process().Signal(SIGINT);
  std::optional<int> code = server.process().Wait(absl::Seconds(10));
  ASSERT_TRUE(code.has_value()) << "second signal did not force the exit";
  EXPECT_EQ(*code, 1);
  EXPECT_TRUE(absl::StrContains(server.process().Stderr(), "second signal"));
}

// Threads the server did not start (OpenBLAS starts its workers from a
// library constructor, before main blocks the stop signals) may receive a
// process-wide SIGTERM when the main thread is not in sigwait: delivered
// straight to such a thread, it must still drain, not kill the server.
TEST(ServerLifecycleTest, StopSignalOnAThreadThatDoesNotBlockItStillDrains) {
  RunningServer server("foreign_thread", "  drain_delay_seconds: 0\n");
  ASSERT_GT(server.grpc_port(), 0);
  const pid_t pid = server.process().pid();
  pid_t target = 0;
  for (const auto& task : std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"))) {
    int tid = 0;
    if (!absl::SimpleAtoi(task.path().filename().string(), &tid) || tid == pid) continue;
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      uint64_t blocked = 0;
      if (absl::StartsWith(line, "SigBlk:") &&
          absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line.substr(7)), &blocked) &&
          (blocked & (uint64_t{1} << (SIGTERM - 1))) == 0) {
        target = tid;
      }
    }
  }
  if (target == 0) GTEST_SKIP() << "every thread of the server blocks SIGTERM here";
  ASSERT_EQ(::syscall(SYS_tgkill, pid, target, SIGTERM), 0);
  std::optional<int> code = server.process().Wait(absl::Seconds(30));
  ASSERT_TRUE(code.has_value()) << "the server did not stop";
  EXPECT_EQ(*code, 0) << server.process().Stderr();
  EXPECT_TRUE(absl::StrContains(server.process().Stderr(), "draining"));
}

TEST(ServerLifecycleTest, PortInUseIsAClearStartupError) {
  RunningServer first("port_first", "");
  ASSERT_GT(first.grpc_port(), 0);
  std::string dir = testing::ScratchDir("port_second");
  auto result = testing::Run({testing::RunfilePath("server/otaro_server"), "--set",
                              absl::StrCat("server.grpc_address=127.0.0.1:", first.grpc_port()),
                              "--set", "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0"},
                             dir, absl::Seconds(30));
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_TRUE(absl::StrContains(result.err, absl::StrCat(first.grpc_port()))) << result.err;
}

struct BadConfigCase {
  const char* yaml;
  const char* names;
};

TEST(ServerLifecycleTest, BadConfigExitsTwoNamingTheKey) {
  std::string dir = testing::ScratchDir("badconfig");
  for (const BadConfigCase& c : {BadConfigCase{"server:\n  grpc_adress: \"a:1\"\n",
                                               "server.grpc_adress"},
                                 BadConfigCase{"model:\n  resident_max_bits: 12\n",
                                               "model.resident_max_bits"},
                                 BadConfigCase{"engine:\n  device: tpu\n", "engine.device"},
                                 BadConfigCase{"server: [\n", "not valid YAML"}}) {
    std::string path = dir + "/bad.yaml";
    std::ofstream(path) << c.yaml;
    auto result = testing::Run({testing::RunfilePath("server/otaro_server"), "--config", path},
                               dir, absl::Seconds(30));
    EXPECT_EQ(result.exit_code, 2) << c.yaml;
    EXPECT_TRUE(absl::StrContains(result.err, c.names)) << result.err;
  }
  auto missing = testing::Run({testing::RunfilePath("server/otaro_server"), "--config",
                               dir + "/missing.yaml"},
                              dir, absl::Seconds(30));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(missing.err, "missing.yaml")) << missing.err;
}

TEST(ServerLifecycleTest, CliHealthAndInfo) {
  RunningServer server("cli", "");
  std::string otaro = testing::RunfilePath("client/otaro");
  auto health = testing::Run({otaro, "health", "--server", server.address()}, server.dir());
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(health.out, "SERVING\n");

  auto ready = testing::Run({otaro, "health", "--server", server.address(), "--service",
                             "otaro.v1.Inference"},
                            server.dir());
  EXPECT_EQ(ready.exit_code, 1);
  EXPECT_EQ(ready.out, "NOT_SERVING\n");

  auto info = testing::Run({otaro, "info", "--server", server.address()}, server.dir());
  EXPECT_EQ(info.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(info.err, "no model is loaded")) << info.err;
}

TEST(ServerLifecycleTest, CliExplainsUnreachableServerAndBadUsage) {
  std::string dir = testing::ScratchDir("cli_errors");
  std::string otaro = testing::RunfilePath("client/otaro");
  auto down = testing::Run({otaro, "health", "--server", "127.0.0.1:1", "--timeout_seconds", "3"},
                           dir);
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(down.err, "cannot reach otaro_server at 127.0.0.1:1")) << down.err;

  auto bad_address = testing::Run({otaro, "info", "--server", "no-such-host.invalid:50051",
                                   "--timeout_seconds", "3"},
                                  dir);
  EXPECT_EQ(bad_address.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(bad_address.err, "no-such-host.invalid:50051")) << bad_address.err;

  auto usage = testing::Run({otaro, "frobnicate"}, dir);
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(usage.err, "unknown command 'frobnicate'")) << usage.err;

  // An offline command whose tool is not installed beside the client: the
  // client alone in a folder, with nothing on PATH.
  const std::string alone = dir + "/alone/bin";
  std::filesystem::create_directories(alone);
  std::filesystem::copy_file(otaro, alone + "/otaro",
                             std::filesystem::copy_options::overwrite_existing);
  auto missing = testing::Run({"/usr/bin/env", "PATH=/nonexistent", alone + "/otaro", "convert",
                               "in.gguf", "out.sefp"},
                              dir);
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(missing.err, "runs the offline tool otaro-convert")) << missing.err;
  EXPECT_TRUE(absl::StrContains(missing.err, "//tools/convert:otaro-convert")) << missing.err;
}

}  // namespace
}  // namespace otaro
