// Where each tensor of a LLaMA-family model sits in Parameters, resolved once by
// name, and what a training forward saves per layer. Both training models (CPU: training_model.h, CUDA:
// trainer/cuda/cuda_training_model.h) walk the model through this, so the
// naming rules (Hugging Face names, tied lm_head, q/k/v biases) live in one place.
#ifndef OTARO_TRAINER_MODEL_MODEL_TENSORS_H_
#define OTARO_TRAINER_MODEL_MODEL_TENSORS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/model/parameters.h"

namespace otaro::trainer {

// The quantized linear layers of a block, in this order.
inline constexpr int kNumLinears = 7;
enum LinearSlot { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
// Their Hugging Face names inside "model.layers.<l>.", e.g. "self_attn.q_proj".
extern const char* const kLinearNames[kNumLinears];

struct LayerTensors {
  const Parameters::Tensor* input_norm = nullptr;
  const Parameters::Tensor* linear[kNumLinears] = {};  // q, k, v, o, gate, up, down
  const Parameters::Tensor* bias[3] = {};              // q, k, v biases, or null without
  const Parameters::Tensor* post_norm = nullptr;
  // Offset of each linear's Q(W, m) when all of them are laid out one after
  // the other (layer by layer, in slot order): the models' quantized caches.
  int64_t qoffset[kNumLinears] = {};
};

struct ModelTensors {
  const Parameters::Tensor* embed = nullptr;
  const Parameters::Tensor* final_norm = nullptr;
  const Parameters::Tensor* lm_head = nullptr;  // == embed when tied
  std::vector<LayerTensors> layers;
  int64_t quantized_size = 0;  // weights of every quantized linear
};

// What the forward keeps of one layer for the backward (rows of the current
// batch, N = B * T): views into a model's activation buffer (host memory for
// the CPU model, device memory for the CUDA one). The normalized inputs, the
// SwiGLU output and the attention probabilities are recomputed instead.
struct LayerSaved {
  float* x_in;   // [N, H] residual stream entering the layer
  float* r1;     // [N] input RMSNorm scales
  float* q;      // [N, q_dim] after RoPE
  float* k;      // [N, kv_dim] after RoPE
  float* v;      // [N, kv_dim]
  float* att;    // [N, q_dim] attention output (o_proj input)
  float* lse;    // [B, heads, T] softmax log-normalizers
  float* x_mid;  // [N, H] residual after attention
  float* r2;     // [N] post-attention RMSNorm scales
  float* g;      // [N, I] gate projection
  float* u;      // [N, I] up projection
};

// INVALID_ARGUMENT "<who>: parameters lack tensor '<name>'" for the first
// tensor the config needs that `params` does not hold.
absl::StatusOr<ModelTensors> FindModelTensors(const Parameters& params, absl::string_view who);

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_MODEL_MODEL_TENSORS_H_
