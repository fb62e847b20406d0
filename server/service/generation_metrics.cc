#include "server/service/generation_metrics.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace otaro::server {
namespace {

std::string PrecisionLabel(int bits) { return bits ? absl::StrCat("E5M", bits) : "none"; }

// Seconds from 1 ms to ~65 s, doubling.
std::vector<double> LatencyBuckets() { return metrics::ExponentialBuckets(0.001, 2, 17); }

}  // namespace

absl::StatusOr<std::unique_ptr<GenerationMetrics>> GenerationMetrics::Register(
    metrics::Registry* registry, const ModelHost* models) {
  std::unique_ptr<GenerationMetrics> m(new GenerationMetrics());
  OTARO_ASSIGN_OR_RETURN(
      m->requests_,
      registry->AddCounter("otaro_requests_total",
                           "Generation calls by method, protocol (grpc, or http for the OpenAI "
                           "API), precision (decode) and gRPC status code.",
                           {"method", "protocol", "precision", "code"}));
  OTARO_ASSIGN_OR_RETURN(m->prompt_tokens_,
                         registry->AddCounter("otaro_prompt_tokens_total",
                                              "Prompt tokens processed, by prefill precision.",
                                              {"precision"}));
  OTARO_ASSIGN_OR_RETURN(m->generated_tokens_,
                         registry->AddCounter("otaro_generated_tokens_total",
                                              "Tokens generated, by decode precision.",
                                              {"precision"}));
  auto histogram = [&](const char* name, const char* help,
                       metrics::HistogramFamily** out) -> absl::Status {
    OTARO_ASSIGN_OR_RETURN(*out,
                           registry->AddHistogram(name, help, LatencyBuckets(), {"precision"}));
    return absl::OkStatus();
  };
  OTARO_RETURN_IF_ERROR(histogram("otaro_time_to_first_token_seconds",
                                  "From receipt of a request to its first token.",
                                  &m->time_to_first_token_));
  OTARO_RETURN_IF_ERROR(histogram("otaro_inter_token_latency_seconds",
                                  "Time between consecutive generated tokens of a request.",
                                  &m->inter_token_));
  OTARO_RETURN_IF_ERROR(histogram("otaro_queue_time_seconds",
                                  "Time a request waited for a batch slot and KV cache.",
                                  &m->queue_));
  OTARO_RETURN_IF_ERROR(histogram("otaro_prefill_seconds",
                                  "Time to process a request's prompt once admitted.",
                                  &m->prefill_));
  OTARO_RETURN_IF_ERROR(histogram("otaro_request_duration_seconds",
                                  "From receipt of a request to its last token.",
                                  &m->end_to_end_));

  // Scheduler state, read from the served model at scrape time.
  OTARO_ASSIGN_OR_RETURN(metrics::CallbackGaugeFamily * requests,
                         registry->AddCallbackGauge("otaro_scheduler_requests",
                                                    "Requests waiting for or running in a batch.",
                                                    {"state"}));
  OTARO_ASSIGN_OR_RETURN(metrics::CallbackGaugeFamily * kv,
                         registry->AddCallbackGauge("otaro_kv_cache_usage_ratio",
                                                    "Fraction of KV cache blocks in use."));
  auto stat = [models](auto field) {
    return [models, field] {
      auto served = models->current();
      if (!served || !served->scheduler) return 0.0;
      return static_cast<double>(field(served->scheduler->stats()));
    };
  };
  requests->Set({"waiting"}, stat([](const engine::SchedulerStats& s) { return s.waiting; }));
  requests->Set({"running"}, stat([](const engine::SchedulerStats& s) { return s.running; }));
  kv->Set({}, stat([](const engine::SchedulerStats& s) { return s.kv_usage_ratio; }));
  return m;
}

void GenerationMetrics::RecordRequest(absl::string_view method, absl::string_view protocol,
                                      int prefill_bits, int decode_bits,
                                      const absl::Status& status) {
  requests_
      ->WithLabels({method, protocol, PrecisionLabel(decode_bits),
                    absl::StatusCodeToString(status.code())})
      .Increment();
}

void GenerationMetrics::RecordGeneration(int prefill_bits, int decode_bits, int64_t prompt_tokens,
                                         int64_t generated_tokens,
                                         const engine::RequestTimings& timings,
                                         const std::vector<absl::Duration>& inter_token_gaps) {
  const std::string prefill = PrecisionLabel(prefill_bits);
  const std::string decode = PrecisionLabel(decode_bits);
  prompt_tokens_->WithLabels({prefill}).Increment(static_cast<double>(prompt_tokens));
  generated_tokens_->WithLabels({decode}).Increment(static_cast<double>(generated_tokens));
  if (generated_tokens > 0) {
    time_to_first_token_->WithLabels({decode}).Observe(
        absl::ToDoubleSeconds(timings.time_to_first_token));
  }
  metrics::Histogram& gaps = inter_token_->WithLabels({decode});
  for (absl::Duration gap : inter_token_gaps) gaps.Observe(absl::ToDoubleSeconds(gap));
  queue_->WithLabels({decode}).Observe(absl::ToDoubleSeconds(timings.queue));
  prefill_->WithLabels({prefill}).Observe(absl::ToDoubleSeconds(timings.prefill));
  end_to_end_->WithLabels({decode}).Observe(absl::ToDoubleSeconds(timings.total));
}

}  // namespace otaro::server
