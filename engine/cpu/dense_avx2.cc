// Compiled with -mavx2 -mfma (contraction off); called only after cpuid says
// the CPU has AVX2 (dense.cc).
#include "engine/cpu/dense.h"

#include <cstring>

namespace otaro::engine::cpu::internal {
#define DENSE_ROWS_NAME DenseRowsAvx2
#include "engine/cpu/dense_impl.inc"
}  // namespace otaro::engine::cpu::internal
