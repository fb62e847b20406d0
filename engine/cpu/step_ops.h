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

// The attention of `heads` query heads that share one KV head (GQA) over n
// cached positions, stored in blocks of block_size positions: keys[b] is block
// b's keys TRANSPOSED, [d][block_size] (key t of position s at keys[b][t *
// block_size + s]), values[b] its values [block_size][d]. For each head g
// (query q + g d, scratch scores + g n, output out + g d), per position: score =
// (sum over t in order of q[t] k[t], each term a product then a sum) * scale;
// the softmax uses Exp (below); out[t] = (sum over positions in order of p_j
// v_j[t]) * (1 / sum_j p_j). Each head's result is the same bits whatever
// `heads` is: the heads are grouped only so that each key and value is loaded
// once for all of them.
struct AttentionArgs {
  const float* q;
  int64_t d;
  int64_t n;
  int64_t block_size;
  const float* const* keys;
  const float* const* values;
  float scale;
  float* scores;
  float* out;
  int64_t heads = 1;
};

struct StepOps {
  void (*attend)(const AttentionArgs& args);
  // out = weight * (x * 1/sqrt(mean(x^2) + eps)); the mean of squares in double
  // over 8 lane partial sums.
  void (*rms_norm)(const float* x, const float* weight, int64_t n, double eps, float* out);
  // gate[t] = SiLU(gate[t]) * up[t] = gate / (1 + Exp(-gate)) * up.
  void (*swiglu)(float* gate, const float* up, int64_t n);
  // acc[t] += v[t].
  void (*add)(float* acc, const float* v, int64_t n);
};

// e^x as every build computes it (a fixed range reduction and polynomial in
// IEEE operations, within 2 ulp of e^x; x clamped to [-87.3, 88.3], so always finite).
float Exp(float x);

// The build for `isa` (kAuto must be resolved first; kScalar = the generic build).
const StepOps& StepOpsFor(sefp::Isa isa);

namespace internal {
extern const StepOps kStepOpsGeneric;
extern const StepOps kStepOpsAvx2;
extern const StepOps kStepOpsAvx512;
// Exp on 16 floats in place (the generic build; Exp() uses it).
void ExpLanesGeneric(float* lanes);
}  // namespace internal

}  // namespace otaro::engine::cpu

#endif  // OTARO_ENGINE_CPU_STEP_OPS_H_
