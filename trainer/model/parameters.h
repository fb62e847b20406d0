// The float32 master weights of a LLaMA-family model for training, in ONE
// contiguous buffer (so that optimizers, gradient clipping and LAA's
// accumulator work on one span), tensor by tensor in ExpectedTensorNames order
// with the Hugging Face names and shapes. Gradients use the same layout
// (Parameters::ZerosLike), so a tensor's gradient is TensorIn(grads, tensor).
#ifndef OTARO_TRAINER_MODEL_PARAMETERS_H_
#define OTARO_TRAINER_MODEL_PARAMETERS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/model/model_config.h"
#include "engine/model/tensor_source.h"

namespace otaro::trainer {

class Parameters {
 public:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;  // HF order; linear weights [out, in]
    int64_t offset = 0;          // into values()
    int64_t size = 0;
    // One of the seven linear projections (q, k, v, o, gate, up, down weights)
    // that SEFP quantizes; embeddings, norms, biases and lm_head are not.
    bool quantized = false;
  };

  // Reads every tensor the config expects from `source` (converted to float32);
  // errors name the missing or misshapen tensor.
  static absl::StatusOr<Parameters> FromSource(const engine::TensorSource& source,
                                               const engine::ModelConfig& config);
  // Same layout, all zeros (gradients, optimizer state).
  static Parameters ZerosLike(const Parameters& other);

  const engine::ModelConfig& config() const { return config_; }
  const std::vector<Tensor>& tensors() const { return tensors_; }
  // nullptr if there is no tensor of that name.
  const Tensor* Find(absl::string_view name) const;

  absl::Span<float> values() { return absl::MakeSpan(values_); }
  absl::Span<const float> values() const { return values_; }
  // The values of one tensor; an EMPTY span if there is no such tensor (check
  // with Find when the name is not known to exist).
  absl::Span<float> Get(absl::string_view name);
  absl::Span<const float> Get(absl::string_view name) const;

 private:
  engine::ModelConfig config_;
  std::vector<Tensor> tensors_;
  std::vector<float> values_;
};

// The part of a buffer laid out like Parameters that holds `tensor`.
inline absl::Span<float> TensorIn(absl::Span<float> buffer, const Parameters::Tensor& tensor) {
  return buffer.subspan(tensor.offset, tensor.size);
}
inline absl::Span<const float> TensorIn(absl::Span<const float> buffer,
                                        const Parameters::Tensor& tensor) {
  return buffer.subspan(tensor.offset, tensor.size);
}

// A TensorSource over `params` (HF names and shapes, storage "F32"), so that the
// SEFP checkpoint writer and the model loader take trained weights without a
// file. It reads the values at each call; `params` must outlive it.
std::unique_ptr<engine::TensorSource> AsTensorSource(const Parameters& params);

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_MODEL_PARAMETERS_H_
