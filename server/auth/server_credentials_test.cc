#include "server/auth/server_credentials.h"

#include <sys/stat.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/testing/shared_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"
#include "server/auth/testing/test_certs.h"

namespace otaro::server::auth {
namespace {

using ::testing::HasSubstr;

// A self-signed certificate that expired yesterday, and its key (the openssl
// 3.0 CLI cannot back-date one).
void WriteExpiredCertificate(const std::string& cert_path, const std::string& key_path) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -2 * 86400);
  X509_gmtime_adj(X509_getm_notAfter(cert), -86400);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("expired"), -1, -1, 0);
  X509_set_issuer_name(cert, X509_get_subject_name(cert));
  X509_set_pubkey(cert, key);
  ASSERT_GT(X509_sign(cert, key, EVP_sha256()), 0);
  FILE* out = std::fopen(cert_path.c_str(), "w");
  PEM_write_X509(out, cert);
  std::fclose(out);
  out = std::fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(out);
  X509_free(cert);
  EVP_PKEY_free(key);
}

class ServerCredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = otaro::testing::ScratchDir("server_credentials");
    auto certs = testing::MakeTestCerts(dir_);
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
    token_file_ = dir_ + "/tokens.txt";
    std::ofstream(token_file_) << "0123456789abcdef0123 admin ops\n";
    ::chmod(token_file_.c_str(), 0600);
  }

  absl::Status Make(const Config& config) {
    metrics::Registry registry;
    auto security = MakeServerSecurity(config, &registry);
    if (security.ok()) {
      EXPECT_NE(security->credentials, nullptr);
      // One token check for gRPC and the OpenAI API, present iff tokens are.
      EXPECT_EQ(security->access_control != nullptr, !config.auth.token_file.empty());
    }
    return security.status();
  }

  std::string dir_;
  testing::TestCerts certs_;
  std::string token_file_;
};

TEST_F(ServerCredentialsTest, WithoutTokensOnlyLoopbackAddresses) {
  Config config;
  config.server.grpc_address = "127.0.0.1:0";
  EXPECT_TRUE(Make(config).ok());
  config.server.grpc_address = "0.0.0.0:50051";
  absl::Status status = Make(config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("server.grpc_address 0.0.0.0:50051 is not a loopback"));
  EXPECT_THAT(status.message(), HasSubstr("auth.token_file"));

  config.auth.token_file = token_file_;
  EXPECT_TRUE(Make(config).ok());
}

TEST_F(ServerCredentialsTest, TheOpenAiListenerFollowsTheSameRule) {
  Config config;
  config.server.grpc_address = "127.0.0.1:0";
  config.server.http_address = "0.0.0.0:8000";
  absl::Status status = Make(config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("server.http_address 0.0.0.0:8000 is not a loopback"));
  config.server.http_address = "";  // off
  EXPECT_TRUE(Make(config).ok());
  config.server.http_address = "0.0.0.0:8000";
  config.auth.token_file = token_file_;
  EXPECT_TRUE(Make(config).ok());
}

TEST_F(ServerCredentialsTest, TokenFileErrorsStopTheStart) {
  Config config;
  config.auth.token_file = dir_ + "/missing.txt";
  EXPECT_THAT(Make(config).message(), HasSubstr("auth.token_file " + dir_ + "/missing.txt"));
  ::chmod(token_file_.c_str(), 0604);
  config.auth.token_file = token_file_;
  EXPECT_THAT(Make(config).message(), HasSubstr("mode 0604"));
}

TEST_F(ServerCredentialsTest, AcceptsMatchingTlsFiles) {
  Config config;
  config.tls.cert_file = certs_.server_cert;
  config.tls.key_file = certs_.server_key;
  EXPECT_TRUE(Make(config).ok());
  config.tls.client_ca_file = certs_.ca_cert;
  EXPECT_TRUE(Make(config).ok());
}

TEST_F(ServerCredentialsTest, TlsFileErrorsNameTheKeyAndTheFile) {
  Config config;
  config.tls.cert_file = certs_.server_cert;
  config.tls.key_file = certs_.unrelated_key;
  EXPECT_THAT(Make(config).message(),
              HasSubstr(absl::StrCat("tls.key_file ", certs_.unrelated_key,
                                     " is not the key of the certificate in tls.cert_file ",
                                     certs_.server_cert)));

  config.tls.key_file = certs_.server_key;
  config.tls.cert_file = dir_ + "/nope.pem";
  EXPECT_THAT(Make(config).message(), HasSubstr("tls.cert_file: "));
  EXPECT_THAT(Make(config).message(), HasSubstr(dir_ + "/nope.pem"));

  config.tls.cert_file = certs_.server_key;  // a key where the certificate belongs
  EXPECT_THAT(Make(config).message(),
              HasSubstr("tls.cert_file " + certs_.server_key + ": no PEM certificate"));

  config.tls.cert_file = certs_.server_cert;
  config.tls.key_file = certs_.server_cert;  // a certificate where the key belongs
  EXPECT_THAT(Make(config).message(),
              HasSubstr("tls.key_file " + certs_.server_cert + ": no unencrypted PEM private key"));

  config.tls.key_file = certs_.server_key;
  config.tls.client_ca_file = token_file_;
  EXPECT_THAT(Make(config).message(),
              HasSubstr("tls.client_ca_file " + token_file_ + ": no PEM certificate"));
}

TEST_F(ServerCredentialsTest, AnEncryptedKeyFailsInsteadOfPrompting) {
  const std::string encrypted = dir_ + "/encrypted.key";
  ASSERT_EQ(std::system(("openssl pkey -in '" + certs_.server_key + "' -aes256 -passout pass:x -out '" +
                         encrypted + "' 2>/dev/null")
                            .c_str()),
            0);
  Config config;
  config.tls.cert_file = certs_.server_cert;
  config.tls.key_file = encrypted;
  EXPECT_THAT(Make(config).message(), HasSubstr("no unencrypted PEM private key"));
}

TEST_F(ServerCredentialsTest, AnExpiredCertificateIsAnError) {
  Config config;
  config.tls.cert_file = dir_ + "/expired.pem";
  config.tls.key_file = dir_ + "/expired.key";
  WriteExpiredCertificate(config.tls.cert_file, config.tls.key_file);
  EXPECT_THAT(Make(config).message(),
              HasSubstr("tls.cert_file " + config.tls.cert_file + ": the certificate expired on "));
}

}  // namespace
}  // namespace otaro::server::auth
