// The element-wise and attention arithmetic of a forward step, outside the
// linear layers: one implementation (step_ops_impl.inc) compiled per ISA with
// contraction off, so every build performs the same IEEE operations in the same
// order and agrees bit for bit (the backend's ISA invariance), while the AVX2 /
// AVX-512 builds run them in vector registers. Each function computes one row
// (or one head of one row): a row's results never depend on other rows.
#ifndef OTARO_ENGINE_CPU_STEP_OPS_H_
#define OTARO_ENGINE_CPU_STEP_OPS_H_

#include <cstdint>

#include "sefp/kernels/gemm.h"

namespace otaro::engine::cpu {

struct StepOps {
  // sum_t a[t] b[t]: 16 lane partial sums over t in steps of 16 (the tail
  // zero-padded), then a fixed tree of the lanes.
  float (*dot)(const float* a, const float* b, int64_t n);
  // acc[t] += p * v[t] (a product, then a sum: two roundings).
  void (*axpy)(float p, const float* v, float* acc, int64_t n);
  // out = weight * (x * 1/sqrt(mean(x^2) + eps)); the mean of squares in double
  // over 8 lane partial sums.
  void (*rms_norm)(const float* x, const float* weight, int64_t n, double eps, float* out);
  // gate[t] = SiLU(gate[t]) * up[t] = gate / (1 + exp(-gate)) * up.
  void (*swiglu)(float* gate, const float* up, int64_t n);
  // acc[t] += v[t].
  void (*add)(float* acc, const float* v, int64_t n);
};

// The build for `isa` (kAuto must be resolved first; kScalar = the generic build).
const StepOps& StepOpsFor(sefp::Isa isa);

namespace internal {
extern const StepOps kStepOpsGeneric;
extern const StepOps kStepOpsAvx2;
extern const StepOps kStepOpsAvx512;
}  // namespace internal

}  // namespace otaro::engine::cpu

#endif  // OTARO_ENGINE_CPU_STEP_OPS_H_
