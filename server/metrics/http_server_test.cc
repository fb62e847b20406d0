#include "server/metrics/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/process_metrics.h"
#include "server/metrics/registry.h"

namespace otaro::metrics {
namespace {

using ::testing::HasSubstr;

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // Lower-case names.
  std::string body;
};

// A minimal blocking HTTP/1.1 client over loopback: one request per
// connection, read until the server closes.
absl::StatusOr<HttpResponse> Fetch(int port, const std::string& method, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket");
  struct timeval timeout = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("connect: ", strerror(err)));
  }
  std::string request = absl::StrCat(method, " ", path,
                                     " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                                     "Content-Length: 0\r\n\r\n");
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    close(fd);
    return absl::InternalError("send");
  }
  std::string raw;
  char buf[8192];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) raw.append(buf, n);
  close(fd);
  if (n < 0) return absl::DeadlineExceededError(absl::StrCat("recv: ", strerror(errno)));

  size_t header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos) return absl::DataLossError("no header end: " + raw);
  HttpResponse response;
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, header_end), "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &response.status)) {
    return absl::DataLossError("bad status line: " + lines[0]);
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    response.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  response.body = raw.substr(header_end + 4);
  if (auto it = response.headers.find("content-length"); it != response.headers.end()) {
    size_t length;
    if (!absl::SimpleAtoi(it->second, &length) || length != response.body.size()) {
      return absl::DataLossError(absl::StrCat("content-length ", it->second, " but body has ",
                                              response.body.size(), " bytes"));
    }
  }
  return response;
}

// Runs `promtool check metrics` on `text` (it reads stdin); returns its exit
// status and everything it printed.
int Promtool(const std::string& text, std::string* output) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string path = absl::StrCat(tmp ? tmp : "/tmp", "/metrics_", getpid(), ".txt");
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return -1;
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  std::string command = absl::StrCat("/usr/bin/promtool check metrics < '", path, "' 2>&1");
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) output->append(buf, n);
  int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

MetricsHttpServerOptions Options(std::string address, int num_threads = 2) {
  MetricsHttpServerOptions options;
  options.listen_address = std::move(address);
  options.num_threads = num_threads;
  return options;
}

