// The shape of a LLaMA-family model, whatever file it came from. Hugging Face
// config.json and GGUF metadata both parse into this; everything downstream
// (SEFP conversion, the engines, the trainer) reads only this.
#ifndef OTARO_ENGINE_MODEL_MODEL_CONFIG_H_
#define OTARO_ENGINE_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace otaro::engine::gguf {
class GgufFile;
}

namespace otaro::engine {

// LLaMA 3.1-style RoPE frequency scaling ("rope_type": "llama3").
struct Llama3RopeScaling {
  double factor = 0;  // 0 = no scaling
  double low_freq_factor = 1;
  double high_freq_factor = 4;
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  // "llama" (LLaMA 1/2/3, TinyLlama, SmolLM, Mistral without sliding window)
  // or "qwen2" (q/k/v biases).
  std::string architecture;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000;
  Llama3RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  int64_t bos_token_id = -1;
  // All ids that end generation (LLaMA 3 lists several).
  std::vector<int64_t> eos_token_ids;

  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  // Parameters of the whole model (embeddings once when tied).
  int64_t ParameterCount() const;
  // Parameters of the linear layers SEFP quantizes (q, k, v, o, gate, up, down).
  int64_t LinearParameterCount() const;
};

// Parses a Hugging Face config.json (and, if non-empty, generation_config.json,
// whose bos/eos take precedence). Unsupported architectures and inconsistent
// shapes are InvalidArgument errors naming the key.
absl::StatusOr<ModelConfig> ParseHfConfig(absl::string_view config_json,
                                          absl::string_view generation_config_json = "");

// Reads the same from GGUF metadata ({arch}.embedding_length, ...).
absl::StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file);

// The config as JSON (our own keys, not HF's), for SEFP checkpoints; the
// reader validates as for any other source.
std::string ModelConfigToJson(const ModelConfig& config);
absl::StatusOr<ModelConfig> ModelConfigFromJson(absl::string_view json);

// Checks the numbers fit together (heads divide hidden, kv heads divide heads, ...).
absl::Status ValidateConfig(const ModelConfig& config);

// RoPE inverse frequencies [head_dim / 2]: HF's default, then LLaMA 3.1's
// scaling (transformers' _compute_llama3_parameters), computed in double and
// rounded to float32 as HF holds them. The engine and the trainer both rotate
// with these, so training sees the function the engine serves.
std::vector<float> RopeInverseFrequencies(const ModelConfig& config);

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_MODEL_MODEL_CONFIG_H_
