// Prometheus series of the tuning worker: jobs by state, the running job's
// step, loss by bit-width, BPS selections, throughput. Names are what
// deploy/ (dashboard, alerts) reads.
#ifndef OTARO_SERVER_TUNING_TUNING_METRICS_H_
#define OTARO_SERVER_TUNING_TUNING_METRICS_H_

#include <functional>
#include <map>
#include <memory>

#include "absl/status/statusor.h"
#include "otaro/v1/tuning.pb.h"
#include "server/metrics/registry.h"

namespace otaro::server {

class TuningMetrics {
 public:
  // `jobs_by_state` is read at scrape time (from the store).
  static absl::StatusOr<std::unique_ptr<TuningMetrics>> Register(
      metrics::Registry* registry,
      std::function<std::map<otaro::v1::JobState, int64_t>()> jobs_by_state);

  // bits: 0 = unquantized.
  void Step(uint64_t step, uint64_t total_steps, int bits, double loss, double tokens_per_second);
  void Evaluation(int bits, double heldout_loss);
  void JobFinished(otaro::v1::JobState state);
  void Idle();  // no job running

 private:
  TuningMetrics() = default;
  metrics::GaugeFamily* step_ = nullptr;
  metrics::GaugeFamily* total_steps_ = nullptr;
  metrics::GaugeFamily* loss_ = nullptr;
  metrics::GaugeFamily* heldout_loss_ = nullptr;
  metrics::CounterFamily* selections_ = nullptr;
  metrics::GaugeFamily* tokens_per_second_ = nullptr;
  metrics::CounterFamily* finished_ = nullptr;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_TUNING_TUNING_METRICS_H_
