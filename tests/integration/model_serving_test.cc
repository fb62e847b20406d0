// otaro_server with a real model (stories260K, GGUF) over loopback: model
// info, tokenization, readiness, model metrics, and start-up errors.
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/testing/shared_data.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"

namespace otaro {
namespace {

using testing::Subprocess;

std::unique_ptr<grpc::ClientContext> Context() {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  return context;
}

std::string StoriesGguf() {
  return testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}

class ModelServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing::ServerProcess(
        testing::ScratchDir("model_serving"),
        {"--model", StoriesGguf(), "--set", "server.grpc_address=127.0.0.1:0", "--set",
         "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0", "--set", "model.resident_max_bits=6"});
    ASSERT_GT(server_->grpc_port(), 0);
    dir_ = &server_->dir();
    grpc_port_ = server_->grpc_port();
    metrics_port_ = server_->metrics_port();
  }
  static void TearDownTestSuite() { delete server_; }

  std::unique_ptr<otaro::v1::Inference::Stub> Stub() {
    return otaro::v1::Inference::NewStub(server_->channel());
  }

  static testing::ServerProcess* server_;
  static const std::string* dir_;
  static int grpc_port_;
  static int metrics_port_;
};

testing::ServerProcess* ModelServingTest::server_ = nullptr;
const std::string* ModelServingTest::dir_ = nullptr;
int ModelServingTest::grpc_port_ = 0;
int ModelServingTest::metrics_port_ = 0;

TEST_F(ModelServingTest, ModelInfoDescribesTheLoadedModel) {
  otaro::v1::ModelInfo info;
  auto context = Context();
  grpc::Status status = Stub()->GetModelInfo(context.get(), {}, &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(info.architecture(), "llama");
  EXPECT_EQ(info.source(), StoriesGguf());
  EXPECT_EQ(info.parameter_count(), 260032u);
  EXPECT_EQ(info.num_layers(), 5u);
  EXPECT_EQ(info.hidden_size(), 64u);
  EXPECT_EQ(info.vocab_size(), 512u);
  EXPECT_EQ(info.group_size(), 64u);
  EXPECT_EQ(info.master_mantissa_bits(), 8u);
  EXPECT_EQ(info.resident_max_bits(), 6u);
  EXPECT_EQ(std::vector<uint32_t>(info.supported_mantissa_bits().begin(),
                                  info.supported_mantissa_bits().end()),
            (std::vector<uint32_t>{2, 3, 4, 5, 6}));
  EXPECT_EQ(info.default_mantissa_bits(), 6u);
  EXPECT_EQ(info.reconstruction(), otaro::v1::RECONSTRUCTION_MIDPOINT);
  EXPECT_EQ(info.model_version(), 1u);
  EXPECT_EQ(info.device(), "cpu");
  // engine.device auto says why it is the CPU.
  EXPECT_TRUE(absl::StrContains(info.device_reason(), "no CUDA inference backend"))
      << info.device_reason();
  EXPECT_GT(info.memory().weight_bytes(), 0u);
  EXPECT_GT(info.memory().dense_bytes(), 0u);
  ASSERT_EQ(info.weight_bytes_per_token().count(3), 1u);
  EXPECT_EQ(info.weight_bytes_per_token().count(7), 0u);  // not resident
  EXPECT_LT(info.weight_bytes_per_token().at(3), info.weight_bytes_per_token().at(6));
  EXPECT_EQ(info.memory().weight_bytes(), info.weight_bytes_per_token().at(6));
}

TEST_F(ModelServingTest, TokenizeAndDetokenizeRoundTrip) {
  // The reference continuation's tokens (REFERENCE_greedy_helper.json).
  const std::vector<uint32_t> reference = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298,
                                           315, 421, 395, 317, 426, 338, 401, 396, 267, 337,
                                           410, 408, 419, 292, 411, 322, 265, 282, 295, 433};
  otaro::v1::DetokenizeRequest detok;
  for (uint32_t id : reference) detok.add_token_ids(id);
  otaro::v1::DetokenizeResponse text;
  auto c1 = Context();
  ASSERT_TRUE(Stub()->Detokenize(c1.get(), detok, &text).ok());
  EXPECT_EQ(text.text(),
            "Once upon a time, there was a little girl named Lily. She loved to play outside in "
            "the park");

  otaro::v1::TokenizeRequest tok;
  tok.set_text(text.text());
  tok.set_add_special_tokens(false);
  otaro::v1::TokenizeResponse ids;
  auto c2 = Context();
  ASSERT_TRUE(Stub()->Tokenize(c2.get(), tok, &ids).ok());
  EXPECT_EQ(std::vector<uint32_t>(ids.token_ids().begin(), ids.token_ids().end()), reference);
  ASSERT_EQ(ids.pieces_size(), ids.token_ids_size());
  EXPECT_EQ(ids.pieces(0), "\u2581Once");

  // With special tokens the model's BOS (1) leads.
  tok.clear_add_special_tokens();
  auto c3 = Context();
  ASSERT_TRUE(Stub()->Tokenize(c3.get(), tok, &ids).ok());
  EXPECT_EQ(ids.token_ids(0), 1u);
}

