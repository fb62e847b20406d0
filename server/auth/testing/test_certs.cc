#include "server/auth/testing/test_certs.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"

namespace otaro::server::auth::testing {
namespace {

constexpr char kNewKey[] = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

}  // namespace

std::string ReadPem(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::StatusOr<TestCerts> MakeTestCerts(const std::string& dir) {
  const std::string log = dir + "/openssl.log";
  {
    std::ofstream ext(dir + "/server.ext");
    ext << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  }
  const std::vector<std::string> commands = {
      absl::StrCat("openssl req -x509 ", kNewKey,
                   " -keyout ca.key -out ca.pem -days 2 -subj /CN=otaro-test-ca"),
      absl::StrCat("openssl req ", kNewKey, " -keyout server.key -out server.csr -subj /CN=localhost"),
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-extfile server.ext -out server.pem",
      absl::StrCat("openssl req ", kNewKey, " -keyout client.key -out client.csr -subj /CN=client"),
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
      "-out client.pem",
      "openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 -out unrelated.key",
  };
  for (const std::string& command : commands) {
    const std::string line = absl::StrCat("cd '", dir, "' && ", command, " >>'", log, "' 2>&1");
    if (std::system(line.c_str()) != 0) {
      return absl::InternalError(
          absl::StrCat("`", command, "` failed (is openssl installed?):\n", ReadPem(log)));
    }
  }
  return TestCerts{dir + "/ca.pem",     dir + "/server.pem", dir + "/server.key",
                   dir + "/client.pem", dir + "/client.key", dir + "/unrelated.key"};
}

}  // namespace otaro::server::auth::testing
