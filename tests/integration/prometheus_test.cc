// A real Prometheus server (Debian's `prometheus`) scraping a real otaro_server
// on loopback with the shipped scrape config and alert rules
// (deploy/prometheus/), queried through its HTTP API. Also checks that every
// series the alerts and the Grafana dashboard use exists in a real scrape,
// except those listed as pending (the tuning worker's) or external.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "otaro/v1/inference.grpc.pb.h"
#include "tests/testing/http_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/subprocess.h"

namespace otaro {
namespace {

// Tuning series labelled by bit-width exist once a job has trained a step
// (tests/integration/tuning_jobs_test runs jobs); a scrape of an idle server
// lacks them. The test fails if one appears here, so the list stays honest.
const std::set<std::string> kPendingTuningSeries = {
    "otaro_tuning_loss",
    "otaro_tuning_bit_width_selections_total",
};

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// otaro_* and process_* names in PromQL text (alert rules, dashboard queries).
std::set<std::string> ReferencedSeries(const std::string& text) {
  std::set<std::string> names;
  // "otaro_server" is the program's name in the alerts' prose, not a series.
  std::regex name(R"(\b((otaro|process)_[a-z0-9_]+)\b)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator();
       ++it) {
    if ((*it)[1] != "otaro_server") names.insert((*it)[1]);
  }
  return names;
}

// Names of the samples in a Prometheus text exposition.
std::set<std::string> ScrapedSeries(const std::string& exposition) {
  std::set<std::string> names;
  for (absl::string_view line : absl::StrSplit(exposition, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    names.insert(std::string(line.substr(0, line.find_first_of("{ "))));
  }
  return names;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t size = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrCat("%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

class PrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::ScratchDir("prometheus");
    server_ = std::make_unique<testing::ServerProcess>(
        testing::ScratchDir("otaro_server"), std::vector<std::string>{
                          "--model", testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"),
                          "--set", "server.grpc_address=127.0.0.1:0", "--set",
                          "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0", "--set", "engine.threads=2",
                          "--set", "store.dir=" + testing::ScratchDir("prometheus_store")});
    ASSERT_NE(server_->grpc_port(), 0);
    // Generations at two precisions, so the labelled series have samples.
    auto stub = otaro::v1::Inference::NewStub(server_->channel());
    for (int bits : {8, 4, 4}) {
      otaro::v1::GenerateRequest request;
      request.set_text("Once upon a time");
      request.mutable_decode_precision()->set_mantissa_bits(bits);
      request.set_max_tokens(16);
      request.set_stop_at_eos(false);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      otaro::v1::GenerateResponse response;
      ASSERT_TRUE(stub->Generate(&context, request, &response).ok());
    }
  }

  // Starts Prometheus on the shipped config, pointed at this server, scraping
  // and evaluating the rules every second.
  void StartPrometheus() {
    std::string config = Read(testing::RunfilePath("deploy/prometheus/prometheus.yml"));
    ASSERT_TRUE(absl::StrContains(config, "127.0.0.1:9464"));
    config = absl::StrReplaceAll(
        config, {{"127.0.0.1:9464", absl::StrCat("127.0.0.1:", server_->metrics_port())},
                 {"scrape_interval: 15s", "scrape_interval: 1s"},
                 {"evaluation_interval: 15s", "evaluation_interval: 1s"}});
    std::ofstream(dir_ + "/prometheus.yml") << config;
    std::ofstream(dir_ + "/alerts.yaml")
        << Read(testing::RunfilePath("deploy/prometheus/alerts.yaml"));
    web_port_ = FreePort();
    prometheus_ = std::make_unique<testing::Subprocess>(
        std::vector<std::string>{"/usr/bin/prometheus", "--config.file=" + dir_ + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir_ + "/data",
                                 absl::StrCat("--web.listen-address=127.0.0.1:", web_port_),
                                 "--log.level=warn"},
        dir_);
    const absl::Time end = absl::Now() + absl::Seconds(60);
    while (absl::Now() < end) {
      auto ready = testing::HttpGet("127.0.0.1", web_port_, "/-/ready");
      if (ready.ok() && ready->status == 200) return;
      absl::SleepFor(absl::Milliseconds(100));
    }
    FAIL() << "prometheus did not become ready:\n" << prometheus_->Stderr();
  }

  // GET /api/v1/<path>; the "data" member of a successful answer.
  nlohmann::json Api(const std::string& path) {
    auto response = testing::HttpGet("127.0.0.1", web_port_, "/api/v1/" + path);
    EXPECT_TRUE(response.ok()) << response.status();
    if (!response.ok()) return nullptr;
    auto json = nlohmann::json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    EXPECT_EQ(json.value("status", ""), "success") << response->body;
    return json.contains("data") ? json["data"] : nlohmann::json();
  }

  // The instant-query result vector, polled until non-empty (up to 30 s).
  nlohmann::json Query(const std::string& promql) {
    const absl::Time end = absl::Now() + absl::Seconds(30);
    nlohmann::json result;
    while (absl::Now() < end) {
      result = Api("query?query=" + UrlEncode(promql))["result"];
      if (result.is_array() && !result.empty()) break;
      absl::SleepFor(absl::Milliseconds(250));
    }
    return result;
  }

  std::string dir_;
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<testing::Subprocess> prometheus_;
  int web_port_ = 0;
};

TEST_F(PrometheusTest, ScrapesOtaroSeriesAndEvaluatesTheAlertRules) {
  StartPrometheus();
  auto up = Query("up{job=\"otaro\"}");
  ASSERT_EQ(up.size(), 1u) << up.dump();
  EXPECT_EQ(up[0]["value"][1], "1");

  auto requests = Query("sum by (precision) (otaro_requests_total{code=\"OK\"})");
  std::map<std::string, std::string> by_precision;
  for (const auto& sample : requests) {
    by_precision[sample["metric"]["precision"]] = sample["value"][1];
  }
  EXPECT_EQ(by_precision["E5M8"], "1") << requests.dump();
  EXPECT_EQ(by_precision["E5M4"], "2") << requests.dump();

  auto tokens = Query("sum(otaro_generated_tokens_total)");
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0]["value"][1], "48");