std::unique_ptr<MetricsHttpServer> StartOrDie(const Registry* registry,
                                              MetricsHttpServerOptions options = {}) {
  if (options.listen_address == MetricsHttpServerOptions().listen_address) {
    options.listen_address = "127.0.0.1:0";
  }
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start(registry, std::move(options));
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

// A registry like the server's: process metrics plus every kind of family,
// with label values that need escaping.
void FillRegistry(Registry& registry) {
  ASSERT_TRUE(RegisterProcessMetrics(registry, {"0.1.0", "deadbeef"}).ok());
  CounterFamily* requests = *registry.AddCounter(
      "otaro_requests_total", "Requests by RPC and status code.", {"rpc", "code"});
  requests->WithLabels({"Generate", "OK"}).Increment(41);
  requests->WithLabels({"Generate", "OK"}).Increment();
  requests->WithLabels({"Embed \"v1\"\\\n", "INVALID_ARGUMENT"}).Increment();
  HistogramFamily* latency =
      *registry.AddHistogram("otaro_request_duration_seconds", "Request latency in seconds.",
                             ExponentialBuckets(0.001, 2, 12), {"rpc"});
  for (double v : {0.0005, 0.003, 0.04, 0.5, 7.0}) latency->WithLabels({"Generate"}).Observe(v);
  GaugeFamily* loaded = *registry.AddGauge("otaro_models_loaded", "Models in memory.");
  loaded->WithLabels({}).Set(2);
  CallbackGaugeFamily* queue =
      *registry.AddCallbackGauge("otaro_queue_length", "Requests waiting.", {"model"});
  queue->Set({"tiny"}, [] { return 5.0; });
}

TEST(PromtoolTest, HarnessReportsLintProblems) {
  // Proves the check below can fail: promtool must object to a counter without
  // _total and a family without help.
  std::string output;
  int rc = Promtool("# TYPE foo counter\nfoo 1\n", &output);
  EXPECT_NE(rc, 0);
  EXPECT_THAT(output, HasSubstr("_total"));
  output.clear();
  EXPECT_NE(Promtool("not{valid\n", &output), 0);
}

TEST(MetricsHttpServerTest, MetricsEndpointServesTextThatPassesPromtool) {
  Registry registry;
  FillRegistry(registry);
  std::unique_ptr<MetricsHttpServer> server = StartOrDie(&registry);
  ASSERT_NE(server, nullptr);
  ASSERT_GT(server->port(), 0);

  absl::StatusOr<HttpResponse> response = Fetch(server->port(), "GET", "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  const std::string& body = response->body;
  EXPECT_THAT(body, HasSubstr("otaro_build_info{version=\"0.1.0\",git_commit=\"deadbeef\"} 1\n"));
  EXPECT_THAT(body, HasSubstr("otaro_requests_total{rpc=\"Generate\",code=\"OK\"} 42\n"));
  EXPECT_THAT(
      body,
      HasSubstr(
          "otaro_requests_total{rpc=\"Embed \\\"v1\\\"\\\\\\n\",code=\"INVALID_ARGUMENT\"} 1\n"));
  EXPECT_THAT(
      body, HasSubstr("otaro_request_duration_seconds_bucket{rpc=\"Generate\",le=\"0.001\"} 1\n"));
  EXPECT_THAT(
      body, HasSubstr("otaro_request_duration_seconds_bucket{rpc=\"Generate\",le=\"2.048\"} 4\n"));
  EXPECT_THAT(body, HasSubstr("otaro_request_duration_seconds_count{rpc=\"Generate\"} 5\n"));
  EXPECT_THAT(body, HasSubstr("otaro_queue_length{model=\"tiny\"} 5\n"));
  EXPECT_THAT(body, HasSubstr("\nprocess_open_fds "));
  EXPECT_THAT(body, HasSubstr("\notaro_uptime_seconds "));

  std::string output;
  EXPECT_EQ(Promtool(body, &output), 0) << output << "\n--- body ---\n" << body;
  EXPECT_EQ(output, "") << "\n--- body ---\n" << body;

  // A query string does not change the route.
  absl::StatusOr<HttpResponse> with_query = Fetch(server->port(), "GET", "/metrics?x=1");
  ASSERT_TRUE(with_query.ok()) << with_query.status();
  EXPECT_EQ(with_query->status, 200);
}

TEST(MetricsHttpServerTest, HealthAndReadiness) {
  Registry registry;
  std::atomic<bool> ready{false};
  MetricsHttpServerOptions options;
  options.readiness = [&ready] { return ready.load(); };
  options.listen_address = "127.0.0.1:0";
  std::unique_ptr<MetricsHttpServer> server = StartOrDie(&registry, options);
  ASSERT_NE(server, nullptr);

  absl::StatusOr<HttpResponse> health = Fetch(server->port(), "GET", "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok");

  absl::StatusOr<HttpResponse> not_ready = Fetch(server->port(), "GET", "/readyz");
  ASSERT_TRUE(not_ready.ok()) << not_ready.status();
  EXPECT_EQ(not_ready->status, 503);
  ready.store(true);
  absl::StatusOr<HttpResponse> now_ready = Fetch(server->port(), "GET", "/readyz");
  ASSERT_TRUE(now_ready.ok()) << now_ready.status();
  EXPECT_EQ(now_ready->status, 200);

  // An empty registry is still a valid (empty) scrape.
  absl::StatusOr<HttpResponse> metrics = Fetch(server->port(), "GET", "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->body, "");
}

TEST(MetricsHttpServerTest, NoReadinessCallbackMeansReady) {
  Registry registry;
  std::unique_ptr<MetricsHttpServer> server = StartOrDie(&registry);
  ASSERT_NE(server, nullptr);
  absl::StatusOr<HttpResponse> response = Fetch(server->port(), "GET", "/readyz");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
}

TEST(MetricsHttpServerTest, UnknownPathsAre404AndOtherMethods405) {
  Registry registry;
  std::unique_ptr<MetricsHttpServer> server = StartOrDie(&registry);
  ASSERT_NE(server, nullptr);
  for (const char* path : {"/", "/nope", "/metrics/extra", "/metricsx", "/healthz/"}) {
    absl::StatusOr<HttpResponse> response = Fetch(server->port(), "GET", path);
    ASSERT_TRUE(response.ok()) << path << ": " << response.status();
    EXPECT_EQ(response->status, 404) << path;
  }
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    absl::StatusOr<HttpResponse> response = Fetch(server->port(), method, "/metrics");
    ASSERT_TRUE(response.ok()) << method << ": " << response.status();
    EXPECT_EQ(response->status, 405) << method;
    EXPECT_EQ(response->headers["allow"], "GET") << method;
  }
}

TEST(MetricsHttpServerTest, PortInUseIsAClearError) {
  Registry registry;
  std::unique_ptr<MetricsHttpServer> first = StartOrDie(&registry);
  ASSERT_NE(first, nullptr);
  std::string address = absl::StrCat("127.0.0.1:", first->port());
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Start(&registry, Options(address));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(address));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("Address already in use"));
  // The first server is unaffected.
  absl::StatusOr<HttpResponse> response = Fetch(first->port(), "GET", "/healthz");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 200);
}

TEST(MetricsHttpServerTest, BadOptionsAreInvalidArgument) {
  Registry registry;
  for (const char* address : {"", "9464", "127.0.0.1", ":9464", "127.0.0.1:99999", "127.0.0.1:80s",
                              "127.0.0.1:-1", "127.0.0.1:1,127.0.0.1:2"}) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
        MetricsHttpServer::Start(&registry, Options(address));
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << address;
  }
  EXPECT_EQ(MetricsHttpServer::Start(&registry, Options("127.0.0.1:0", 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsHttpServer::Start(nullptr, Options("127.0.0.1:0")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MetricsHttpServerTest, StopClosesThePortAndIsIdempotent) {
  Registry registry;
  std::unique_ptr<MetricsHttpServer> server = StartOrDie(&registry, Options("127.0.0.1:0", 1));
  ASSERT_NE(server, nullptr);
  int port = server->port();
  ASSERT_TRUE(Fetch(port, "GET", "/healthz").ok());
  server->Stop();
  EXPECT_EQ(Fetch(port, "GET", "/healthz").status().code(), absl::StatusCode::kUnavailable);
  server->Stop();
  server.reset();  // Destructor after Stop.
  // The port is free again for a new server.
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> again =
      MetricsHttpServer::Start(&registry, Options(absl::StrCat("127.0.0.1:", port)));
  EXPECT_TRUE(again.ok()) << again.status();
}

}  // namespace
}  // namespace otaro::metrics
