#include "engine/model/model_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/formats/gguf.h"
#include "nlohmann/json.hpp"

namespace otaro::engine {
namespace {

using nlohmann::json;

absl::Status ConfigError(absl::string_view key, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("model config '", key, "': ", problem));
}

absl::StatusOr<int64_t> RequiredInt(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return ConfigError(key, "missing");
  if (!it->is_number_integer()) return ConfigError(key, "must be an integer");
  return it->get<int64_t>();
}

int64_t OptionalInt(const json& j, const char* key, int64_t fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

double OptionalNumber(const json& j, const char* key, double fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

bool OptionalBool(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// eos_token_id may be one id or a list (LLaMA 3.1).
std::vector<int64_t> TokenIds(const json& j, const char* key) {
  std::vector<int64_t> ids;
  auto it = j.find(key);
  if (it == j.end()) return ids;
  if (it->is_number_integer()) ids.push_back(it->get<int64_t>());
  if (it->is_array()) {
    for (const auto& v : *it) {
      if (v.is_number_integer()) ids.push_back(v.get<int64_t>());
    }
  }
  return ids;
}

}  // namespace

int64_t ModelConfig::LinearParameterCount() const {
  int64_t attention = hidden_size * q_dim() * 2 + hidden_size * kv_dim() * 2;
  int64_t mlp = 3 * hidden_size * intermediate_size;
  return num_layers * (attention + mlp);
}

int64_t ModelConfig::ParameterCount() const {
  int64_t norms = num_layers * 2 * hidden_size + hidden_size;
  int64_t biases = attention_bias ? num_layers * (q_dim() + 2 * kv_dim()) : 0;
  int64_t embeddings = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2);
  return LinearParameterCount() + norms + biases + embeddings;
}

absl::Status ValidateConfig(const ModelConfig& c) {
  auto positive = [](const char* key, int64_t v) -> absl::Status {
    if (v <= 0) return ConfigError(key, absl::StrCat("must be positive, got ", v));
    return absl::OkStatus();
  };
  OTARO_RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  OTARO_RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  OTARO_RETURN_IF_ERROR(positive("intermediate_size", c.intermediate_size));
  OTARO_RETURN_IF_ERROR(positive("num_hidden_layers", c.num_layers));
  OTARO_RETURN_IF_ERROR(positive("num_attention_heads", c.num_heads));
  OTARO_RETURN_IF_ERROR(positive("num_key_value_heads", c.num_kv_heads));
  OTARO_RETURN_IF_ERROR(positive("head_dim", c.head_dim));
  OTARO_RETURN_IF_ERROR(positive("max_position_embeddings", c.max_position));
  if (c.num_heads % c.num_kv_heads != 0) {
    return ConfigError("num_key_value_heads",
                       absl::StrCat(c.num_kv_heads, " does not divide num_attention_heads ",
                                    c.num_heads));
  }
  if (c.head_dim % 2 != 0) return ConfigError("head_dim", "must be even for RoPE");
  if (!(c.rms_norm_eps > 0)) return ConfigError("rms_norm_eps", "must be positive");
  if (!(c.rope_theta > 0)) return ConfigError("rope_theta", "must be positive");
  if (c.bos_token_id >= c.vocab_size) return ConfigError("bos_token_id", "outside the vocabulary");
  for (int64_t eos : c.eos_token_ids) {
    if (eos < 0 || eos >= c.vocab_size) return ConfigError("eos_token_id", "outside the vocabulary");
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseHfConfig(absl::string_view config_json,
                                          absl::string_view generation_config_json) {
  json j = json::parse(config_json.begin(), config_json.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("config.json is not a JSON object");
  }
  std::string model_type = j.value("model_type", "");
  std::string arch_class;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() &&
                                         (*it)[0].is_string()) {
    arch_class = (*it)[0].get<std::string>();
  }
  ModelConfig c;
  if (model_type == "llama" || arch_class == "LlamaForCausalLM") {
    c.architecture = "llama";
  } else if (model_type == "mistral" || arch_class == "MistralForCausalLM") {
    c.architecture = "llama";  // Same graph; only a sliding window would differ.
  } else if (model_type == "qwen2" || arch_class == "Qwen2ForCausalLM") {
    c.architecture = "qwen2";
  } else {
    return ConfigError("model_type",
                       absl::StrCat("unsupported architecture '", model_type, "' (",
                                    arch_class,
                                    "); supported: llama (LLaMA 2/3, TinyLlama, SmolLM), "
                                    "mistral without sliding window, qwen2"));
  }
  OTARO_ASSIGN_OR_RETURN(c.vocab_size, RequiredInt(j, "vocab_size"));
  OTARO_ASSIGN_OR_RETURN(c.hidden_size, RequiredInt(j, "hidden_size"));
  OTARO_ASSIGN_OR_RETURN(c.intermediate_size, RequiredInt(j, "intermediate_size"));
  OTARO_ASSIGN_OR_RETURN(c.num_layers, RequiredInt(j, "num_hidden_layers"));
  OTARO_ASSIGN_OR_RETURN(c.num_heads, RequiredInt(j, "num_attention_heads"));
  c.num_kv_heads = OptionalInt(j, "num_key_value_heads", c.num_heads);
  c.head_dim = OptionalInt(j, "head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
  c.max_position = OptionalInt(j, "max_position_embeddings", 2048);
  c.rms_norm_eps = OptionalNumber(j, "rms_norm_eps", 1e-6);
  c.rope_theta = OptionalNumber(j, "rope_theta", 10000);
  c.tie_word_embeddings = OptionalBool(j, "tie_word_embeddings", false);
  c.attention_bias = OptionalBool(j, "attention_bias", c.architecture == "qwen2");
  if (OptionalBool(j, "mlp_bias", false)) return ConfigError("mlp_bias", "MLP biases are not supported");
  if (std::string act = j.value("hidden_act", "silu"); act != "silu") {
    return ConfigError("hidden_act", absl::StrCat("'", act, "' is not supported (silu only)"));
  }
  if (auto it = j.find("sliding_window"); it != j.end() && it->is_number_integer() &&
                                          it->get<int64_t>() < c.max_position &&
                                          OptionalBool(j, "use_sliding_window", true)) {
    return ConfigError("sliding_window", "sliding-window attention is not supported");
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && it->is_object()) {
    std::string type = it->value("rope_type", it->value("type", ""));
    if (type == "llama3") {
      c.rope_scaling.factor = OptionalNumber(*it, "factor", 8);
      c.rope_scaling.low_freq_factor = OptionalNumber(*it, "low_freq_factor", 1);
      c.rope_scaling.high_freq_factor = OptionalNumber(*it, "high_freq_factor", 4);
      c.rope_scaling.original_max_position =
          OptionalInt(*it, "original_max_position_embeddings", 8192);
    } else if (!type.empty() && type != "default") {
      return ConfigError("rope_scaling", absl::StrCat("rope type '", type, "' is not supported"));
    }
  }
  c.bos_token_id = OptionalInt(j, "bos_token_id", -1);
  c.eos_token_ids = TokenIds(j, "eos_token_id");
  if (!generation_config_json.empty()) {
    json g = json::parse(generation_config_json.begin(), generation_config_json.end(), nullptr,
                         false);
    if (!g.is_discarded() && g.is_object()) {
      c.bos_token_id = OptionalInt(g, "bos_token_id", c.bos_token_id);
      if (auto ids = TokenIds(g, "eos_token_id"); !ids.empty()) c.eos_token_ids = ids;
    }
  }
  OTARO_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j = {{"architecture", c.architecture},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_layers", c.num_layers},
            {"num_heads", c.num_heads},
            {"num_kv_heads", c.num_kv_heads},
            {"head_dim", c.head_dim},
            {"max_position", c.max_position},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope_theta},
            {"rope_scaling",
             {{"factor", c.rope_scaling.factor},
              {"low_freq_factor", c.rope_scaling.low_freq_factor},
              {"high_freq_factor", c.rope_scaling.high_freq_factor},
              {"original_max_position", c.rope_scaling.original_max_position}}},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"attention_bias", c.attention_bias},
            {"bos_token_id", c.bos_token_id},
            {"eos_token_ids", c.eos_token_ids}};
  return j.dump();
}

absl::StatusOr<ModelConfig> ModelConfigFromJson(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("model config JSON: not a JSON object");
  }
  ModelConfig c;
  try {
    c.architecture = j.at("architecture").get<std::string>();
    c.vocab_size = j.at("vocab_size").get<int64_t>();
    c.hidden_size = j.at("hidden_size").get<int64_t>();
    c.intermediate_size = j.at("intermediate_size").get<int64_t>();
    c.num_layers = j.at("num_layers").get<int64_t>();
    c.num_heads = j.at("num_heads").get<int64_t>();
    c.num_kv_heads = j.at("num_kv_heads").get<int64_t>();
    c.head_dim = j.at("head_dim").get<int64_t>();
    c.max_position = j.at("max_position").get<int64_t>();
    c.rms_norm_eps = j.at("rms_norm_eps").get<double>();
    c.rope_theta = j.at("rope_theta").get<double>();
    const json& rs = j.at("rope_scaling");
    c.rope_scaling.factor = rs.at("factor").get<double>();
    c.rope_scaling.low_freq_factor = rs.at("low_freq_factor").get<double>();
    c.rope_scaling.high_freq_factor = rs.at("high_freq_factor").get<double>();
    c.rope_scaling.original_max_position = rs.at("original_max_position").get<int64_t>();
    c.tie_word_embeddings = j.at("tie_word_embeddings").get<bool>();
    c.attention_bias = j.at("attention_bias").get<bool>();
    c.bos_token_id = j.at("bos_token_id").get<int64_t>();
    c.eos_token_ids = j.at("eos_token_ids").get<std::vector<int64_t>>();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("model config JSON: ", e.what()));
  }
  if (c.architecture != "llama" && c.architecture != "qwen2") {
    return ConfigError("architecture", absl::StrCat("unsupported '", c.architecture, "'"));
  }
  OTARO_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

absl::StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file) {
  OTARO_ASSIGN_OR_RETURN(absl::string_view arch, file.GetString("general.architecture"));
  ModelConfig c;
  if (arch == "llama" || arch == "mistral") {
    c.architecture = "llama";
  } else if (arch == "qwen2") {
    c.architecture = "qwen2";
    c.attention_bias = true;
  } else {
    return ConfigError("general.architecture",
                       absl::StrCat("unsupported GGUF architecture '", arch,
                                    "'; supported: llama, mistral, qwen2"));
  }
  auto key = [&](absl::string_view name) { return absl::StrCat(arch, ".", name); };
  auto required = [&](absl::string_view name) -> absl::StatusOr<int64_t> {
    auto value = file.GetInt64(key(name));
    if (!value.ok()) return ConfigError(key(name), value.status().message());
    return *value;
  };
  OTARO_ASSIGN_OR_RETURN(c.hidden_size, required("embedding_length"));
  OTARO_ASSIGN_OR_RETURN(c.intermediate_size, required("feed_forward_length"));
  OTARO_ASSIGN_OR_RETURN(c.num_layers, required("block_count"));
  OTARO_ASSIGN_OR_RETURN(c.num_heads, required("attention.head_count"));
  c.num_kv_heads = file.GetInt64(key("attention.head_count_kv")).value_or(c.num_heads);
  c.head_dim = file.GetInt64(key("attention.key_length")).value_or(c.hidden_size / c.num_heads);
  c.max_position = file.GetInt64(key("context_length")).value_or(2048);
  c.rms_norm_eps = file.GetDouble(key("attention.layer_norm_rms_epsilon")).value_or(1e-5);
  c.rope_theta = file.GetDouble(key("rope.freq_base")).value_or(10000);
  if (auto type = file.GetString(key("rope.scaling.type")); type.ok() && *type != "none" &&
                                                            *type != "llama3") {
    return ConfigError(key("rope.scaling.type"),
                       absl::StrCat("rope scaling '", *type, "' is not supported"));
  }
  // Vocabulary size: the metadata if present, else the token list, else the
  // embedding's rows.
  if (auto n = file.GetInt64(key("vocab_size")); n.ok()) {
    c.vocab_size = *n;
  } else if (auto tokens = file.GetStringArray("tokenizer.ggml.tokens"); tokens.ok()) {
    c.vocab_size = static_cast<int64_t>(tokens->size());
  }
  // GGUF has no flag for tied embeddings: they are tied when there is no output
  // tensor, or when it is a byte-identical copy of the embedding (stories260K's
  // converter wrote one); sharing it saves a vocab x hidden copy.
  const gguf::TensorInfo* output = file.FindTensor("output.weight");
  const gguf::TensorInfo* embedding = file.FindTensor("token_embd.weight");
  c.tie_word_embeddings =
      output == nullptr ||
      (embedding != nullptr && output->raw_type == embedding->raw_type &&
       output->dims == embedding->dims && output->data.size() == embedding->data.size() &&
       std::equal(output->data.begin(), output->data.end(), embedding->data.begin()));
  c.bos_token_id = file.GetInt64("tokenizer.ggml.bos_token_id").value_or(-1);
  if (auto eos = file.GetInt64("tokenizer.ggml.eos_token_id"); eos.ok()) {
    c.eos_token_ids.push_back(*eos);
  }
  if (auto eot = file.GetInt64("tokenizer.ggml.eot_token_id"); eot.ok() &&
      std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *eot) == c.eos_token_ids.end()) {
    c.eos_token_ids.push_back(*eot);
  }
  OTARO_RETURN_IF_ERROR(ValidateConfig(c));
  return c;
}

std::vector<float> RopeInverseFrequencies(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> out(half);
  const Llama3RopeScaling& s = c.rope_scaling;
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim);
    if (s.factor > 0) {
      const double low_wavelen = s.original_max_position / s.low_freq_factor;
      const double high_wavelen = s.original_max_position / s.high_freq_factor;
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_wavelen) {  // medium: interpolate
        const double smooth = (s.original_max_position / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    out[i] = static_cast<float>(f);
  }
  return out;
}

}  // namespace otaro::engine
