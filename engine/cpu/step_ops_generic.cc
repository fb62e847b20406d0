// StepOps for the generic build (BUILD sets its compiler flags; step_ops.cc picks it
// only when the CPU has that ISA).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/step_ops.h"

namespace otaro::engine::cpu::internal {
#define STEP_OPS_NAME kStepOpsGeneric
#include "engine/cpu/step_ops_impl.inc"

void ExpLanesGeneric(float* lanes) { Store16(lanes, Exp16(Load16(lanes))); }
}  // namespace otaro::engine::cpu::internal
