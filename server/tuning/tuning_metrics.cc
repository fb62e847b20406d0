#include "server/tuning/tuning_metrics.h"

#include <cctype>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace otaro::server {
namespace {

std::string BitsLabel(int bits) { return bits ? absl::StrCat("E5M", bits) : "fp32"; }

// "failed", "running", ...: Prometheus label values are lower case by habit.
std::string StateLabel(otaro::v1::JobState state) {
  std::string name = otaro::v1::JobState_Name(state).substr(std::string("JOB_STATE_").size());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TuningMetrics>> TuningMetrics::Register(
    metrics::Registry* registry,
    std::function<std::map<otaro::v1::JobState, int64_t>()> jobs_by_state) {
  std::unique_ptr<TuningMetrics> m(new TuningMetrics());
  OTARO_ASSIGN_OR_RETURN(metrics::CallbackGaugeFamily * jobs,
                         registry->AddCallbackGauge("otaro_tuning_jobs",
                                                    "Tuning jobs by state.", {"state"}));
  // One child per state, each reading the same snapshot function; the store
  // query is cheap (an indexed GROUP BY).
  for (int s = otaro::v1::JOB_STATE_VALIDATING; s <= otaro::v1::JOB_STATE_INTERRUPTED; ++s) {
    const auto state = static_cast<otaro::v1::JobState>(s);
    jobs->Set({StateLabel(state)}, [jobs_by_state, state] {
      auto counts = jobs_by_state();
      auto it = counts.find(state);
      return it == counts.end() ? 0.0 : static_cast<double>(it->second);
    });
  }
  OTARO_ASSIGN_OR_RETURN(m->step_, registry->AddGauge("otaro_tuning_step",
                                                      "Step of the running tuning job.", {}));
  OTARO_ASSIGN_OR_RETURN(m->total_steps_,
                         registry->AddGauge("otaro_tuning_total_steps",
                                            "Steps the running tuning job will take.", {}));
  OTARO_ASSIGN_OR_RETURN(m->loss_,
                         registry->AddGauge("otaro_tuning_loss",
                                            "Latest training loss of the running job, by "
                                            "bit-width of the step.",
                                            {"bits"}));
  OTARO_ASSIGN_OR_RETURN(m->heldout_loss_,
                         registry->AddGauge("otaro_tuning_heldout_loss",
                                            "Latest held-out loss of the running job, by "
                                            "bit-width evaluated.",
                                            {"bits"}));
  OTARO_ASSIGN_OR_RETURN(m->selections_,
                         registry->AddCounter("otaro_tuning_bit_width_selections_total",
                                              "Training batches by the bit-width chosen (BPS "
                                              "or the job's strategy).",
                                              {"bits"}));
  OTARO_ASSIGN_OR_RETURN(m->tokens_per_second_,
                         registry->AddGauge("otaro_tuning_tokens_per_second",
                                            "Training throughput of the running job.", {}));
  OTARO_ASSIGN_OR_RETURN(m->finished_,
                         registry->AddCounter("otaro_tuning_jobs_finished_total",
                                              "Tuning jobs that ended, by final state.",
                                              {"state"}));
  m->Idle();  // the unlabelled gauges exist (at 0) before the first job
  return m;
}

void TuningMetrics::Step(uint64_t step, uint64_t total_steps, int bits, double loss,
                         double tokens_per_second) {
  step_->WithLabels({}).Set(static_cast<double>(step));
  total_steps_->WithLabels({}).Set(static_cast<double>(total_steps));
  const std::string label = BitsLabel(bits);
  loss_->WithLabels({label}).Set(loss);
  selections_->WithLabels({label}).Increment();
  tokens_per_second_->WithLabels({}).Set(tokens_per_second);
}

void TuningMetrics::Evaluation(int bits, double heldout_loss) {
  heldout_loss_->WithLabels({BitsLabel(bits)}).Set(heldout_loss);
}

void TuningMetrics::JobFinished(otaro::v1::JobState state) {
  finished_->WithLabels({StateLabel(state)}).Increment();
  Idle();
}

void TuningMetrics::Idle() {
  step_->WithLabels({}).Set(0);
  total_steps_->WithLabels({}).Set(0);
  tokens_per_second_->WithLabels({}).Set(0);
}

}  // namespace otaro::server
