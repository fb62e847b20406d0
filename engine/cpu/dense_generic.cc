#include "engine/cpu/dense.h"

#include <cstring>

namespace otaro::engine::cpu::internal {
#define DENSE_ROWS_NAME DenseRowsGeneric
#include "engine/cpu/dense_impl.inc"
}  // namespace otaro::engine::cpu::internal
