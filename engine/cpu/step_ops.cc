#include "engine/cpu/step_ops.h"

namespace otaro::engine::cpu {

const StepOps& StepOpsFor(sefp::Isa isa) {
  switch (isa) {
    case sefp::Isa::kAvx512: return internal::kStepOpsAvx512;
    case sefp::Isa::kAvx2: return internal::kStepOpsAvx2;
    default: return internal::kStepOpsGeneric;
  }
}

}  // namespace otaro::engine::cpu