TEST_F(ModelServingTest, DetokenizeRefusesIdsOutsideTheVocabulary) {
  otaro::v1::DetokenizeRequest detok;
  detok.add_token_ids(5);
  detok.add_token_ids(512);
  otaro::v1::DetokenizeResponse text;
  auto context = Context();
  grpc::Status status = Stub()->Detokenize(context.get(), detok, &text);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "token_ids[1] = 512")) << status.error_message();
}

TEST_F(ModelServingTest, ReadyAndHealthyWithModelMetrics) {
  auto health = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", grpc_port_), grpc::InsecureChannelCredentials()));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("otaro.v1.Inference");
  grpc::health::v1::HealthCheckResponse response;
  auto context = Context();
  ASSERT_TRUE(health->Check(context.get(), request, &response).ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  auto readyz = testing::HttpGet("127.0.0.1", metrics_port_, "/readyz");
  ASSERT_TRUE(readyz.ok());
  EXPECT_EQ(readyz->status, 200);

  auto metrics = testing::HttpGet("127.0.0.1", metrics_port_, "/metrics");
  ASSERT_TRUE(metrics.ok());
  EXPECT_TRUE(absl::StrContains(
      metrics->body,
      "otaro_model_info{version=\"1\",format=\"gguf\",device=\"cpu\",reconstruction=\"midpoint\"} 1"))
      << metrics->body;
  EXPECT_TRUE(absl::StrContains(metrics->body,
                                "otaro_model_weight_bytes_per_token{precision=\"E5M3\"}"));
  int exit_code = -1;
  std::string lint = testing::PromtoolCheckMetrics(metrics->body, *dir_, &exit_code);
  EXPECT_EQ(exit_code, 0) << lint;
}

TEST_F(ModelServingTest, CliInfoPrintsTheModel) {
  auto info = testing::Run({testing::RunfilePath("client/otaro"), "info", "--server",
                            absl::StrCat("127.0.0.1:", grpc_port_)},
                           *dir_);
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(absl::StrContains(info.out, "parameters       260032")) << info.out;
  EXPECT_TRUE(absl::StrContains(info.out, "E5M2, E5M3, E5M4, E5M5, E5M6 (default E5M6)"))
      << info.out;
}

TEST_F(ModelServingTest, CliGenerateStreamsTheStory) {
  auto result = testing::Run({testing::RunfilePath("client/otaro"), "generate", "--server",
                              absl::StrCat("127.0.0.1:", grpc_port_), "--bits", "E5M6",
                              "--prefill-bits", "6", "--max-tokens", "12", "Once", "upon", "a",
                              "time"},
                             *dir_);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_TRUE(absl::StartsWith(result.out, ", there was a little girl")) << result.out;
  EXPECT_TRUE(absl::StrContains(result.err, "E5M6 prefill, E5M6 decode")) << result.err;
  EXPECT_TRUE(absl::StrContains(result.err, "12 generated tokens")) << result.err;
}

TEST(ModelStartupTest, BadModelPathsAreClearStartupErrors) {
  std::string dir = testing::ScratchDir("bad_model");
  std::ofstream(dir + "/junk.bin") << "not a model";
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{"--model", dir + "/missing.gguf"}, "does not exist"},
           {{"--model", dir + "/junk.bin"}, "is not a model"},
           {{"--model", StoriesGguf(), "--set", "engine.device=cuda"}, "no CUDA inference backend"},
       }) {
    std::vector<std::string> argv = {testing::RunfilePath("server/otaro_server"), "--set",
                                     "server.grpc_address=127.0.0.1:0", "--set",
                                     "server.metrics_address=", "--set", "server.http_address="};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto result = testing::Run(argv, dir, absl::Seconds(60));
    EXPECT_EQ(result.exit_code, 1) << result.err;
    EXPECT_TRUE(absl::StrContains(result.err, c.message)) << result.err;
  }
}

}  // namespace
}  // namespace otaro
