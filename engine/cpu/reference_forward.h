// A plain float64 LLaMA forward for tests: no cache, no batching, no SIMD, the
// whole sequence at once, written from the HF modeling code (rotate_half RoPE,
// eager attention). Independent of cpu_backend.cc on purpose: it is what the
// backend is checked against at every SEFP precision (with Q(W, m) weights).
#ifndef OTARO_ENGINE_CPU_REFERENCE_FORWARD_H_
#define OTARO_ENGINE_CPU_REFERENCE_FORWARD_H_

#include <vector>

#include "engine/model/llama_model.h"

namespace otaro::engine::cpu::testing {

// Dense [out, in] weights of one layer's linears (q, k, v, o, gate, up, down).
struct DenseLayer {
  std::vector<float> w[7];
};

// The model's own float32 linears (Linear::dense, loaded with quantize off),
// as ReferenceForward's `layers`.
std::vector<DenseLayer> DenseLayersOf(const LlamaModel& model);

// Logits [tokens.size(), vocab] for every position. `layers` replaces the
// model's linear weights (e.g. Q(W, m) decoded); biases and everything else
// come from `model` (its float32 embedding and lm_head).
// int8_activations: every linear layer's input is first rounded to float32 and
// then to int8 by the SEFP kernels' rule (sefp/kernels/activations.h), as the
// CPU backend multiplies SEFP weights; the products stay float64.
std::vector<double> ReferenceForward(const LlamaModel& model, const std::vector<DenseLayer>& layers,
                                     const std::vector<int>& tokens,
                                     bool int8_activations = false);

}  // namespace otaro::engine::cpu::testing

#endif  // OTARO_ENGINE_CPU_REFERENCE_FORWARD_H_
