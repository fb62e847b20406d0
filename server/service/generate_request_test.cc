// Every validation rule of the Generate API, on the real stories260K model
// (GGUF, with its SentencePiece tokenizer; resident down to E5M6).
#include "server/service/generate_request.h"

#include "absl/strings/match.h"
#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace otaro::server {
namespace {

class GenerateRequestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::LoadOptions options;
    options.resident_max_bits = 6;
    auto model = engine::LoadModel(
        otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), options);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
  }
  static void TearDownTestSuite() { delete model_; }

  absl::StatusOr<PreparedRequest> Prepare(const otaro::v1::GenerateRequest& request) {
    GenerateLimits limits;
    limits.default_mantissa_bits = 5;
    limits.default_max_tokens = 100;
    limits.max_tokens_cap = 300;
    return PrepareGenerateRequest(request, *model_, std::nullopt, limits, /*random_seed=*/77);
  }

  void ExpectInvalid(const otaro::v1::GenerateRequest& request, absl::string_view field) {
    auto prepared = Prepare(request);
    ASSERT_FALSE(prepared.ok()) << request.DebugString();
    EXPECT_EQ(prepared.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(prepared.status().message(), field))
        << prepared.status() << " should name " << field;
  }

  static otaro::v1::GenerateRequest Text(const std::string& text) {
    otaro::v1::GenerateRequest request;
    request.set_text(text);
    return request;
  }

  static engine::LlamaModel* model_;
};

engine::LlamaModel* GenerateRequestTest::model_ = nullptr;

TEST_F(GenerateRequestTest, DefaultsApply) {
  auto prepared = Prepare(Text("Once upon a time"));
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->decode_bits, 5);
  EXPECT_EQ(prepared->prefill_bits, 5);
  EXPECT_EQ(prepared->request.precision, 5);
  EXPECT_EQ(prepared->request.max_tokens, 100);
  EXPECT_EQ(prepared->seed, 77u);
  EXPECT_EQ(prepared->request.sampling.temperature, 0);
  EXPECT_EQ(prepared->request.prompt.front(), 1);  // BOS: the tokenizer adds it
}

TEST_F(GenerateRequestTest, ExplicitValuesAreKept) {
  otaro::v1::GenerateRequest request = Text("Lily");
  request.mutable_decode_precision()->set_mantissa_bits(3);
  request.mutable_prefill_precision()->set_mantissa_bits(6);
  request.set_max_tokens(300);
  request.mutable_sampling()->set_temperature(0.7f);
  request.mutable_sampling()->set_top_k(40);
  request.mutable_sampling()->set_top_p(0.9f);
  request.mutable_sampling()->set_seed(1234);
  request.add_stop(".");
  request.set_logprobs(true);
  request.set_stop_at_eos(false);
  auto prepared = Prepare(request);
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  EXPECT_EQ(prepared->request.precision, 3);
  EXPECT_EQ(prepared->request.prefill_precision, 6);
  EXPECT_EQ(prepared->request.max_tokens, 300);
  EXPECT_FLOAT_EQ(prepared->request.sampling.temperature, 0.7f);
  EXPECT_EQ(prepared->request.sampling.top_k, 40);
  EXPECT_EQ(prepared->seed, 1234u);
  EXPECT_EQ(prepared->request.stop, std::vector<std::string>{"."});
  EXPECT_TRUE(prepared->request.logprobs);
  EXPECT_TRUE(prepared->request.ignore_eos);
}

TEST_F(GenerateRequestTest, PrecisionMustBeInRangeAndResident) {
  otaro::v1::GenerateRequest request = Text("x");
  request.mutable_decode_precision()->set_mantissa_bits(9);
  ExpectInvalid(request, "decode_precision.mantissa_bits");
  request.mutable_decode_precision()->set_mantissa_bits(1);
  ExpectInvalid(request, "decode_precision.mantissa_bits");
  request.mutable_decode_precision()->set_mantissa_bits(7);  // above resident 6
  ExpectInvalid(request, "decode_precision.mantissa_bits");
  request.mutable_decode_precision()->set_mantissa_bits(4);
  request.mutable_prefill_precision()->set_mantissa_bits(8);
  ExpectInvalid(request, "prefill_precision.mantissa_bits");
}

TEST_F(GenerateRequestTest, PromptRules) {
  ExpectInvalid(Text(""), "text");
  ExpectInvalid(otaro::v1::GenerateRequest(), "prompt");
  otaro::v1::GenerateRequest ids;
  ids.mutable_token_ids();
  ExpectInvalid(ids, "token_ids");
  ids.mutable_token_ids()->add_ids(1);
  ids.mutable_token_ids()->add_ids(512);
  ExpectInvalid(ids, "token_ids.ids[1]");
  // More words than the model's context has tokens (the GGUF says 2048).
  std::string long_text;
  for (int64_t i = 0; i < model_->config.max_position + 10; ++i) long_text += " Lily";
  ExpectInvalid(Text(long_text), "prompt");
  // This model has no chat template otaro recognises.
  otaro::v1::GenerateRequest chat;
  chat.mutable_chat()->add_messages()->set_role("user");
  auto prepared = Prepare(chat);
  EXPECT_EQ(prepared.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(GenerateRequestTest, LimitsAndSamplingValues) {
  otaro::v1::GenerateRequest request = Text("x");
  request.set_max_tokens(301);
  ExpectInvalid(request, "max_tokens");
  request.set_max_tokens(10);
  request.mutable_sampling()->set_temperature(-1);
  ExpectInvalid(request, "sampling.temperature");
  request.mutable_sampling()->set_temperature(std::nanf(""));
  ExpectInvalid(request, "sampling.temperature");
  request.mutable_sampling()->set_temperature(1);
  request.mutable_sampling()->set_top_p(1.5f);
  ExpectInvalid(request, "sampling.top_p");
  request.mutable_sampling()->set_top_p(0.5f);
  for (int i = 0; i < 9; ++i) request.add_stop("s");
  ExpectInvalid(request, "stop");
  request.clear_stop();
  request.add_stop("");
  ExpectInvalid(request, "stop[0]");
  request.clear_stop();
  request.add_stop(std::string(257, 'a'));
  ExpectInvalid(request, "stop[0]");
}

TEST_F(GenerateRequestTest, DefaultMaxTokensOverTheContextLeftRunsToTheContext) {
  // " Lily" is one token: a prompt that leaves 40 tokens of context.
  std::string text;
  for (int64_t i = 0; i < model_->config.max_position - 41; ++i) text += " Lily";
  auto prepared = Prepare(Text(text));
  ASSERT_TRUE(prepared.ok()) << prepared.status();
  const int64_t left = model_->config.max_position - static_cast<int64_t>(prepared->request.prompt.size());
  ASSERT_GT(left, 0);
  ASSERT_LT(left, 100);  // so the default of 100 does not fit
  EXPECT_EQ(prepared->request.max_tokens, 0);  // until the context is full
}

}  // namespace
}  // namespace otaro::server
