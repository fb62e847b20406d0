#include "eval/precision_sweep.h"

#include "common/status_macros.h"
#include "sefp/format.h"

namespace otaro::eval {

absl::Status SweepPrecisions(const PrecisionSweep& sweep, const std::vector<int>& bits,
                             const std::function<absl::Status(const SweepPoint&)>& score) {
  for (const bool quantized : {true, false}) {
    std::vector<int> group;
    for (int b : bits) {
      if ((b != 0) == quantized) group.push_back(b);
    }
    if (group.empty()) continue;
    OTARO_ASSIGN_OR_RETURN(std::unique_ptr<engine::LlamaModel> model,
                           sweep.build_model(quantized));
    OTARO_ASSIGN_OR_RETURN(std::unique_ptr<engine::cpu::CpuBackend> backend,
                           engine::cpu::CpuBackend::Create(model.get(), sweep.backend));
    for (int b : group) {
      OTARO_RETURN_IF_ERROR(score({*model, *backend, b, b == 0 ? sefp::kMasterBits : b}));
    }
  }
  return absl::OkStatus();
}

}  // namespace otaro::eval
