// Access control and TLS of a real otaro_server over loopback, with a real
// token file and the stories260K model: who may call what, what a refused call
// looks like (status, log line, metric), the loopback-only rule without tokens,
// and TLS / mutual TLS with certificates made by the openssl CLI.
#include <sys/stat.h>

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
#include "otaro/v1/models.grpc.pb.h"
#include "otaro/v1/tuning.grpc.pb.h"
#include "server/auth/testing/test_certs.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"

namespace otaro {
namespace {

constexpr char kAdminToken[] = "adm-5f0c2b7e9d41a8c3";
constexpr char kGenerateToken[] = "gen-8e1d4a7b2c9f0e63";

using server::auth::testing::MakeTestCerts;
using server::auth::testing::ReadPem;
using server::auth::testing::TestCerts;

std::string StoriesGguf() {
  return testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}

// A call context with a deadline and, if given, the token.
std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
  return context;
}

std::string WriteTokenFile(const std::string& dir) {
  const std::string path = dir + "/tokens.txt";
  std::ofstream(path) << "# test tokens\n"
                      << kAdminToken << " admin ops\n"
                      << kGenerateToken << " generate app\n";
  ::chmod(path.c_str(), 0600);
  return path;
}

grpc::StatusCode HealthCheck(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::health::v1::HealthCheckResponse response;
  auto context = Context();
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return grpc::health::v1::Health::NewStub(channel)
      ->Check(context.get(), {}, &response)
      .error_code();
}

class AuthTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = testing::ScratchDir("auth");
    server_ = new testing::ServerProcess(
        dir, {"--model", StoriesGguf(), "--set", "server.grpc_address=127.0.0.1:0", "--set",
              "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0", "--set",
              "auth.token_file=" + WriteTokenFile(dir)});
  }
  static void TearDownTestSuite() { delete server_; }

  void SetUp() override { ASSERT_GT(server_->grpc_port(), 0); }

  grpc::Status Generate(const std::string& token) {
    otaro::v1::GenerateRequest request;
    request.set_text("Once upon a time");
    request.set_max_tokens(4);
    otaro::v1::GenerateResponse response;
    auto context = Context(token);
    return otaro::v1::Inference::NewStub(server_->channel())
        ->Generate(context.get(), request, &response);
  }
  grpc::Status Tokenize(const std::string& token) {
    otaro::v1::TokenizeRequest request;
    request.set_text("Once upon a time");
    otaro::v1::TokenizeResponse response;
    auto context = Context(token);
    return otaro::v1::Inference::NewStub(server_->channel())
        ->Tokenize(context.get(), request, &response);
  }
  grpc::Status ListTuningJobs(const std::string& token) {
    otaro::v1::ListTuningJobsResponse response;
    auto context = Context(token);
    return otaro::v1::Tuning::NewStub(server_->channel())
        ->ListTuningJobs(context.get(), {}, &response);
  }
  grpc::Status ListModelVersions(const std::string& token) {
    otaro::v1::ListModelVersionsResponse response;
    auto context = Context(token);
    return otaro::v1::ModelVersions::NewStub(server_->channel())
        ->ListModelVersions(context.get(), {}, &response);
  }

  static testing::ServerProcess* server_;
};

testing::ServerProcess* AuthTest::server_ = nullptr;

bool PassedAuth(const grpc::Status& status) {
  return status.error_code() != grpc::StatusCode::UNAUTHENTICATED &&
         status.error_code() != grpc::StatusCode::PERMISSION_DENIED;
}

