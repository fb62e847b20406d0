// StepOps for the avx512 build (BUILD sets its compiler flags; step_ops.cc picks it
// only when the CPU has that ISA).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/cpu/step_ops.h"

namespace otaro::engine::cpu::internal {
#define STEP_OPS_NAME kStepOpsAvx512
#include "engine/cpu/step_ops_impl.inc"
}  // namespace otaro::engine::cpu::internal
