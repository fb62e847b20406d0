// A tiny random model held in memory, for tests of the paths a real checkpoint
// such as stories260K does not take (q/k/v biases, an untied lm_head, scaled
// RoPE): every tensor engine::ExpectedTensorNames(config) lists, with the shape
// the loader expects, drawn from N(0, 0.2) (norm weights from 1 + N(0, 0.2)).
#ifndef OTARO_TRAINER_MODEL_RANDOM_MODEL_SOURCE_H_
#define OTARO_TRAINER_MODEL_RANDOM_MODEL_SOURCE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/model/tensor_source.h"

namespace otaro::trainer {

class RandomModelSource : public engine::TensorSource {
 public:
  RandomModelSource(const engine::ModelConfig& config, uint32_t seed);

  std::vector<std::string> Names() const override;
  bool Has(absl::string_view name) const override;
  absl::StatusOr<std::vector<int64_t>> Shape(absl::string_view name) const override;
  absl::StatusOr<std::vector<float>> ReadFloat32(absl::string_view name) const override;
  std::string StorageType(absl::string_view) const override { return "F32"; }
  std::string Describe() const override { return "random test model"; }

 private:
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> tensors_;
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_MODEL_RANDOM_MODEL_SOURCE_H_
