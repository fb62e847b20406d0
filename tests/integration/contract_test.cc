// The API contract at its edges, over loopback against the real otaro_server
// on stories260K: memory figures in ModelInfo, requests
// that do not parse, text cut off mid-character in Generate and GenerateStream,
// and generation that fills the context.
#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/testing/shared_data.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"

namespace otaro {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

class ContractTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing::ServerProcess(
        testing::ScratchDir("contract"),
        {"--model", testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), "--set",
         "server.grpc_address=127.0.0.1:0", "--set", "server.metrics_address=", "--set", "server.http_address=", "--set",
         "engine.threads=1"});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_GT(server_->grpc_port(), 0); }

  static std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    return context;
  }
  static std::unique_ptr<otaro::v1::Inference::Stub> Stub() {
    return otaro::v1::Inference::NewStub(server_->channel());
  }

  // `request` through GenerateStream: the chunks' texts joined, and the last
  // chunk.
  static grpc::Status Stream(const otaro::v1::GenerateRequest& request, std::string* text,
                             otaro::v1::GenerateChunk* last) {
    auto context = Context();
    auto reader = Stub()->GenerateStream(context.get(), request);
    otaro::v1::GenerateChunk chunk;
    while (reader->Read(&chunk)) {
      *text += chunk.text();
      *last = chunk;
    }
    return reader->Finish();
  }

  // `bytes` sent as the request of `method` as they are (no protobuf).
  static grpc::Status RawCall(const std::string& method, const std::string& bytes) {
    grpc::GenericStub stub(server_->channel());
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    auto context = Context();
    std::promise<grpc::Status> done;
    stub.UnaryCall(context.get(), method, grpc::StubOptions(), &request, &response,
                   [&done](grpc::Status status) { done.set_value(std::move(status)); });
    return done.get_future().get();
  }

  static testing::ServerProcess* server_;
};

testing::ServerProcess* ContractTest::server_ = nullptr;

TEST_F(ContractTest, ModelInfoReportsKvCacheAndWorkspaceBytes) {
  otaro::v1::GenerateRequest request;
  request.set_text("Once upon a time");
  request.set_max_tokens(8);
  otaro::v1::GenerateResponse response;
  grpc::Status status = Stub()->Generate(Context().get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();

  otaro::v1::ModelInfo info;
  status = Stub()->GetModelInfo(Context().get(), otaro::v1::GetModelInfoRequest(), &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  // engine.kv_cache_mb defaults to 512 MiB, in whole blocks.
  EXPECT_GT(info.memory().kv_cache_bytes(), 500u << 20);
  EXPECT_LE(info.memory().kv_cache_bytes(), 512u << 20);
  // At least one step's activations: a prompt's rows of hidden_size floats.
  EXPECT_GE(info.memory().workspace_bytes(), 4u * info.hidden_size() * 4);
  EXPECT_LT(info.memory().workspace_bytes(), 64u << 20);
}

TEST_F(ContractTest, UnparsableRequestsAreInvalidArgument) {
  // GenerateRequest.text (field 1, length-delimited) holding 0xFF 0xFE: the
  // wire format is fine, the string is not UTF-8.
  const std::string bad_text("\x0a\x02\xff\xfe", 4);
  const std::string not_protobuf("\xff\xff\xff\xff\xff", 5);
  for (const std::string method : {"/otaro.v1.Inference/Generate",
                                   "/otaro.v1.Inference/GenerateStream",
                                   "/otaro.v1.Inference/Tokenize"}) {
    for (const std::string& bytes : {bad_text, not_protobuf}) {
      grpc::Status status = RawCall(method, bytes);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << method << ": " << status.error_code() << " '" << status.error_message() << "'";
      EXPECT_TRUE(absl::StrContains(status.error_message(),
                                    absl::StrCat("not a valid message for ", method)))
          << status.error_message();
    }
  }
  // The same bytes with valid UTF-8 are a good request.
  EXPECT_TRUE(RawCall("/otaro.v1.Inference/Tokenize", std::string("\x0a\x02hi", 4)).ok());
}

TEST_F(ContractTest, StreamAndUnaryGiveTheSameTextWhenACharacterIsCutOff) {
  // Near-uniform sampling picks byte tokens (half of stories260K's 512 are
  // <0xNN>), so some seeds end on an incomplete UTF-8 character.
  int cut = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    otaro::v1::GenerateRequest request;
    request.set_text("Once");
    request.set_max_tokens(3);
    request.set_stop_at_eos(false);
    request.mutable_sampling()->set_temperature(100.0f);
    request.mutable_sampling()->set_seed(seed);
    otaro::v1::GenerateResponse unary;
    grpc::Status status = Stub()->Generate(Context().get(), request, &unary);
    ASSERT_TRUE(status.ok()) << status.error_message();
    std::string streamed;
    otaro::v1::GenerateChunk last;
    status = Stream(request, &streamed, &last);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(streamed, unary.text()) << "seed " << seed;
    EXPECT_EQ(last.finish_reason(), unary.finish_reason()) << "seed " << seed;
    cut += absl::EndsWith(unary.text(), kReplacement);
  }
  EXPECT_GT(cut, 0) << "no seed cut a character: the test proves nothing";
}

TEST_F(ContractTest, UnsetMaxTokensRunsToAFullContext) {
  otaro::v1::ModelInfo info;
  grpc::Status status =
      Stub()->GetModelInfo(Context().get(), otaro::v1::GetModelInfoRequest(), &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_GT(info.context_length(), 40u);
  otaro::v1::GenerateRequest request;
  // 40 tokens short of the context; the server's default max_tokens is 256.
  for (uint32_t i = 0; i < info.context_length() - 40; ++i) {
    request.mutable_token_ids()->add_ids(i == 0 ? 1 : 300 + i % 50);
  }
  request.set_stop_at_eos(false);
  otaro::v1::GenerateResponse unary;
  status = Stub()->Generate(Context().get(), request, &unary);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(unary.usage().generated_tokens(), 40u);
  EXPECT_EQ(unary.finish_reason(), otaro::v1::FINISH_REASON_CONTEXT);
  std::string streamed;
  otaro::v1::GenerateChunk last;
  status = Stream(request, &streamed, &last);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(last.finish_reason(), otaro::v1::FINISH_REASON_CONTEXT);

  // An explicit max_tokens that ends at the context is max_tokens reached.
  request.set_max_tokens(40);
  status = Stub()->Generate(Context().get(), request, &unary);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(unary.usage().generated_tokens(), 40u);
  EXPECT_EQ(unary.finish_reason(), otaro::v1::FINISH_REASON_LENGTH);
}

}  // namespace
}  // namespace otaro
