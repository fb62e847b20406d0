// Throw-away TLS material for tests, made with the openssl CLI: a CA, a server
// certificate for localhost and 127.0.0.1, and a client certificate, both
// signed by the CA (valid for two days), plus a key that matches nothing.
#ifndef OTARO_SERVER_AUTH_TESTING_TEST_CERTS_H_
#define OTARO_SERVER_AUTH_TESTING_TEST_CERTS_H_

#include <string>

#include "absl/status/statusor.h"

namespace otaro::server::auth::testing {

struct TestCerts {
  std::string ca_cert;      // PEM paths, all in one directory
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
  std::string unrelated_key;
};

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir);

// The whole file, or "" when it cannot be read.
std::string ReadPem(const std::string& path);

}  // namespace otaro::server::auth::testing

#endif  // OTARO_SERVER_AUTH_TESTING_TEST_CERTS_H_
