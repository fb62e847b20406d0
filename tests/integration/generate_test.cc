// Generate and GenerateStream over loopback against the real otaro_server on
// the real stories260K model: concurrency at mixed precisions, cancellation,
// deadlines, queue limits and validation, as a user sees them.
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/testing/shared_data.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"

namespace otaro {
namespace {

using testing::Subprocess;

std::string Stories() {
  return testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}

// An otaro_server on `model` (default stories260K) with extra --set overrides.
class Server {
 public:
  explicit Server(const std::string& name, std::vector<std::string> sets = {},
                  const std::string& model = Stories()) {
    std::vector<std::string> args = {
        "--model", model, "--set", "server.grpc_address=127.0.0.1:0", "--set",
        "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0", "--set", "engine.threads=2"};
    for (const std::string& set : sets) {
      args.push_back("--set");
      args.push_back(set);
    }
    server_ = std::make_unique<testing::ServerProcess>(testing::ScratchDir(name), args);
  }

  std::unique_ptr<otaro::v1::Inference::Stub> Stub() const {
    return otaro::v1::Inference::NewStub(server_->channel());
  }

  std::string Metrics() const {
    auto response = testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
    return response.ok() ? response->body : "";
  }

  // The value of one sample line `series value`, or -1.
  double Sample(const std::string& series) const {
    // Sample lines start a line; "# HELP name ..." lines must not match.
    std::string body = "\n" + Metrics();
    size_t at = body.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(body.substr(at + series.size() + 2));
  }

  const std::string& dir() const { return server_->dir(); }
  Subprocess& process() { return server_->process(); }

