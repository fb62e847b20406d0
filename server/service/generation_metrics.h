// The Prometheus series of text generation (names with the otaro_ prefix and
// units in the name): requests by method, precision and status; tokens by
// precision; latency histograms by precision; the scheduler's queue and KV
// cache. Registered once at start; recorded by the Inference service.
#ifndef OTARO_SERVER_SERVICE_GENERATION_METRICS_H_
#define OTARO_SERVER_SERVICE_GENERATION_METRICS_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/serving/scheduler.h"
#include "server/metrics/registry.h"
#include "server/model/served_model.h"

namespace otaro::server {

class GenerationMetrics {
 public:
  // `models` (read at scrape time for the scheduler gauges) must outlive it.
  static absl::StatusOr<std::unique_ptr<GenerationMetrics>> Register(metrics::Registry* registry,
                                                                     const ModelHost* models);

  // One finished call (any status). `protocol` is "grpc" or "http" (the
  // OpenAI API's calls). `decode_bits` labels the precision ("E5M4"); 0 when
  // the request was refused before one was known.
  void RecordRequest(absl::string_view method, absl::string_view protocol, int prefill_bits,
                     int decode_bits, const absl::Status& status);
  // A call that generated: tokens and latencies.
  void RecordGeneration(int prefill_bits, int decode_bits, int64_t prompt_tokens,
                        int64_t generated_tokens, const engine::RequestTimings& timings,
                        const std::vector<absl::Duration>& inter_token_gaps);

 private:
  GenerationMetrics() = default;

  metrics::CounterFamily* requests_ = nullptr;
  metrics::CounterFamily* prompt_tokens_ = nullptr;
  metrics::CounterFamily* generated_tokens_ = nullptr;
  metrics::HistogramFamily* time_to_first_token_ = nullptr;
  metrics::HistogramFamily* inter_token_ = nullptr;
  metrics::HistogramFamily* queue_ = nullptr;
  metrics::HistogramFamily* prefill_ = nullptr;
  metrics::HistogramFamily* end_to_end_ = nullptr;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_GENERATION_METRICS_H_
