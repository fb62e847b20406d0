#include "engine/cpu/step_ops.h"

namespace otaro::engine::cpu {

float Exp(float x) {
  // The generic build's 16-lane Exp, one lane used: the same operations.
  float lanes[16] = {x};
  internal::ExpLanesGeneric(lanes);
  return lanes[0];
}

const StepOps& StepOpsFor(sefp::Isa isa) {
  switch (isa) {
    case sefp::Isa::kAvx512: return internal::kStepOpsAvx512;
    case sefp::Isa::kAvx2: return internal::kStepOpsAvx2;
    default: return internal::kStepOpsGeneric;
  }
}

}  // namespace otaro::engine::cpu
