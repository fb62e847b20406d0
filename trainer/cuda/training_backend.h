// A training model on some device, as the tuning loop uses it: the CPU
// TrainingModel (trainer/model/training_model.h) or the CUDA one
// (cuda_training_model.h). Both compute the same function with the same
// contract; the comments of TrainingModel are normative:
//   Forward(batch, precision)  mean next-token cross-entropy over scored
//                              targets, every quantized linear at Q(W, m);
//   Backward(scale, grads)     ADDS scale * dLoss/dparams into `grads` (the
//                              Parameters layout, host memory), repeatable;
//   EvalNll(batch, precision)  summed NLL and scored count (no Backward after);
//   logits()                   [batch * seq_len, vocab] of the last forward;
//   Memory()                   the model's bytes (the device's, for CUDA).
// CreateTrainingBackend (training_device.h) makes one for a TuneOptions device.
#ifndef OTARO_TRAINER_CUDA_TRAINING_BACKEND_H_
#define OTARO_TRAINER_CUDA_TRAINING_BACKEND_H_

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "trainer/batch.h"
#include "trainer/model/training_model.h"

namespace otaro::trainer {

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

#endif  // OTARO_TRAINER_CUDA_TRAINING_BACKEND_H_
