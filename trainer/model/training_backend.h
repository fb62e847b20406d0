// The interface the tuning loop trains through, and the types it speaks in.
// Implementations: the CPU TrainingModel (training_model.h) and the CUDA one
// (trainer/cuda/cuda_training_model.h); trainer/training_device.h makes the
// one a TuneOptions device names. Both compute the same function; the
// contract below is normative and trainer/training_backend_contract_test
// checks every implementation this build has a device for:
//   Forward(batch, precision)  mean next-token cross-entropy over scored
//                              targets, every quantized linear at Q(W, m);
//   Backward(scale, grads)     ADDS scale * dLoss/dparams into `grads` (the
//                              Parameters layout, host memory), repeatable;
//   EvalNll(batch, precision)  summed NLL and scored count (no Backward after);
//   logits()                   [batch * seq_len, vocab] of the last forward;
//   Memory()                   the model's bytes (the device's, for CUDA).
#ifndef OTARO_TRAINER_MODEL_TRAINING_BACKEND_H_
#define OTARO_TRAINER_MODEL_TRAINING_BACKEND_H_

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "sefp/format.h"
#include "trainer/batch.h"

namespace otaro::trainer {

struct Precision {
  // false: plain float32 linears (the "fp" strategy, unquantized evaluation).
  bool quantized = false;
  int m = sefp::kMasterBits;  // mantissa bits, 2..8, when quantized
  sefp::Reconstruction mode = sefp::Reconstruction::kMidpoint;
};

// Bytes held by a TrainingModel (the parameters and gradients are the caller's).
struct TrainingMemory {
  int64_t activation_bytes = 0;       // saved per-layer activations + logits
  int64_t scratch_bytes = 0;          // working buffers shared by all layers
  int64_t quantized_weight_bytes = 0; // the Q(W, m) cache of the linear layers
  int64_t parameter_bytes = 0;        // the float32 masters (not owned, for the total)
  int64_t Total() const {
    return activation_bytes + scratch_bytes + quantized_weight_bytes + parameter_bytes;
  }
};

// OK iff `batch` fits a model taking up to max_batch rows of max_seq positions
// over a vocabulary of `vocab` ids: its shape, its sizes, every input id and
// every target (an id or kIgnoreTarget). Errors name the offending position.
// The CPU and the CUDA training models (trainer/cuda) both check with this.
absl::Status CheckTrainingBatch(const Batch& batch, int64_t max_batch, int64_t max_seq,
                                int64_t vocab);

class TrainingBackend {
 public:
  virtual ~TrainingBackend() = default;
  virtual absl::StatusOr<double> Forward(const Batch& batch, const Precision& precision) = 0;
  virtual absl::Status Backward(float scale, absl::Span<float> grads) = 0;
  virtual absl::StatusOr<std::pair<double, int64_t>> EvalNll(const Batch& batch,
                                                             const Precision& precision) = 0;
  virtual absl::Span<const float> logits() const = 0;
  virtual TrainingMemory Memory() const = 0;
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_MODEL_TRAINING_BACKEND_H_
