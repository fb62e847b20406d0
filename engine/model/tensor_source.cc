#include "engine/model/tensor_source.h"

#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/float16.h"
#include "common/safetensors/safetensors.h"
#include "common/status_macros.h"
#include "engine/formats/gguf.h"
#include "nlohmann/json.hpp"

namespace otaro::engine {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::Status MissingTensor(absl::string_view name, absl::string_view where) {
  return absl::NotFoundError(absl::StrCat("tensor '", name, "' not found in ", where));
}

// --- Hugging Face folder ---------------------------------------------------

class HfFolderSource final : public TensorSource {
 public:
  static absl::StatusOr<std::unique_ptr<TensorSource>> Open(const std::string& dir) {
    auto source = std::unique_ptr<HfFolderSource>(new HfFolderSource(dir));
    std::string index_text;
    std::vector<std::string> shard_names;
    if (ReadFileToString(dir + "/model.safetensors.index.json", &index_text).ok()) {
      auto index = nlohmann::json::parse(index_text, nullptr, false);
      if (index.is_discarded() || !index.contains("weight_map") ||
          !index["weight_map"].is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat(dir, "/model.safetensors.index.json: no weight_map object"));
      }
      std::map<std::string, int> shard_ids;
      for (auto& [tensor, shard] : index["weight_map"].items()) {
        if (!shard.is_string() || absl::StrContains(shard.get<std::string>(), "/")) {
          return absl::InvalidArgumentError(absl::StrCat(
              dir, "/model.safetensors.index.json: bad shard name for '", tensor, "'"));
        }
        shard_ids.emplace(shard.get<std::string>(), 0);
      }
      for (auto& [name, id] : shard_ids) shard_names.push_back(name);
    } else {
      shard_names.push_back("model.safetensors");
    }
    for (const std::string& shard : shard_names) {
      auto file = safetensors::File::Open(dir + "/" + shard);
      if (!file.ok()) {
        return absl::Status(file.status().code(),
                            absl::StrCat("model shard ", shard, ": ", file.status().message()));
      }
      for (const auto& tensor : (*file)->tensors()) {
        if (!source->tensors_.emplace(tensor.name, &tensor).second) {
          return absl::InvalidArgumentError(
              absl::StrCat("tensor '", tensor.name, "' appears in two shards"));
        }
      }
      source->files_.push_back(std::move(*file));
    }
    return std::unique_ptr<TensorSource>(std::move(source));
  }

  std::vector<std::string> Names() const override {
    std::vector<std::string> names;
    for (const auto& [name, tensor] : tensors_) names.push_back(name);
    return names;
  }

  bool Has(absl::string_view name) const override { return tensors_.count(std::string(name)); }

  absl::StatusOr<std::vector<int64_t>> Shape(absl::string_view name) const override {
    OTARO_ASSIGN_OR_RETURN(const safetensors::TensorView* tensor, Find(name));
    return tensor->shape;
  }

  std::string StorageType(absl::string_view name) const override {
    auto tensor = Find(name);
    return tensor.ok() ? std::string(safetensors::DTypeName((*tensor)->dtype)) : "";
  }

  absl::StatusOr<std::vector<float>> ReadFloat32(absl::string_view name) const override {
    OTARO_ASSIGN_OR_RETURN(const safetensors::TensorView* tensor, Find(name));
    const size_t n = static_cast<size_t>(tensor->num_elements());
    std::vector<float> out(n);
    const uint8_t* bytes = tensor->bytes.data();
    switch (tensor->dtype) {
      case safetensors::DType::kF32:
        if (n) std::memcpy(out.data(), bytes, n * sizeof(float));
        break;
      case safetensors::DType::kF16:
      case safetensors::DType::kBF16:
        for (size_t i = 0; i < n; ++i) {
          uint16_t half;
          std::memcpy(&half, bytes + 2 * i, 2);
          out[i] = tensor->dtype == safetensors::DType::kF16 ? Fp16ToFloat(half)
                                                              : Bf16ToFloat(half);
        }
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", name, "' has dtype ", safetensors::DTypeName(tensor->dtype),
                         "; model weights must be F32, F16 or BF16"));
    }
    return out;
  }

  std::string Describe() const override {
    return absl::StrCat("Hugging Face folder ", dir_, " (", files_.size(), " shard",
                        files_.size() == 1 ? "" : "s", ")");
  }

 private:
  explicit HfFolderSource(std::string dir) : dir_(std::move(dir)) {}

  absl::StatusOr<const safetensors::TensorView*> Find(absl::string_view name) const {
    auto it = tensors_.find(std::string(name));
    if (it == tensors_.end()) return MissingTensor(name, dir_);
    return it->second;
  }

  std::string dir_;
  std::vector<std::unique_ptr<safetensors::File>> files_;
  std::map<std::string, const safetensors::TensorView*> tensors_;
};

