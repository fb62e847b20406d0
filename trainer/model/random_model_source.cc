#include "trainer/model/random_model_source.h"

#include <random>

#include "absl/strings/match.h"

namespace otaro::trainer {

RandomModelSource::RandomModelSource(const engine::ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.2f);
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  for (const std::string& name : engine::ExpectedTensorNames(c)) {
    const bool bias = absl::EndsWith(name, ".bias");
    std::vector<int64_t> shape;
    if (absl::StrContains(name, "embed_tokens") || name == "lm_head.weight") {
      shape = {c.vocab_size, h};
    } else if (absl::EndsWith(name, "norm.weight")) {
      shape = {h};
    } else if (absl::StrContains(name, "q_proj")) {
      shape = bias ? std::vector<int64_t>{c.q_dim()} : std::vector<int64_t>{c.q_dim(), h};
    } else if (absl::StrContains(name, "k_proj") || absl::StrContains(name, "v_proj")) {
      shape = bias ? std::vector<int64_t>{c.kv_dim()} : std::vector<int64_t>{c.kv_dim(), h};
    } else if (absl::StrContains(name, "o_proj")) {
      shape = {h, c.q_dim()};
    } else if (absl::StrContains(name, "down_proj")) {
      shape = {h, f};
    } else {
      shape = {f, h};  // gate_proj, up_proj
    }
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(n);
    for (float& x : v) x = absl::EndsWith(name, "norm.weight") ? 1.0f + dist(rng) : dist(rng);
    tensors_[name] = {shape, std::move(v)};
  }
}

std::vector<std::string> RandomModelSource::Names() const {
  std::vector<std::string> names;
  for (const auto& entry : tensors_) names.push_back(entry.first);
  return names;
}

bool RandomModelSource::Has(absl::string_view name) const {
  return tensors_.count(std::string(name)) > 0;
}

absl::StatusOr<std::vector<int64_t>> RandomModelSource::Shape(absl::string_view name) const {
  auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) return absl::NotFoundError(name);
  return it->second.first;
}

absl::StatusOr<std::vector<float>> RandomModelSource::ReadFloat32(absl::string_view name) const {
  auto it = tensors_.find(std::string(name));
  if (it == tensors_.end()) return absl::NotFoundError(name);
  return it->second.second;
}

}  // namespace otaro::trainer