  // A histogram quantile as the dashboard computes it.
  auto ttft = Query(
      "histogram_quantile(0.99, sum by (le) (otaro_time_to_first_token_seconds_bucket))");
  ASSERT_EQ(ttft.size(), 1u);
  EXPECT_GT(std::stod(ttft[0]["value"][1].get<std::string>()), 0);

  // Every rule loaded and evaluates without error against the real series.
  const absl::Time end = absl::Now() + absl::Seconds(30);
  int rules = 0, evaluated = 0;
  while (absl::Now() < end) {
    rules = evaluated = 0;
    const nlohmann::json groups = Api("rules")["groups"];
    for (const auto& group : groups) {
      for (const auto& rule : group["rules"]) {
        ++rules;
        EXPECT_NE(rule["health"], "err") << rule.dump();
        evaluated += rule["health"] == "ok";
      }
    }
    if (rules > 0 && evaluated == rules) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  EXPECT_EQ(rules, 7);
  EXPECT_EQ(evaluated, rules);
  // Nothing is wrong with this server: no alert fires.
  auto alerts = Api("alerts")["alerts"];
  for (const auto& alert : alerts) {
    EXPECT_NE(alert["state"], "firing") << alert.dump();
  }
}

TEST_F(PrometheusTest, EverySeriesTheDashboardAndAlertsUseIsExported) {
  auto scrape = testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  ASSERT_TRUE(scrape.ok());
  const std::set<std::string> exported = ScrapedSeries(scrape->body);
  for (const char* file : {"deploy/prometheus/alerts.yaml", "deploy/grafana/otaro.json"}) {
    const std::set<std::string> used = ReferencedSeries(Read(testing::RunfilePath(file)));
    EXPECT_GE(used.size(), 3u) << file;
    for (const std::string& name : used) {
      if (kPendingTuningSeries.count(name)) {
        EXPECT_FALSE(exported.count(name))
            << name << " is exported now: remove it from kPendingTuningSeries";
      } else {
        EXPECT_TRUE(exported.count(name)) << file << " uses " << name << ", which otaro_server "
                                          << "does not export";
      }
    }
  }
}

}  // namespace
}  // namespace otaro