// --- GGUF ------------------------------------------------------------------

struct GgufName {
  std::string gguf;
  // Rows of q/k are stored interleaved per head (llama only); 0 = not permuted.
  int64_t permute_heads = 0;
};

class GgufSource final : public TensorSource {
 public:
  static absl::StatusOr<std::unique_ptr<TensorSource>> Open(const std::string& path,
                                                            ModelConfig* config) {
    OTARO_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(path));
    OTARO_ASSIGN_OR_RETURN(*config, ConfigFromGguf(*file));
    auto source = std::unique_ptr<GgufSource>(new GgufSource(path, std::move(file)));
    const bool permuted = config->architecture == "llama";
    auto map = [&](const std::string& hf, const std::string& gguf_name, int64_t heads = 0) {
      if (source->file_->FindTensor(gguf_name) != nullptr) {
        source->names_[hf] = {gguf_name, permuted ? heads : 0};
      }
    };
    map("model.embed_tokens.weight", "token_embd.weight");
    map("model.norm.weight", "output_norm.weight");
    if (!config->tie_word_embeddings) map("lm_head.weight", "output.weight");
    for (int64_t i = 0; i < config->num_layers; ++i) {
      const std::string hf = absl::StrCat("model.layers.", i, ".");
      const std::string blk = absl::StrCat("blk.", i, ".");
      map(hf + "input_layernorm.weight", blk + "attn_norm.weight");
      map(hf + "self_attn.q_proj.weight", blk + "attn_q.weight", config->num_heads);
      map(hf + "self_attn.k_proj.weight", blk + "attn_k.weight", config->num_kv_heads);
      map(hf + "self_attn.v_proj.weight", blk + "attn_v.weight");
      map(hf + "self_attn.o_proj.weight", blk + "attn_output.weight");
      map(hf + "self_attn.q_proj.bias", blk + "attn_q.bias");
      map(hf + "self_attn.k_proj.bias", blk + "attn_k.bias");
      map(hf + "self_attn.v_proj.bias", blk + "attn_v.bias");
      map(hf + "post_attention_layernorm.weight", blk + "ffn_norm.weight");
      map(hf + "mlp.gate_proj.weight", blk + "ffn_gate.weight");
      map(hf + "mlp.up_proj.weight", blk + "ffn_up.weight");
      map(hf + "mlp.down_proj.weight", blk + "ffn_down.weight");
    }
    // A vocabulary size missing from the metadata comes from the embedding.
    if (config->vocab_size == 0) {
      OTARO_ASSIGN_OR_RETURN(auto shape, source->Shape("model.embed_tokens.weight"));
      config->vocab_size = shape[0];
    }
    return std::unique_ptr<TensorSource>(std::move(source));
  }

  std::vector<std::string> Names() const override {
    std::vector<std::string> names;
    for (const auto& [hf, name] : names_) names.push_back(hf);
    return names;
  }

  bool Has(absl::string_view name) const override { return names_.count(std::string(name)); }

  absl::StatusOr<std::vector<int64_t>> Shape(absl::string_view name) const override {
    OTARO_ASSIGN_OR_RETURN(const gguf::TensorInfo* tensor, Find(name));
    // GGUF lists dimensions innermost first; Hugging Face outermost first.
    std::vector<int64_t> shape(tensor->dims.rbegin(), tensor->dims.rend());
    return shape;
  }

  std::string StorageType(absl::string_view name) const override {
    auto tensor = Find(name);
    return tensor.ok() ? gguf::TensorTypeName((*tensor)->raw_type) : "";
  }

  absl::StatusOr<std::vector<float>> ReadFloat32(absl::string_view name) const override {
    OTARO_ASSIGN_OR_RETURN(const gguf::TensorInfo* tensor, Find(name));
    auto values = file_->DequantizeTensor(*tensor);
    if (!values.ok()) {
      return absl::Status(values.status().code(),
                          absl::StrCat("tensor '", name, "': ", values.status().message()));
    }
    const GgufName& mapped = names_.at(std::string(name));
    if (mapped.permute_heads > 0) {
      OTARO_ASSIGN_OR_RETURN(auto shape, Shape(name));
      OTARO_RETURN_IF_ERROR(gguf::UndoGgufRotaryPermutation(
          absl::MakeSpan(*values), shape[0], shape.size() > 1 ? shape[1] : 1,
          mapped.permute_heads));
    }
    return values;
  }

  std::string Describe() const override { return absl::StrCat("GGUF file ", path_); }

 private:
  GgufSource(std::string path, std::unique_ptr<gguf::GgufFile> file)
      : path_(std::move(path)), file_(std::move(file)) {}

  absl::StatusOr<const gguf::TensorInfo*> Find(absl::string_view name) const {
    auto it = names_.find(std::string(name));
    if (it == names_.end()) return MissingTensor(name, path_);
    return file_->GetTensor(it->second.gguf);
  }

  std::string path_;
  std::unique_ptr<gguf::GgufFile> file_;
  std::map<std::string, GgufName> names_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TensorSource>> OpenHfFolder(const std::string& dir,
                                                           ModelConfig* config) {
  std::string config_text, generation_text;
  absl::Status read = ReadFileToString(dir + "/config.json", &config_text);
  if (!read.ok()) {
    return absl::NotFoundError(
        absl::StrCat(dir, " is not a Hugging Face model folder: no readable config.json"));
  }
  (void)ReadFileToString(dir + "/generation_config.json", &generation_text);
  auto parsed = ParseHfConfig(config_text, generation_text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/config.json: ", parsed.status().message()));
  }
  *config = *parsed;
  return HfFolderSource::Open(dir);
}

