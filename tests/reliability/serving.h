// Shared pieces of the reliability suite: an otaro_server on the real
// stories260K model with --set overrides, its metrics as numbers, its memory,
// and latency percentiles of what clients saw.
#ifndef OTARO_TESTS_RELIABILITY_SERVING_H_
#define OTARO_TESTS_RELIABILITY_SERVING_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "tests/testing/server_process.h"

namespace otaro::reliability {

std::string StoriesModel();

class StoriesServer {
 public:
  // otaro_server on loopback (free ports, 2 engine threads) serving `model`,
  // with `sets` ("key=value") applied after the defaults.
  explicit StoriesServer(const std::string& name, const std::vector<std::string>& sets = {},
                         const std::string& model = StoriesModel());

  std::unique_ptr<otaro::v1::Inference::Stub> Stub() const;
  std::string address() const { return server_->address(); }
  int metrics_port() const { return server_->metrics_port(); }
  testing::Subprocess& process() { return server_->process(); }
  const std::string& dir() const { return server_->dir(); }

  std::string Metrics() const;
  // The value of the sample `series` (e.g. `otaro_kv_cache_usage_ratio` or
  // `otaro_scheduler_requests{state="running"}`), or -1 when absent.
  double Sample(const std::string& series) const;
  // Polls until nothing runs or waits and the KV cache is empty; false after `timeout`.
  bool WaitIdle(absl::Duration timeout = absl::Seconds(10)) const;
  // Resident memory of the server process (VmRSS), bytes.
  int64_t ResidentBytes() const;

 private:
  std::unique_ptr<testing::ServerProcess> server_;
};

std::unique_ptr<grpc::ClientContext> Context(absl::Duration deadline = absl::Seconds(60));

otaro::v1::GenerateRequest Request(const std::string& prompt, int bits, int max_tokens);

// The q-quantile (0..1) of `values` by nearest rank; 0 for none.
double Percentile(std::vector<double> values, double q);

}  // namespace otaro::reliability

#endif  // OTARO_TESTS_RELIABILITY_SERVING_H_
