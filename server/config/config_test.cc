#include "server/config/config.h"

#include "gtest/gtest.h"

namespace otaro::server {
namespace {

TEST(ConfigTest, EmptyTextGivesDefaults) {
  auto config = ParseConfig("", "test");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.grpc_address, "127.0.0.1:50051");
  EXPECT_EQ(config->model.resident_max_bits, 8);
}

TEST(ConfigTest, ParsesEverySection) {
  auto config = ParseConfig(R"(
server:
  grpc_address: "0.0.0.0:6000"
  metrics_address: ""
  shutdown_timeout_seconds: 2.5
auth:
  token_file: /etc/otaro/tokens
logging:
  level: debug
model:
  path: /models/x.sefp
  resident_max_bits: 5
engine:
  device: cpu
  threads: 3
generation:
  default_mantissa_bits: 4
)", "test");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.grpc_address, "0.0.0.0:6000");
  EXPECT_EQ(config->server.metrics_address, "");
  EXPECT_DOUBLE_EQ(config->server.shutdown_timeout_seconds, 2.5);
  EXPECT_EQ(config->logging.level, "debug");
  EXPECT_EQ(config->model.path, "/models/x.sefp");
  EXPECT_EQ(config->model.resident_max_bits, 5);
  EXPECT_EQ(config->model.lm_head_precision, "E5M8");
  EXPECT_EQ(config->engine.isa, "auto");
  EXPECT_EQ(config->engine.device, "cpu");
  EXPECT_EQ(config->engine.threads, 3);
  EXPECT_EQ(config->generation.default_mantissa_bits, 4);
}

void ExpectErrorMentions(absl::string_view yaml, std::vector<std::string> overrides,
                         absl::string_view needle) {
  auto config = ParseConfig(yaml, "cfg.yaml", overrides);
  ASSERT_FALSE(config.ok()) << "accepted: " << yaml;
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(config.status().message().find(needle), std::string::npos)
      << config.status().message() << " should mention " << needle;
}

TEST(ConfigTest, UnknownKeysNameTheKey) {
  ExpectErrorMentions("server:\n  grpc_adress: x:1\n", {}, "server.grpc_adress");
  ExpectErrorMentions("srever:\n  grpc_address: x:1\n", {}, "'srever'");
  ExpectErrorMentions("", {"model.bits=3"}, "model.bits");
}

TEST(ConfigTest, BadValuesNameTheKey) {
  ExpectErrorMentions("model:\n  resident_max_bits: 9\n", {}, "model.resident_max_bits");
  ExpectErrorMentions("model:\n  resident_max_bits: four\n", {}, "model.resident_max_bits");
  ExpectErrorMentions("engine:\n  device: tpu\n", {}, "engine.device");
  ExpectErrorMentions("server:\n  grpc_address: localhost\n", {}, "server.grpc_address");
  ExpectErrorMentions("server:\n  grpc_address: h:70000\n", {}, "server.grpc_address");
  ExpectErrorMentions("server:\n  shutdown_timeout_seconds: -1\n", {},
                      "server.shutdown_timeout_seconds");
  ExpectErrorMentions("logging:\n  level: loud\n", {}, "logging.level");
  ExpectErrorMentions("model:\n  lm_head_precision: bf16\n", {}, "model.lm_head_precision");
  ExpectErrorMentions("engine:\n  isa: sse9\n", {}, "engine.isa");
  // Keys this version no longer has are named, not ignored.
  ExpectErrorMentions("model:\n  quantize_lm_head: true\n", {}, "model.quantize_lm_head");
  ExpectErrorMentions("engine:\n  batch_invariant: false\n", {}, "engine.batch_invariant");
  ExpectErrorMentions("server:\n  grpc_address: [1, 2]\n", {}, "server.grpc_address");
}

TEST(ConfigTest, StructuralErrors) {
  ExpectErrorMentions("- a\n- b\n", {}, "top level");
  ExpectErrorMentions("server: 3\n", {}, "'server' must be a map");
  ExpectErrorMentions("server: {grpc_address: \"a:1\"\n", {}, "not valid YAML");
  // Complex keys (found by tools/fuzz/run_all.sh: they used to throw).
  ExpectErrorMentions("? [a, b]\n: 1\n", {}, "section name must be a string");
  ExpectErrorMentions("server:\n  ? {a: 1}\n  : 2\n", {}, "key in section 'server' must be a string");
}

TEST(ConfigTest, CrossKeyRules) {
  ExpectErrorMentions("model:\n  resident_max_bits: 4\ngeneration:\n  default_mantissa_bits: 6\n",
                      {}, "generation.default_mantissa_bits");
  ExpectErrorMentions("generation:\n  default_mantissa_bits: 1\n", {},
                      "generation.default_mantissa_bits");
  ExpectErrorMentions("generation:\n  default_max_tokens: 100\n  max_tokens_cap: 10\n", {},
                      "generation.default_max_tokens");
}

TEST(ConfigTest, TlsFilesGoTogether) {
  ExpectErrorMentions("tls:\n  cert_file: a.pem\n", {}, "must be set together");
  ExpectErrorMentions("", {"tls.key_file=a.key"}, "must be set together");
  ExpectErrorMentions("tls:\n  client_ca_file: ca.pem\n", {}, "tls.client_ca_file");
  auto config = ParseConfig("auth:\n  token_file: t.txt\ntls:\n  cert_file: a.pem\n"
                            "  key_file: a.key\n  client_ca_file: ca.pem\n",
                            "t");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->auth.token_file, "t.txt");
  EXPECT_EQ(config->tls.cert_file, "a.pem");
  EXPECT_EQ(config->tls.key_file, "a.key");
  EXPECT_EQ(config->tls.client_ca_file, "ca.pem");
}

