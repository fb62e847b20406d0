// openai_api: request bodies as the official client sends them -> otaro.v1,
// every refusal names its parameter, and responses have OpenAI's shapes. The
// end-to-end test with the official `openai` package is
// tests/integration/openai_client_test.py.
#include "server/openai/openai_api.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::server::openai {
namespace {

using ::nlohmann::json;
using ::testing::HasSubstr;

CompletionRequest ParseOk(Endpoint endpoint, const json& body) {
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(endpoint, body.dump());
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : CompletionRequest{};
}

// The param an error names, as the client sees it.
std::string ParamOf(Endpoint endpoint, const std::string& body) {
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(endpoint, body);
  EXPECT_FALSE(r.ok()) << body;
  if (r.ok()) return "<accepted>";
  ApiError e = ErrorFromStatus(r.status(), endpoint);
  EXPECT_EQ(e.http_status, 400) << body;
  EXPECT_EQ(e.type, "invalid_request_error");
  return e.param;
}

TEST(OpenAiApiTest, ChatRequestAsTheOfficialClientSendsIt) {
  CompletionRequest r = ParseOk(
      Endpoint::kChatCompletions,
      {{"model", "smollm2"},
       {"messages",
        {{{"role", "developer"}, {"content", "Be brief."}},
         {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi "}},
                                         {{"type", "text"}, {"text", "there"}}}}}}},
       {"max_completion_tokens", 12},
       {"temperature", 0},
       {"seed", 7},
       {"stop", "\n"},
       {"stream", true},
       {"stream_options", {{"include_usage", true}}},
       {"precision", "E5M3"},
       {"prefill_precision", 6},
       {"n", 1},
       {"user", "ignored"}});
  EXPECT_EQ(r.model, "smollm2");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  const auto& g = r.generate;
  ASSERT_TRUE(g.has_chat());
  ASSERT_EQ(g.chat().messages_size(), 2);
  EXPECT_EQ(g.chat().messages(0).role(), "system");
  EXPECT_EQ(g.chat().messages(1).content(), "Hi there");
  EXPECT_EQ(g.max_tokens(), 12u);
  EXPECT_EQ(g.sampling().temperature(), 0.0f);
  EXPECT_EQ(g.sampling().seed(), 7u);
  ASSERT_EQ(g.stop_size(), 1);
  EXPECT_EQ(g.stop(0), "\n");
  EXPECT_EQ(g.decode_precision().mantissa_bits(), 3u);
  EXPECT_EQ(g.prefill_precision().mantissa_bits(), 6u);
}

TEST(OpenAiApiTest, OpenAiDefaults) {
  CompletionRequest c = ParseOk(Endpoint::kCompletions, {{"prompt", "Once"}});
  EXPECT_EQ(c.generate.text(), "Once");
  EXPECT_EQ(c.generate.max_tokens(), 16u);  // the legacy endpoint's default
  EXPECT_EQ(c.generate.sampling().temperature(), 1.0f);
  EXPECT_FALSE(c.generate.sampling().has_seed());
  EXPECT_FALSE(c.generate.has_decode_precision());  // the server's default
  CompletionRequest chat =
      ParseOk(Endpoint::kChatCompletions, {{"messages", {{{"role", "user"}, {"content", "x"}}}}});
  EXPECT_EQ(chat.generate.max_tokens(), 0u);  // generation.default_max_tokens
  EXPECT_FALSE(chat.stream);
}

TEST(OpenAiApiTest, PromptForms) {
  EXPECT_EQ(ParseOk(Endpoint::kCompletions, {{"prompt", {"one"}}}).generate.text(), "one");
  auto ids = ParseOk(Endpoint::kCompletions, {{"prompt", {1, 2, 3}}}).generate.token_ids();
  EXPECT_EQ(ids.ids_size(), 3);
  auto nested = ParseOk(Endpoint::kCompletions, {{"prompt", {{5, 6}}}}).generate.token_ids();
  EXPECT_EQ(nested.ids_size(), 2);
  EXPECT_EQ(ParamOf(Endpoint::kCompletions, R"({"prompt": ["a", "b"]})"), "prompt");
  EXPECT_EQ(ParamOf(Endpoint::kCompletions, R"({"prompt": [1, -2]})"), "prompt");
  EXPECT_EQ(ParamOf(Endpoint::kCompletions, R"({"prompt": {"x": 1}})"), "prompt");
  EXPECT_EQ(ParamOf(Endpoint::kCompletions, R"({})"), "prompt");
}

TEST(OpenAiApiTest, PrecisionNotations) {
  for (const json& v : {json("E5M4"), json("e5m4"), json("4"), json(4)}) {
    absl::StatusOr<uint32_t> bits = ParsePrecision(v, "precision");
    ASSERT_TRUE(bits.ok()) << v;
    EXPECT_EQ(*bits, 4u);
  }
  for (const json& v : {json("E4M3"), json("fp16"), json(""), json(-1), json(4.5), json(nullptr)}) {
    EXPECT_FALSE(ParsePrecision(v, "precision").ok()) << v;
  }
}

