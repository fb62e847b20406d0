// The LLaMA-family training model on one CUDA GPU: the same function and the
// same contract as the CPU TrainingModel (trainer/model/training_model.h), so
// the tuning loop can use either (training_backend.h). Forward and backward
// follow training_model.cc step for step: embedding, RMSNorm, q/k/v (+ bias for
// qwen2) / o, HF rotate_half RoPE with the engine's frequencies, causal GQA
// attention, SwiGLU, tied or untied lm_head, cross-entropy with kIgnoreTarget;
// every q/k/v/o/gate/up/down at Q(W, m) = sefp fake quantization of the current
// masters (the rules of sefp/fake_quant_rules.h, on the device), with the
// straight-through estimator in the backward. Matrix products run on cuBLASLt
// in float32 (no TF32); the rest on the kernels of kernels.h.
//
// Host / device contract (the simplest that matches the CPU model's):
//   * The float32 masters stay in the caller's Parameters (host). Every Forward
//     and EvalNll copies all of them to the device first, so the optimizer may
//     update them in place between calls, as with the CPU model; Backward uses
//     the values of the last Forward. Cost: one host-to-device copy of the
//     parameters per forward (0.5 GB for a 135M model).
//   * Backward computes the gradient on the device, copies it back and ADDS it
//     (already multiplied by `scale`) into the caller's host span.
//   * logits() copies the last forward's logits to a host buffer on its first
//     call after that forward (an empty span if the copy fails; logged).
// Memory mirrors the CPU model: per layer the residual inputs, RMSNorm scales,
// post-RoPE q and k, v, the attention output and log-normalizers, the gate / up
// projections; normalized inputs, SwiGLU output and attention probabilities
// are recomputed in the backward; the logits gradient is formed in row chunks.
// All device memory is allocated by Create (the Q(W, m) cache at the first
// quantized forward), so running out of it is an error there, not later.
//
// Not thread-safe; one caller at a time (any thread: each call makes the
// model's device current on the calling thread).
#ifndef OTARO_TRAINER_CUDA_CUDA_TRAINING_MODEL_H_
#define OTARO_TRAINER_CUDA_CUDA_TRAINING_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "trainer/batch.h"
#include "trainer/cuda/device_context.h"
#include "trainer/cuda/matmul.h"
#include "trainer/model/training_backend.h"
#include "trainer/model/model_tensors.h"
#include "trainer/model/parameters.h"
#include "trainer/model/training_model.h"

namespace otaro::trainer {

class CudaTrainingModel : public TrainingBackend {
 public:
  // Buffers for batches up to max_batch rows of max_seq positions on CUDA
  // device `device`. `params` must outlive the model; its values may change
  // between calls, its layout may not. Errors: FAILED_PRECONDITION without a
  // usable device, RESOURCE_EXHAUSTED when the buffers do not fit,
  // INVALID_ARGUMENT for bad arguments or a model the kernels do not support
  // (head_dim over 256).
  static absl::StatusOr<std::unique_ptr<CudaTrainingModel>> Create(const Parameters* params,
                                                                   int64_t max_batch,
                                                                   int64_t max_seq,
                                                                   int device = 0);
  ~CudaTrainingModel() override;
  CudaTrainingModel(const CudaTrainingModel&) = delete;
  CudaTrainingModel& operator=(const CudaTrainingModel&) = delete;

  absl::StatusOr<double> Forward(const Batch& batch, const Precision& precision) override;
  absl::Status Backward(float scale, absl::Span<float> grads) override;
  absl::StatusOr<std::pair<double, int64_t>> EvalNll(const Batch& batch,
                                                     const Precision& precision) override;
  absl::Span<const float> logits() const override;
  // Device bytes: activations (saved + logits), scratch (working buffers,
  // dlogits chunk, RoPE tables, the device gradient, the cuBLASLt workspace),
  // the Q(W, m) cache, and the device copy of the masters.
  TrainingMemory Memory() const override;

  int64_t max_batch() const { return max_batch_; }
  int64_t max_seq() const { return max_seq_; }
  const std::string& device_name() const { return context_->name(); }
  // The device's used memory as the driver reports it (every process, the CUDA
  // context and cuBLASLt's own allocations included).
  absl::StatusOr<int64_t> DeviceBytesInUse() const { return context_->DeviceBytesInUse(); }

