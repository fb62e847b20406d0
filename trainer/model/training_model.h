// The LLaMA-family training model on the CPU: a hand-written forward and
// backward (llm.c style) over Parameters, with every quantized linear (q, k, v,
// o, gate, up, down) computed with Q(W, m) = sefp::FakeQuantize of the current
// float32 masters, and the straight-through estimator in the backward
// (dL/dW := dL/dQ(W, m)), as OTARO.md specifies. It computes the same function
// as the engine (engine/cpu: HF rotate_half RoPE with the engine's
// frequencies, eager causal attention with GQA, SwiGLU, RMSNorm, q/k/v biases
// for qwen2, tied embeddings).
//
// Threads: GEMMs run on OpenBLAS, whose thread count is PROCESS-WIDE and is set
// to `threads` by the constructor (openblas_set_num_threads); attention and the
// elementwise ops run on the model's own pool of `threads` threads. The two
// never run at the same time.
//
// Memory: per layer the model keeps the residual inputs, the RMSNorm scales,
// post-RoPE q and k, v, the attention output and its log-normalizers, and the
// gate / up projections; the normalized inputs, SwiGLU output and attention
// probabilities are recomputed in the backward (cheap next to the GEMMs). The
// logits of the last forward are kept; their gradient is formed in row chunks.
#ifndef OTARO_TRAINER_MODEL_TRAINING_MODEL_H_
#define OTARO_TRAINER_MODEL_TRAINING_MODEL_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "sefp/format.h"
#include "sefp/kernels/thread_pool.h"
#include "trainer/batch.h"
#include "trainer/model/model_tensors.h"
#include "trainer/model/parameters.h"
#include "trainer/model/training_backend.h"

namespace otaro::trainer {

class TrainingModel final : public TrainingBackend {
 public:
  // Buffers sized for batches up to max_batch rows of max_seq positions.
  // `params` must outlive the model; its values may change between calls (the
  // optimizer updates them in place), its layout may not.
  TrainingModel(const Parameters* params, int64_t max_batch, int64_t max_seq, int threads);
  ~TrainingModel() override;
  TrainingModel(const TrainingModel&) = delete;
  TrainingModel& operator=(const TrainingModel&) = delete;

  // Forward with every quantized linear at Q(W, m) (recomputed from the current
  // masters each call); returns the mean next-token cross-entropy over scored
  // targets (0 when none is scored). Keeps what Backward needs.
  absl::StatusOr<double> Forward(const Batch& batch, const Precision& precision) override;

  // Backward of the last Forward: ADDS scale * dLoss/dparams into `grads` (the
  // layout of Parameters), so k micro-batches accumulate with scale = 1/k. May
  // be called more than once per Forward.
  absl::Status Backward(float scale, absl::Span<float> grads) override;

  // Evaluation: the summed NLL over scored targets and their count. Overwrites
  // the state of the last Forward (a Backward after it is refused).
  absl::StatusOr<std::pair<double, int64_t>> EvalNll(const Batch& batch,
                                                     const Precision& precision) override;

  // Logits [batch * seq_len, vocab] of the last Forward / EvalNll.
  absl::Span<const float> logits() const override;

  TrainingMemory Memory() const override;
  int64_t max_batch() const { return max_batch_; }
  int64_t max_seq() const { return max_seq_; }

 private:
  absl::Status CheckBatch(const Batch& batch) const;
  absl::Status PrepareWeights(const Precision& precision);
  // The forward up to the logits; returns (summed NLL, scored count).
  absl::StatusOr<std::pair<double, int64_t>> RunForward(const Batch& batch,
                                                        const Precision& precision);
  const float* LinearWeight(int64_t layer, int which) const;

  const Parameters* params_;
  const int64_t max_batch_, max_seq_;
  absl::Status init_status_;  // bad constructor arguments, returned by every call
  std::unique_ptr<sefp::ThreadPool> pool_;

  // Per layer: the parameter tensors and their offsets in quantized_.
  std::vector<LayerTensors> layer_tensors_;
  const Parameters::Tensor* embed_ = nullptr;
  const Parameters::Tensor* final_norm_ = nullptr;
  const Parameters::Tensor* lm_head_ = nullptr;  // embed_ when tied

  std::vector<float> rope_cos_, rope_sin_;  // [max_seq, head_dim / 2]

  // Q(W, m) of every quantized linear, one after the other (allocated at the
  // first quantized forward).
  std::vector<float> quantized_;
  int64_t quantized_size_ = 0;
  bool use_quantized_ = false;

  std::vector<float> saved_;    // per-layer activations (see LayerSaved)
  std::vector<float> scratch_;  // forward / backward working buffers
  std::vector<LayerSaved> layers_;
  // Final norm input, its scales and output, the logits.
  float* x_final_ = nullptr;
  float* r_final_ = nullptr;
  float* xf_ = nullptr;
  float* logits_ = nullptr;
  // Scratch views.
  float* h_ = nullptr;       // [N, H] normalized input of a block
  float* a_ = nullptr;       // [N, I] SwiGLU output
  float* dx_ = nullptr;      // [N, H] gradient of the residual stream
  float* dh_ = nullptr;      // [N, H]
  float* dq_ = nullptr;      // [N, q_dim]
  float* dk_ = nullptr;      // [N, kv_dim]
  float* dv_ = nullptr;      // [N, kv_dim]
  float* datt_ = nullptr;    // [N, q_dim]
  float* dg_ = nullptr;      // [N, I]
  float* du_ = nullptr;      // [N, I] (also dL/d SwiGLU output)
  float* dlogits_ = nullptr; // [kLogitChunk, V]

  // The batch of the last Forward (kept for the backward).
  Batch batch_;
  int64_t scored_ = 0;
  int64_t logit_rows_ = 0;
  bool have_forward_ = false;
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_MODEL_TRAINING_MODEL_H_
