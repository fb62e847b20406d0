// A minimal blocking HTTP/1.0 GET over loopback, for tests that scrape the real
// metrics endpoint the way Prometheus does.
#ifndef OTARO_TESTS_TESTING_HTTP_CLIENT_H_
#define OTARO_TESTS_TESTING_HTTP_CLIENT_H_

#include <string>

#include "absl/status/statusor.h"

namespace otaro::testing {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port, const std::string& path,
                                     const std::string& method = "GET");

// Pipes `text` to `promtool check metrics`; returns its combined output and
// sets *exit_code.
std::string PromtoolCheckMetrics(const std::string& text, const std::string& scratch_dir,
                                 int* exit_code);

}  // namespace otaro::testing

#endif  // OTARO_TESTS_TESTING_HTTP_CLIENT_H_
