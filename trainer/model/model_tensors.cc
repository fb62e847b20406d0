#include "trainer/model/model_tensors.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace otaro::trainer {

const char* const kLinearNames[kNumLinears] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

absl::StatusOr<ModelTensors> FindModelTensors(const Parameters& params, absl::string_view who) {
  const engine::ModelConfig& c = params.config();
  absl::Status missing;
  auto find = [&](const std::string& name) -> const Parameters::Tensor* {
    const Parameters::Tensor* t = params.Find(name);
    if (t == nullptr && missing.ok()) {
      missing = absl::InvalidArgumentError(
          absl::StrCat(who, ": parameters lack tensor '", name, "'"));
    }
    return t;
  };
  ModelTensors m;
  m.embed = find("model.embed_tokens.weight");
  m.final_norm = find("model.norm.weight");
  m.lm_head = c.tie_word_embeddings ? m.embed : find("lm_head.weight");
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    LayerTensors t;
    t.input_norm = find(p + "input_layernorm.weight");
    t.post_norm = find(p + "post_attention_layernorm.weight");
    for (int i = 0; i < kNumLinears; ++i) {
      t.linear[i] = find(absl::StrCat(p, kLinearNames[i], ".weight"));
      t.qoffset[i] = m.quantized_size;
      if (t.linear[i] != nullptr) m.quantized_size += t.linear[i]->size;
    }
    for (int i = 0; i < 3; ++i) {
      t.bias[i] = c.attention_bias ? find(absl::StrCat(p, kLinearNames[i], ".bias")) : nullptr;
    }
    m.layers.push_back(t);
  }
  if (!missing.ok()) return missing;
  return m;
}

}  // namespace otaro::trainer