TEST(OpenAiApiTest, EveryRefusalNamesItsParameter) {
  const Endpoint chat = Endpoint::kChatCompletions;
  const std::string msgs = R"("messages": [{"role": "user", "content": "x"}])";
  auto with = [&](const std::string& extra) { return "{" + msgs + ", " + extra + "}"; };
  EXPECT_EQ(ParamOf(chat, with(R"("n": 2)")), "n");
  EXPECT_EQ(ParamOf(chat, with(R"("top_logprobs": 3)")), "top_logprobs");
  EXPECT_EQ(ParamOf(chat, with(R"("presence_penalty": 0.5)")), "presence_penalty");
  EXPECT_EQ(ParamOf(chat, with(R"("logit_bias": {"1": 5})")), "logit_bias");
  EXPECT_EQ(ParamOf(chat, with(R"("tools": [{"type": "function"}])")), "tools");
  EXPECT_EQ(ParamOf(chat, with(R"("response_format": {"type": "json_object"})")),
            "response_format");
  EXPECT_EQ(ParamOf(chat, with(R"("temperature": 3)")), "temperature");
  EXPECT_EQ(ParamOf(chat, with(R"("temperature": "hot")")), "temperature");
  EXPECT_EQ(ParamOf(chat, with(R"("top_p": 1.5)")), "top_p");
  EXPECT_EQ(ParamOf(chat, with(R"("max_tokens": 0)")), "max_tokens");
  EXPECT_EQ(ParamOf(chat, with(R"("max_completion_tokens": -1)")), "max_completion_tokens");
  EXPECT_EQ(ParamOf(chat, with(R"("seed": -1)")), "seed");
  EXPECT_EQ(ParamOf(chat, with(R"("stop": [1])")), "stop");
  EXPECT_EQ(ParamOf(chat, with(R"("stream": "yes")")), "stream");
  EXPECT_EQ(ParamOf(chat, with(R"("stream_options": {"include_usage": true})")),
            "stream_options");
  EXPECT_EQ(ParamOf(chat, with(R"("precision": "E4M3")")), "precision");
  EXPECT_EQ(ParamOf(chat, with(R"("prefill_precision": true)")), "prefill_precision");
  EXPECT_EQ(ParamOf(chat, with(R"("model": 5)")), "model");
  EXPECT_EQ(ParamOf(chat, R"({"messages": []})"), "messages");
  EXPECT_EQ(ParamOf(chat, R"({"messages": [{"role": "tool", "content": "x"}]})"),
            "messages[0].role");
  EXPECT_EQ(ParamOf(chat, R"({"messages": [{"role": "user"}]})"), "messages[0].content");
  EXPECT_EQ(ParamOf(chat, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})"),
            "messages[0].content");
  EXPECT_EQ(ParamOf(Endpoint::kCompletions, R"({"prompt": "x", "logprobs": 2})"), "logprobs");
  // Neutral values of unsupported parameters are what clients send by default.
  ParseOk(chat, json::parse(with(R"("n": 1, "presence_penalty": 0, "frequency_penalty": 0.0,
                                   "logit_bias": {}, "tools": [], "top_logprobs": 0,
                                   "response_format": {"type": "text"})")));
}

TEST(OpenAiApiTest, BodiesThatAreNotObjects) {
  for (const char* body : {"", "{", "[1]", "null", "\"x\"", "{\"prompt\": \"x\",}"}) {
    absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(Endpoint::kCompletions, body);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(ErrorFromStatus(r.status(), Endpoint::kCompletions).http_status, 400);
  }
}

TEST(OpenAiApiTest, ServiceErrorsMapToHttpStatusAndParameter) {
  struct Case {
    absl::Status status;
    int http;
    const char* type;
    const char* param;
  };
  const Case cases[] = {
      {absl::InvalidArgumentError("decode_precision.mantissa_bits: 9 is above ..."), 400,
       "invalid_request_error", "precision"},
      {absl::InvalidArgumentError("sampling.top_p: must be in [0, 1]"), 400,
       "invalid_request_error", "top_p"},
      {absl::InvalidArgumentError("chat.messages: no messages"), 400, "invalid_request_error",
       "messages"},
      {absl::InvalidArgumentError("stop[1]: must be 1..256 bytes"), 400, "invalid_request_error",
       "stop"},
      {absl::FailedPreconditionError("chat: the served model has no chat template"), 400,
       "invalid_request_error", "messages"},
      {absl::UnauthenticatedError("missing token"), 401, "authentication_error", ""},
      {absl::PermissionDeniedError("role"), 403, "permission_error", ""},
      {absl::ResourceExhaustedError("queue full"), 429, "rate_limit_error", ""},
      {absl::UnavailableError("the server is shutting down"), 503, "server_error", ""},
      {absl::DeadlineExceededError("late"), 504, "server_error", ""},
      {absl::InternalError("boom"), 500, "server_error", ""},
  };
  for (const Case& c : cases) {
    ApiError e = ErrorFromStatus(c.status, Endpoint::kChatCompletions);
    EXPECT_EQ(e.http_status, c.http) << c.status;
    EXPECT_EQ(e.type, c.type) << c.status;
    EXPECT_EQ(e.param, c.param) << c.status;
    EXPECT_EQ(e.message, c.status.message());
    json j = e.ToJson();
    EXPECT_TRUE(j["error"].contains("code"));
    EXPECT_EQ(j["error"]["param"].is_null(), std::string(c.param).empty());
  }
  EXPECT_EQ(ErrorFromStatus(absl::InvalidArgumentError("text: the prompt is empty"),
                            Endpoint::kCompletions)
                .param,
            "prompt");
}

otaro::v1::GenerateResponse Response() {
  otaro::v1::GenerateResponse r;
  r.set_text("Paris.");
  r.add_token_ids(10);
  r.add_token_ids(11);
  r.add_logprobs(-0.5f);
  r.add_logprobs(-1.25f);
  r.set_finish_reason(otaro::v1::FINISH_REASON_EOS);
  r.mutable_decode_precision()->set_mantissa_bits(3);
  r.mutable_prefill_precision()->set_mantissa_bits(8);
  r.set_model_version(2);
  r.mutable_usage()->set_prompt_tokens(9);
  r.mutable_usage()->set_generated_tokens(2);
  r.set_seed(42);
  return r;
}

TEST(OpenAiApiTest, ChatResponseShape) {
  CompletionRequest req = ParseOk(Endpoint::kChatCompletions,
                                  {{"messages", {{{"role", "user"}, {"content", "x"}}}},
                                   {"logprobs", true}});
  ResponseHeader h{"chatcmpl-1", 1700000000, "smollm2"};
  json j = CompletionResponse(req, h, Response(), {"Par", "is."});
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "smollm2");
  EXPECT_EQ(j["system_fingerprint"], "otaro-v2-E5M3");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Paris.");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][0]["logprobs"]["content"][1]["token"], "is.");
  EXPECT_EQ(j["choices"][0]["logprobs"]["content"][1]["logprob"], -1.25);
  EXPECT_EQ(j["usage"]["total_tokens"], 11);
  EXPECT_EQ(j["otaro"]["precision"], "E5M3");
  EXPECT_EQ(j["otaro"]["prefill_precision"], "E5M8");
  EXPECT_EQ(j["otaro"]["model_version"], 2);
  EXPECT_EQ(j["otaro"]["seed"], 42);
}