TEST_F(AuthTest, CallsWithoutATokenAreUnauthenticated) {
  grpc::Status generate = Generate("");
  EXPECT_EQ(generate.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(generate.error_message(), "authorization: Bearer <token>"))
      << generate.error_message();
  EXPECT_EQ(Tokenize("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(ListTuningJobs("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, UnknownTokensAreUnauthenticated) {
  EXPECT_EQ(Generate("not-a-token-of-this-server").error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthTest, GenerateTokenMayGenerateButNotAdminister) {
  grpc::Status generate = Generate(kGenerateToken);
  EXPECT_TRUE(generate.ok()) << generate.error_message();
  EXPECT_TRUE(Tokenize(kGenerateToken).ok());
  grpc::Status jobs = ListTuningJobs(kGenerateToken);
  EXPECT_EQ(jobs.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(absl::StrContains(jobs.error_message(), "token 'app' has role generate"))
      << jobs.error_message();
  EXPECT_EQ(ListModelVersions(kGenerateToken).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuthTest, AdminTokenPassesEverywhere) {
  EXPECT_TRUE(Generate(kAdminToken).ok());
  // Without store.dir the tuning and model-version services answer
  // FAILED_PRECONDITION; what matters here is that access control let the call through.
  grpc::Status jobs = ListTuningJobs(kAdminToken);
  EXPECT_TRUE(PassedAuth(jobs)) << jobs.error_code() << " " << jobs.error_message();
  grpc::Status versions = ListModelVersions(kAdminToken);
  EXPECT_TRUE(PassedAuth(versions)) << versions.error_code() << " " << versions.error_message();
}

TEST_F(AuthTest, HealthNeedsNoToken) {
  EXPECT_EQ(HealthCheck(server_->channel()), grpc::StatusCode::OK);
}

TEST_F(AuthTest, DeniedCallsAreLoggedByTokenNameAndCounted) {
  ASSERT_EQ(ListTuningJobs(kGenerateToken).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_EQ(Generate("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  const std::string log = server_->process().Stderr();
  EXPECT_TRUE(absl::StrContains(
      log, "denied /otaro.v1.Tuning/ListTuningJobs: permission_denied (token 'app'"))
      << log;
  EXPECT_TRUE(absl::StrContains(log, "denied /otaro.v1.Inference/Generate: missing_token"))
      << log;
  EXPECT_FALSE(absl::StrContains(log, kGenerateToken));
  EXPECT_FALSE(absl::StrContains(log, kAdminToken));

  auto metrics = testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_FALSE(absl::StrContains(metrics->body, "otaro_auth_denied_total{reason=\"missing_token\"} 0"))
      << metrics->body;
  EXPECT_FALSE(
      absl::StrContains(metrics->body, "otaro_auth_denied_total{reason=\"permission_denied\"} 0"))
      << metrics->body;
  EXPECT_TRUE(absl::StrContains(metrics->body, "otaro_auth_denied_total{reason=\"missing_token\"}"))
      << metrics->body;
}

TEST_F(AuthTest, CliSendsItsToken) {
  const std::string address = server_->address();
  auto refused = testing::Run({testing::RunfilePath("client/otaro"), "info", "--server", address},
                              server_->dir());
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(refused.err, "Pass --token or set OTARO_TOKEN")) << refused.err;
  auto info = testing::Run(
      {testing::RunfilePath("client/otaro"), "info", "--server", address, "--token", kGenerateToken},
      server_->dir());
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(absl::StrContains(info.out, "parameters       260032")) << info.out;
}

TEST(AuthStartupTest, WithoutTokensANonLoopbackAddressIsAStartupError) {
  const std::string dir = testing::ScratchDir("auth_no_tokens");
  auto result = testing::Run({testing::RunfilePath("server/otaro_server"), "--set",
                              "server.grpc_address=0.0.0.0:0", "--set", "server.metrics_address=", "--set", "server.http_address="},
                             dir, absl::Seconds(60));
  EXPECT_EQ(result.exit_code, 2) << result.err;  // a bad configuration (README)
  EXPECT_TRUE(absl::StrContains(result.err, "server.grpc_address 0.0.0.0:0 is not a loopback"))
      << result.err;
  EXPECT_TRUE(absl::StrContains(result.err, "auth.token_file")) << result.err;
}

TEST(AuthStartupTest, WithTokensAnyAddressServes) {
  const std::string dir = testing::ScratchDir("auth_any_address");
  testing::ServerProcess server(dir, {"--set", "server.grpc_address=0.0.0.0:0", "--set",
                                      "server.metrics_address=", "--set", "server.http_address=", "--set",
                                      "auth.token_file=" + WriteTokenFile(dir)});
  ASSERT_GT(server.grpc_port(), 0);
  EXPECT_EQ(HealthCheck(server.channel()), grpc::StatusCode::OK);
  EXPECT_TRUE(absl::StrContains(server.process().Stderr(), "tokens cross the network readable"));
}

TEST(AuthStartupTest, TokenFileReadableByEveryoneIsAStartupError) {
  const std::string dir = testing::ScratchDir("auth_open_tokens");
  const std::string tokens = WriteTokenFile(dir);
  ::chmod(tokens.c_str(), 0644);
  auto result = testing::Run({testing::RunfilePath("server/otaro_server"), "--set",
                              "server.grpc_address=127.0.0.1:0", "--set",
                              "server.metrics_address=", "--set", "server.http_address=", "--set", "auth.token_file=" + tokens},
                             dir, absl::Seconds(60));
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_TRUE(absl::StrContains(result.err, "mode 0644")) << result.err;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir("auth_tls");
    auto certs = MakeTestCerts(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
  }

  std::shared_ptr<grpc::Channel> TlsChannel(const testing::ServerProcess& server,
                                            bool with_client_cert) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadPem(certs_.ca_cert);
    if (with_client_cert) {
      ssl.pem_cert_chain = ReadPem(certs_.client_cert);
      ssl.pem_private_key = ReadPem(certs_.client_key);
    }
    return grpc::CreateChannel(server.address(), grpc::SslCredentials(ssl));
  }

  std::vector<std::string> TlsArgs() {
    return {"--set", "server.grpc_address=127.0.0.1:0", "--set", "server.metrics_address=", "--set", "server.http_address=",
            "--set", "tls.cert_file=" + certs_.server_cert, "--set",
            "tls.key_file=" + certs_.server_key};
  }

  std::string dir_;
  TestCerts certs_;
};

TEST_F(TlsTest, TlsClientsConnectAndPlaintextClientsDoNot) {
  testing::ServerProcess server(dir_, TlsArgs());
  ASSERT_GT(server.grpc_port(), 0);
  EXPECT_EQ(HealthCheck(TlsChannel(server, false)), grpc::StatusCode::OK);
  auto plaintext = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(HealthCheck(plaintext), grpc::StatusCode::UNAVAILABLE);

  // The CLI, trusting the test CA.
  auto health = testing::Run({testing::RunfilePath("client/otaro"), "health", "--server",
                              server.address(), "--tls-ca", certs_.ca_cert},
                             dir_);
  EXPECT_EQ(health.exit_code, 0) << health.err;
  EXPECT_EQ(health.out, "SERVING\n");
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificate) {
  std::vector<std::string> args = TlsArgs();
  args.insert(args.end(), {"--set", "tls.client_ca_file=" + certs_.ca_cert, "--set",
                           "auth.token_file=" + WriteTokenFile(dir_)});
  testing::ServerProcess server(dir_, args);
  ASSERT_GT(server.grpc_port(), 0);
  EXPECT_NE(HealthCheck(TlsChannel(server, false)), grpc::StatusCode::OK);
  auto channel = TlsChannel(server, true);
  EXPECT_EQ(HealthCheck(channel), grpc::StatusCode::OK);

  // Both layers apply: the certificate gets the caller in, the token decides.
  otaro::v1::TokenizeResponse response;
  auto without_token = Context();
  EXPECT_EQ(otaro::v1::Inference::NewStub(channel)
                ->Tokenize(without_token.get(), {}, &response)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  auto with_token = Context(kGenerateToken);
  grpc::Status status =
      otaro::v1::Inference::NewStub(channel)->Tokenize(with_token.get(), {}, &response);
  // No model is loaded: the call passed access control and reached the service.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();

  auto cli = testing::Run({testing::RunfilePath("client/otaro"), "health", "--server",
                           server.address(), "--tls-ca", certs_.ca_cert, "--tls-cert",
                           certs_.client_cert, "--tls-key", certs_.client_key},
                          dir_);
  EXPECT_EQ(cli.exit_code, 0) << cli.err;
}

TEST_F(TlsTest, MismatchedKeyIsAStartupError) {
  auto result = testing::Run({testing::RunfilePath("server/otaro_server"), "--set",
                              "server.grpc_address=127.0.0.1:0", "--set", "server.metrics_address=", "--set", "server.http_address=",
                              "--set", "tls.cert_file=" + certs_.server_cert, "--set",
                              "tls.key_file=" + certs_.unrelated_key},
                             dir_, absl::Seconds(60));
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_TRUE(absl::StrContains(result.err, "is not the key of the certificate")) << result.err;
}

}  // namespace
}  // namespace otaro