TEST(ConfigTest, WithoutTokenFileOnlyLoopbackAddresses) {
  ExpectErrorMentions("server:\n  grpc_address: \"0.0.0.0:0\"\n", {},
                      "server.grpc_address 0.0.0.0:0 is not a loopback address, and without "
                      "auth.token_file");
  EXPECT_TRUE(ParseConfig("server:\n  grpc_address: \"0.0.0.0:0\"\nauth:\n  token_file: t\n",
                          "t")
                  .ok());
  for (const char* address : {"127.0.0.1:50051", "127.1.2.3:0", "[::1]:50051", "localhost:80"}) {
    EXPECT_TRUE(IsLoopbackAddress(address)) << address;
  }
  for (const char* address : {"0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051", ":50051",
                              "example.com:443", "128.0.0.1:1", "[::2]:1", "127.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackAddress(address)) << address;
  }
}

TEST(ConfigTest, SameAddressTwiceIsAnErrorUnlessPortZero) {
  ExpectErrorMentions("server:\n  grpc_address: \"127.0.0.1:7000\"\n  metrics_address: "
                      "\"127.0.0.1:7000\"\n",
                      {}, "same address");
  EXPECT_TRUE(ParseConfig("server:\n  grpc_address: \"127.0.0.1:0\"\n  metrics_address: "
                          "\"127.0.0.1:0\"\n",
                          "t")
                  .ok());
}

TEST(ConfigTest, TheOpenAiListener) {
  // Same rules as the gRPC listener: loopback without tokens, no shared port.
  ExpectErrorMentions("server:\n  http_address: \"0.0.0.0:8000\"\n", {},
                      "server.http_address 0.0.0.0:8000 is not a loopback address");
  ExpectErrorMentions("server:\n  grpc_address: \"127.0.0.1:7000\"\n  http_address: "
                      "\"127.0.0.1:7000\"\n",
                      {}, "'server.grpc_address' and 'server.http_address' are the same address");
  ExpectErrorMentions("", {"server.http_address=127.0.0.1:9464"},
                      "'server.metrics_address' and 'server.http_address'");
  // With tls.* set it speaks HTTPS, so it may face the network like gRPC.
  const std::string tls = "auth:\n  token_file: t\ntls:\n  cert_file: a.pem\n  key_file: a.key\n";
  auto open = ParseConfig(tls + "server:\n  http_address: \"0.0.0.0:8000\"\n", "t");
  ASSERT_TRUE(open.ok()) << open.status();
  EXPECT_EQ(open->server.http_address, "0.0.0.0:8000");
  EXPECT_TRUE(ParseConfig(tls, "t").ok());  // the default, 127.0.0.1:8000
  auto off = ParseConfig(tls + "server:\n  http_address: \"\"\n", "t");
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_EQ(off->server.http_address, "");
}

TEST(ConfigTest, OverridesApplyAfterFileInOrder) {
  auto config = ParseConfig("model:\n  resident_max_bits: 5\n", "t",
                            {"model.resident_max_bits=6", "model.resident_max_bits=7",
                             "model.path=/a=b", "model.lm_head_precision=request"});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->model.resident_max_bits, 7);
  EXPECT_EQ(config->DefaultMantissaBits(), 7);
  EXPECT_EQ(config->model.path, "/a=b");
  EXPECT_EQ(config->model.lm_head_precision, "request");
  ExpectErrorMentions("", {"model.resident_max_bits"}, "key.path=value");
  ExpectErrorMentions("", {"model.resident_max_bits=1"}, "model.resident_max_bits");
}

TEST(ConfigTest, FormatRoundTrips) {
  auto config = ParseConfig("engine:\n  threads: 7\nmodel:\n  path: /m\n", "t");
  ASSERT_TRUE(config.ok());
  std::string text = FormatConfig(*config);
  EXPECT_NE(text.find("  threads: 7\n"), std::string::npos) << text;
  auto again = ParseConfig(text, "formatted");
  ASSERT_TRUE(again.ok()) << again.status() << "\n" << text;
  EXPECT_EQ(FormatConfig(*again), text);
}

TEST(ConfigTest, ReferenceListsEveryKey) {
  std::string reference = ConfigReferenceMarkdown();
  for (const char* key : {"server.grpc_address", "model.resident_max_bits", "engine.device",
                          "generation.max_queue_time_seconds"}) {
    EXPECT_NE(reference.find(key), std::string::npos) << key;
  }
}

TEST(ConfigTest, MissingFileIsAnError) {
  auto config = LoadConfig("/nonexistent/otaro.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("/nonexistent/otaro.yaml"), std::string::npos);
}

}  // namespace
}  // namespace otaro::server