TEST(OpenAiApiTest, CompletionResponseAndStreamShapes) {
  CompletionRequest req =
      ParseOk(Endpoint::kCompletions, {{"prompt", "x"}, {"logprobs", 0}, {"stream", true}});
  ResponseHeader h{"cmpl-1", 1, "m"};
  json j = CompletionResponse(req, h, Response(), {"Par", "is."});
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "Paris.");
  EXPECT_EQ(j["choices"][0]["logprobs"]["text_offset"][1], 3);

  otaro::v1::GenerateChunk delta;
  delta.set_text("Par");
  json d = StreamChunk(req, h, delta, {});
  EXPECT_EQ(d["choices"][0]["text"], "Par");
  EXPECT_TRUE(d["choices"][0]["finish_reason"].is_null());

  otaro::v1::GenerateChunk last;
  last.set_finish_reason(otaro::v1::FINISH_REASON_LENGTH);
  last.mutable_usage()->set_prompt_tokens(3);
  last.mutable_usage()->set_generated_tokens(4);
  EXPECT_EQ(FinalChunk(req, h, last)["choices"][0]["finish_reason"], "length");
  json u = UsageChunk(req, h, last);
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["total_tokens"], 7);

  CompletionRequest chat = ParseOk(Endpoint::kChatCompletions,
                                   {{"messages", {{{"role", "user"}, {"content", "x"}}}}});
  EXPECT_EQ(FirstChatChunk(h)["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(StreamChunk(chat, h, delta, {})["choices"][0]["delta"]["content"], "Par");
  EXPECT_EQ(FinalChunk(chat, h, last)["object"], "chat.completion.chunk");
}

TEST(OpenAiApiTest, ResponseIdsAreFreshAndPrefixed) {
  std::string a = NewResponseId(Endpoint::kChatCompletions);
  std::string b = NewResponseId(Endpoint::kChatCompletions);
  EXPECT_THAT(a, HasSubstr("chatcmpl-"));
  EXPECT_NE(a, b);
  EXPECT_EQ(NewResponseId(Endpoint::kCompletions).rfind("cmpl-", 0), 0u);
}

}  // namespace
}  // namespace otaro::server::openai