 private:
  std::unique_ptr<testing::ServerProcess> server_;
};

std::unique_ptr<grpc::ClientContext> Context(double seconds = 60) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
  return context;
}

otaro::v1::GenerateRequest Request(const std::string& prompt, int bits, int max_tokens) {
  otaro::v1::GenerateRequest request;
  request.set_text(prompt);
  request.mutable_decode_precision()->set_mantissa_bits(bits);
  request.set_max_tokens(max_tokens);
  return request;
}

std::vector<uint32_t> Ids(const otaro::v1::GenerateResponse& response) {
  return {response.token_ids().begin(), response.token_ids().end()};
}

TEST(GenerateTest, UnaryGreedyContinuesTheStory) {
  Server server("unary");
  otaro::v1::GenerateResponse response;
  auto context = Context();
  otaro::v1::GenerateRequest request = Request("Once upon a time", 8, 24);
  request.set_logprobs(true);
  grpc::Status status = server.Stub()->Generate(context.get(), request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(absl::StartsWith(response.text(), ", there was a little girl named Lily"))
      << response.text();
  EXPECT_EQ(response.token_ids_size(), 24);
  EXPECT_EQ(response.logprobs_size(), 24);
  for (float lp : response.logprobs()) EXPECT_LE(lp, 0.0f);
  EXPECT_EQ(response.finish_reason(), otaro::v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(response.decode_precision().mantissa_bits(), 8u);
  EXPECT_EQ(response.prefill_precision().mantissa_bits(), 8u);
  EXPECT_EQ(response.model_version(), 1u);
  EXPECT_EQ(response.usage().generated_tokens(), 24u);
  EXPECT_GT(response.usage().prompt_tokens(), 0u);
  EXPECT_GT(response.timings().total_seconds(), 0);
  EXPECT_LE(response.timings().time_to_first_token_seconds(), response.timings().total_seconds());
}

TEST(GenerateTest, ConcurrentMixedPrecisionsGiveTheSameTokensAsAlone) {
  Server server("concurrent");
  struct Case {
    std::string prompt;
    int bits;
    int prefill_bits;
    bool sampled;
  };
  const std::vector<Case> cases = {
      {"Once upon a time", 8, 0, false}, {"Lily and Ben", 3, 0, false},
      {"The dog", 5, 8, false},           {"One day", 4, 0, true},
      {"Once upon a time", 2, 6, true},   {"The sun was", 6, 0, false},
  };
  auto make = [&](const Case& c) {
    otaro::v1::GenerateRequest request = Request(c.prompt, c.bits, 32);
    if (c.prefill_bits) request.mutable_prefill_precision()->set_mantissa_bits(c.prefill_bits);
    if (c.sampled) {
      request.mutable_sampling()->set_temperature(0.9f);
      request.mutable_sampling()->set_top_k(40);
      request.mutable_sampling()->set_seed(4242);
    }
    return request;
  };
  // One at a time.
  std::vector<std::vector<uint32_t>> alone;
  for (const Case& c : cases) {
    otaro::v1::GenerateResponse response;
    auto context = Context();
    ASSERT_TRUE(server.Stub()->Generate(context.get(), make(c), &response).ok());
    alone.push_back(Ids(response));
  }
  // All at once, twice over, so they share batch steps.
  std::vector<std::vector<uint32_t>> together(cases.size() * 2);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < together.size(); ++i) {
    threads.emplace_back([&, i] {
      otaro::v1::GenerateResponse response;
      auto context = Context();
      grpc::Status status =
          server.Stub()->Generate(context.get(), make(cases[i % cases.size()]), &response);
      EXPECT_TRUE(status.ok()) << status.error_message();
      together[i] = Ids(response);
    });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < together.size(); ++i) {
    EXPECT_EQ(together[i], alone[i % cases.size()]) << "request " << i;
  }
  // Different precisions really did run: E5M2 and E5M8 continuations differ.
  EXPECT_NE(alone[0], alone[4]);
}

TEST(GenerateTest, StreamDeliversTokensThenASummary) {
  Server server("stream");
  auto context = Context();
  otaro::v1::GenerateRequest request = Request("Once upon a time", 4, 20);
  request.mutable_prefill_precision()->set_mantissa_bits(8);
  auto stream = server.Stub()->GenerateStream(context.get(), request);
  otaro::v1::GenerateChunk chunk;
  std::string text;
  int tokens = 0, chunks = 0;
  otaro::v1::GenerateChunk last;
  while (stream->Read(&chunk)) {
    ++chunks;
    text += chunk.text();
    tokens += chunk.token_ids_size();
    if (chunk.finish_reason() != otaro::v1::FINISH_REASON_UNSPECIFIED) last = chunk;
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(tokens, 20);
  EXPECT_GE(chunks, 2);
  EXPECT_EQ(last.finish_reason(), otaro::v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(last.decode_precision().mantissa_bits(), 4u);
  EXPECT_EQ(last.prefill_precision().mantissa_bits(), 8u);
  EXPECT_EQ(last.usage().generated_tokens(), 20u);
  // The unary call at the same settings says the same thing.
  otaro::v1::GenerateResponse unary;
  auto context2 = Context();
  ASSERT_TRUE(server.Stub()->Generate(context2.get(), request, &unary).ok());
  EXPECT_EQ(unary.text(), text);
}

TEST(GenerateTest, StopStringEndsTheText) {
  Server server("stop");
  otaro::v1::GenerateRequest request = Request("Once upon a time", 8, 60);
  request.add_stop("Lily");
  otaro::v1::GenerateResponse response;
  auto context = Context();
  ASSERT_TRUE(server.Stub()->Generate(context.get(), request, &response).ok());
  EXPECT_EQ(response.finish_reason(), otaro::v1::FINISH_REASON_STOP);
  EXPECT_EQ(response.text(), ", there was a little girl named ");
}

TEST(GenerateTest, CancellingAStreamFreesItsCache) {
  // A long generation, so that the cancel lands mid-stream.
  Server server("cancel");
  auto context = Context();
  otaro::v1::GenerateRequest request = Request("Once upon a time", 8, 1500);
  request.set_stop_at_eos(false);
  auto stream = server.Stub()->GenerateStream(context.get(), request);
  otaro::v1::GenerateChunk chunk;
  int tokens = 0;
  while (tokens < 5 && stream->Read(&chunk)) tokens += chunk.token_ids_size();
  ASSERT_GE(tokens, 5);
  EXPECT_GT(server.Sample("otaro_kv_cache_usage_ratio"), 0);
  context->TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The server notices within a step and frees the blocks.
  double usage = 1, running = 1;
  for (int i = 0; i < 200 && (usage != 0 || running != 0); ++i) {
    absl::SleepFor(absl::Milliseconds(25));
    usage = server.Sample("otaro_kv_cache_usage_ratio");
    running = server.Sample("otaro_scheduler_requests{state=\"running\"}");
  }
  EXPECT_EQ(usage, 0);
  EXPECT_EQ(running, 0);
  EXPECT_TRUE(absl::StrContains(
      server.Metrics(),
      "otaro_requests_total{method=\"GenerateStream\",protocol=\"grpc\",precision=\"E5M8\",code=\"CANCELLED\"} 1"));
}

TEST(GenerateTest, DeadlineExpiryIsDeadlineExceeded) {
  Server server("deadline");
  otaro::v1::GenerateRequest request = Request("Once upon a time", 8, 1500);
  request.set_stop_at_eos(false);
  otaro::v1::GenerateResponse response;
  auto context = Context(/*seconds=*/0.3);
  grpc::Status status = server.Stub()->Generate(context.get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  // And the server is fine afterwards.
  auto context2 = Context();
  EXPECT_TRUE(server.Stub()->Generate(context2.get(), Request("Lily", 8, 4), &response).ok());
}

TEST(GenerateTest, FullQueueIsResourceExhausted) {
  // One running sequence and one waiting: a third concurrent request is refused.
  Server server("queue", {"engine.max_batch_sequences=1", "generation.max_waiting_requests=1"});
  std::atomic<int> ok{0}, exhausted{0}, other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      // stories260K writes ~2500 tokens/s here: long requests, sent together,
      // so the first is still running when the others arrive.
      absl::SleepFor(absl::Milliseconds(5 * i));
      otaro::v1::GenerateRequest request = Request("Once upon a time", 8, 1800);
      request.set_stop_at_eos(false);
      otaro::v1::GenerateResponse response;
      auto context = Context();
      grpc::Status status = server.Stub()->Generate(context.get(), request, &response);
      if (status.ok()) {
        ++ok;
      } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
        ++exhausted;
        EXPECT_TRUE(absl::StrContains(status.error_message(), "queue")) << status.error_message();
      } else {
        ++other;
        ADD_FAILURE() << status.error_message();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(ok.load(), 2);
  EXPECT_GE(exhausted.load(), 1);
  EXPECT_EQ(other.load(), 0);
}

TEST(GenerateTest, ValidationErrorsNameTheField) {
  Server server("validation");
  struct Case {
    otaro::v1::GenerateRequest request;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({Request("x", 9, 4), "decode_precision.mantissa_bits"});
  cases.push_back({Request("", 8, 4), "text"});
  cases.push_back({Request("x", 8, 5000), "max_tokens"});
  Case temperature{Request("x", 8, 4), "sampling.temperature"};
  temperature.request.mutable_sampling()->set_temperature(-0.5f);
  cases.push_back(temperature);
  Case top_p{Request("x", 8, 4), "sampling.top_p"};
  top_p.request.mutable_sampling()->set_top_p(2);
  cases.push_back(top_p);
  Case ids{{}, "token_ids.ids[0]"};
  ids.request.mutable_token_ids()->add_ids(100000);
  cases.push_back(ids);
  for (const Case& c : cases) {
    otaro::v1::GenerateResponse response;
    auto context = Context();
    grpc::Status status = server.Stub()->Generate(context.get(), c.request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_TRUE(absl::StartsWith(status.error_message(), c.field))
        << status.error_message() << " should name " << c.field;
  }
  // The metrics lint-clean with every series in use.
  int exit_code = -1;
  std::string lint = testing::PromtoolCheckMetrics(server.Metrics(), server.dir(), &exit_code);
  EXPECT_EQ(exit_code, 0) << lint;
}

TEST(GenerateTest, SigtermLetsARunningGenerationFinish) {
  Server server("drain", {"server.shutdown_timeout_seconds=60"});
  otaro::v1::GenerateResponse response;
  grpc::Status status;
  std::thread call([&] {
    auto context = Context();
    otaro::v1::GenerateRequest request = Request("Once upon a time", 8, 200);
    request.set_stop_at_eos(false);
    status = server.Stub()->Generate(context.get(), request, &response);
  });
  absl::SleepFor(absl::Milliseconds(150));
  server.process().Signal(SIGTERM);
  call.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.token_ids_size(), 200);
  auto code = server.process().Wait(absl::Seconds(30));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << server.process().Stderr();
}

// The quick start's model answering a chat through its own template.
TEST(GenerateTest, DefaultModelAnswersAChat) {
  const char* model = std::getenv("OTARO_DEFAULT_MODEL");
  ASSERT_NE(model, nullptr) << "OTARO_DEFAULT_MODEL is not set: run tools/test.sh";
  Server server("chat", {}, model);
  otaro::v1::GenerateRequest request;
  auto* user = request.mutable_chat()->add_messages();
  user->set_role("user");
  user->set_content("Name three colors.");
  request.mutable_decode_precision()->set_mantissa_bits(8);
  request.set_max_tokens(24);
  otaro::v1::GenerateResponse e5m8, again;
  // Each call gets its own deadline, started when it is made (a sanitizer
  // build runs this model many times slower).
  auto c1 = Context(300);
  grpc::Status status = server.Stub()->Generate(c1.get(), request, &e5m8);
  ASSERT_TRUE(status.ok()) << status.error_message();
  auto c2 = Context(300);
  ASSERT_TRUE(server.Stub()->Generate(c2.get(), request, &again).ok());
  EXPECT_EQ(e5m8.text(), again.text());  // greedy: deterministic
  EXPECT_GE(e5m8.token_ids_size(), 3);
  // The template was applied: the prompt is longer than the user text alone,
  // and the answer does not echo the chat markup.
  EXPECT_GT(e5m8.usage().prompt_tokens(), 10u);
  EXPECT_FALSE(absl::StrContains(e5m8.text(), "<|im_start|>")) << e5m8.text();
  // Lower precision still answers in words.
  request.mutable_decode_precision()->set_mantissa_bits(4);
  otaro::v1::GenerateResponse e5m4;
  auto c3 = Context(300);
  ASSERT_TRUE(server.Stub()->Generate(c3.get(), request, &e5m4).ok());
  EXPECT_GE(e5m4.token_ids_size(), 3);
  std::printf("E5M8: %s\nE5M4: %s\n", e5m8.text().c_str(), e5m4.text().c_str());
}

}  // namespace
}  // namespace otaro
