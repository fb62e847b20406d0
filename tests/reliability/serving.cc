#include "tests/reliability/serving.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/testing/shared_data.h"
#include "tests/testing/http_client.h"

namespace otaro::reliability {

std::string StoriesModel() {
  return testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}

StoriesServer::StoriesServer(const std::string& name, const std::vector<std::string>& sets,
                             const std::string& model) {
  std::vector<std::string> args = {"--model", model, "--set",
                                   "server.grpc_address=127.0.0.1:0", "--set",
                                   "server.metrics_address=127.0.0.1:0", "--set", "server.http_address=127.0.0.1:0", "--set",
                                   "engine.threads=2"};
  for (const std::string& set : sets) {
    args.push_back("--set");
    args.push_back(set);
  }
  server_ = std::make_unique<testing::ServerProcess>(testing::ScratchDir(name), args);
}

std::unique_ptr<otaro::v1::Inference::Stub> StoriesServer::Stub() const {
  return otaro::v1::Inference::NewStub(server_->channel());
}

std::string StoriesServer::Metrics() const {
  auto response = testing::HttpGet("127.0.0.1", server_->metrics_port(), "/metrics");
  return response.ok() ? response->body : "";
}

double StoriesServer::Sample(const std::string& series) const {
  // Sample lines start a line; "# HELP name ..." lines must not match.
  const std::string body = "\n" + Metrics();
  const size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  const size_t start = at + series.size() + 2;
  double value = -1;
  if (!absl::SimpleAtod(body.substr(start, body.find('\n', start) - start), &value)) return -1;
  return value;
}

bool StoriesServer::WaitIdle(absl::Duration timeout) const {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (Sample("otaro_scheduler_requests{state=\"running\"}") == 0 &&
        Sample("otaro_scheduler_requests{state=\"waiting\"}") == 0 &&
        Sample("otaro_kv_cache_usage_ratio") == 0) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

int64_t StoriesServer::ResidentBytes() const {
  std::ifstream status(absl::StrCat("/proc/", server_->process().pid(), "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      std::istringstream fields(line.substr(6));
      int64_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return -1;
}

std::unique_ptr<grpc::ClientContext> Context(absl::Duration deadline) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  return context;
}

otaro::v1::GenerateRequest Request(const std::string& prompt, int bits, int max_tokens) {
  otaro::v1::GenerateRequest request;
  request.set_text(prompt);
  request.mutable_decode_precision()->set_mantissa_bits(bits);
  request.set_max_tokens(max_tokens);
  return request;
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

}  // namespace otaro::reliability