 private:
  CudaTrainingModel(const Parameters* params, int64_t max_batch, int64_t max_seq);
  absl::Status Init(int device);
  absl::Status PrepareWeights(const Precision& precision);
  absl::StatusOr<std::pair<double, int64_t>> RunForward(const Batch& batch,
                                                        const Precision& precision);
  absl::Status RunBackward(float scale);
  const float* LinearWeight(int64_t layer, int which) const;
  float* Param(int64_t offset) const { return params_dev_.as<float>() + offset; }
  float* Grad(int64_t offset) const { return grads_dev_.as<float>() + offset; }
  // y = x W^T (+ bias), or y += that, on the device.
  absl::Status Linear(const float* x, const float* w, const float* bias, int64_t n, int64_t in,
                      int64_t out, bool accumulate, float* y);
  // dx (= or +=) dy W, dW += dy^T x, dbias += column sums of dy.
  absl::Status LinearBackward(const float* dy, const float* x, const float* w, int64_t n,
                              int64_t in, int64_t out, float* dx, bool accumulate_dx, float* dw,
                              float* dbias);

  const Parameters* params_;
  const int64_t max_batch_, max_seq_;
  int64_t logit_chunk_ = 0;  // rows of dlogits formed at once

  // Declared before the buffers, so that it is destroyed after them.
  std::unique_ptr<cuda::DeviceContext> context_;
  std::unique_ptr<cuda::Matmul> matmul_;

  std::vector<LayerTensors> layer_tensors_;
  const Parameters::Tensor* embed_ = nullptr;
  const Parameters::Tensor* final_norm_ = nullptr;
  const Parameters::Tensor* lm_head_ = nullptr;  // embed_ when tied
  int64_t quantized_size_ = 0;
  bool use_quantized_ = false;

  cuda::DeviceBuffer params_dev_;     // the masters, Parameters layout
  cuda::DeviceBuffer grads_dev_;      // the gradient of one Backward
  cuda::DeviceBuffer quantized_dev_;  // Q(W, m) of every linear (at the first quantized forward)
  cuda::DeviceBuffer non_finite_dev_; // per linear: first non-finite weight (fake_quant_kernel.h)
  cuda::DeviceBuffer rope_dev_;       // cos then sin, [max_seq, head_dim / 2] each
  cuda::DeviceBuffer tokens_dev_;     // inputs then targets, int32 [N] each
  cuda::DeviceBuffer nll_dev_;        // per-row NLL, double [N]
  cuda::DeviceBuffer saved_dev_;      // per-layer activations, final norm, logits
  cuda::DeviceBuffer scratch_dev_;    // working buffers

  std::vector<LayerSaved> layers_;
  float* x_final_ = nullptr;  // [N, H] final norm input
  float* r_final_ = nullptr;  // [N] its scales
  float* xf_ = nullptr;       // [N, H] its output
  float* logits_ = nullptr;   // [N, V]
  float* h_ = nullptr;        // [N, H] normalized input of a block
  float* a_ = nullptr;        // [N, I] SwiGLU output
  float* dx_ = nullptr;       // [N, H] gradient of the residual stream
  float* dh_ = nullptr;       // [N, H]
  float* dq_ = nullptr;       // [N, q_dim]
  float* dk_ = nullptr;       // [N, kv_dim]
  float* dv_ = nullptr;       // [N, kv_dim]
  float* datt_ = nullptr;     // [N, q_dim]
  float* dg_ = nullptr;       // [N, I]
  float* du_ = nullptr;       // [N, I] (also dL/d SwiGLU output)
  float* delta_ = nullptr;    // [N, heads] attention backward scratch
  float* dlogits_ = nullptr;  // [logit_chunk_, V]

  // The batch of the last forward (kept for the backward).
  Batch batch_;
  int64_t scored_ = 0;
  int64_t logit_rows_ = 0;
  bool have_forward_ = false;
  std::vector<float> grad_host_;  // the downloaded gradient, before it is added
  std::vector<double> nll_host_;
  mutable std::vector<float> logits_host_;
  mutable bool logits_host_valid_ = false;
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_CUDA_CUDA_TRAINING_MODEL_H_