absl::StatusOr<std::unique_ptr<TensorSource>> OpenGguf(const std::string& path,
                                                       ModelConfig* config) {
  return GgufSource::Open(path, config);
}

std::vector<std::string> ExpectedTensorNames(const ModelConfig& config) {
  std::vector<std::string> names = {"model.embed_tokens.weight"};
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    for (const char* n : {"input_layernorm.weight", "self_attn.q_proj.weight",
                          "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                          "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                          "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}) {
      names.push_back(p + n);
    }
    if (config.attention_bias) {
      for (const char* n : {"self_attn.q_proj.bias", "self_attn.k_proj.bias",
                            "self_attn.v_proj.bias"}) {
        names.push_back(p + n);
      }
    }
  }
  names.push_back("model.norm.weight");
  if (!config.tie_word_embeddings) names.push_back("lm_head.weight");
  return names;
}

namespace {

// The shape a canonical tensor must have under `config`.
std::vector<int64_t> ExpectedShape(const std::string& name, const ModelConfig& c) {
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {c.vocab_size, h};
  if (absl::EndsWith(name, "layernorm.weight") || name == "model.norm.weight") return {h};
  if (absl::EndsWith(name, "q_proj.weight")) return {c.q_dim(), h};
  if (absl::EndsWith(name, "k_proj.weight") || absl::EndsWith(name, "v_proj.weight")) {
    return {c.kv_dim(), h};
  }
  if (absl::EndsWith(name, "o_proj.weight")) return {h, c.q_dim()};
  if (absl::EndsWith(name, "q_proj.bias")) return {c.q_dim()};
  if (absl::EndsWith(name, "k_proj.bias") || absl::EndsWith(name, "v_proj.bias")) {
    return {c.kv_dim()};
  }
  if (absl::EndsWith(name, "gate_proj.weight") || absl::EndsWith(name, "up_proj.weight")) {
    return {f, h};
  }
  if (absl::EndsWith(name, "down_proj.weight")) return {h, f};
  return {};
}

}  // namespace

absl::Status CheckTensors(const TensorSource& source, const ModelConfig& config) {
  for (const std::string& name : ExpectedTensorNames(config)) {
    if (!source.Has(name)) {
      return absl::NotFoundError(
          absl::StrCat("tensor '", name, "' is missing from ", source.Describe()));
    }
    OTARO_ASSIGN_OR_RETURN(std::vector<int64_t> shape, source.Shape(name));
    std::vector<int64_t> want = ExpectedShape(name, config);
    if (shape != want) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ",
                                                     ShapeString(shape), ", expected ",
                                                     ShapeString(want), " from the config"));
    }
  }
  return absl::OkStatus();
}

}  // namespace otaro::engine
