#include "engine/model/tensor_source.h"

#include <cstring>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/mapped_file.h"
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

// One or more safetensors files holding tensors under their Hugging Face
// names: a HF folder's shards, or the trainer's single master checkpoint.
class SafetensorsSource final : public TensorSource {
 public:
  static absl::StatusOr<std::unique_ptr<TensorSource>> OpenFile(const std::string& path) {
    auto source = std::unique_ptr<SafetensorsSource>(
        new SafetensorsSource(path, absl::StrCat("master checkpoint ", path)));
    OTARO_ASSIGN_OR_RETURN(auto file, safetensors::File::Open(path));
    OTARO_RETURN_IF_ERROR(source->AddFile(std::move(file)));
    return std::unique_ptr<TensorSource>(std::move(source));
  }

  static absl::StatusOr<std::unique_ptr<TensorSource>> OpenFolder(const std::string& dir) {
    auto source = std::unique_ptr<SafetensorsSource>(new SafetensorsSource(dir, ""));
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
      OTARO_RETURN_IF_ERROR(source->AddFile(std::move(*file)));
    }
    source->description_ = absl::StrCat("Hugging Face folder ", dir, " (", source->files_.size(),
                                        " shard", source->files_.size() == 1 ? "" : "s", ")");
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
    // Model weights must be F32, F16 or BF16; the error names the tensor.
    return tensor->ToFloat32();
  }

  std::string Describe() const override { return description_; }

 private:
  SafetensorsSource(std::string dir, std::string description)
      : dir_(std::move(dir)), description_(std::move(description)) {}

  absl::Status AddFile(std::unique_ptr<safetensors::File> file) {
    for (const auto& tensor : file->tensors()) {
      if (!tensors_.emplace(tensor.name, &tensor).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", tensor.name, "' appears in two shards"));
      }
    }
    files_.push_back(std::move(file));
    return absl::OkStatus();
  }

  absl::StatusOr<const safetensors::TensorView*> Find(absl::string_view name) const {
    auto it = tensors_.find(std::string(name));
    if (it == tensors_.end()) return MissingTensor(name, dir_);
    return it->second;
  }

  std::string dir_;
  std::string description_;
  std::vector<std::unique_ptr<safetensors::File>> files_;
  std::map<std::string, const safetensors::TensorView*> tensors_;
};

// --- GGUF ------------------------------------------------------------------

}  // namespace

std::vector<GgufTensorName> GgufTensorNames(const ModelConfig& config) {
  const bool permuted = config.architecture == "llama";
  std::vector<GgufTensorName> names;
  auto map = [&](const std::string& hf, const std::string& gguf_name, int64_t heads = 0) {
    names.push_back({hf, gguf_name, permuted ? heads : 0});
  };
  map("model.embed_tokens.weight", "token_embd.weight");
  map("model.norm.weight", "output_norm.weight");
  if (!config.tie_word_embeddings) map("lm_head.weight", "output.weight");
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string hf = absl::StrCat("model.layers.", i, ".");
    const std::string blk = absl::StrCat("blk.", i, ".");
    map(hf + "input_layernorm.weight", blk + "attn_norm.weight");
    map(hf + "self_attn.q_proj.weight", blk + "attn_q.weight", config.num_heads);
    map(hf + "self_attn.k_proj.weight", blk + "attn_k.weight", config.num_kv_heads);
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
  return names;
}

namespace {

class GgufSource final : public TensorSource {
 public:
  static absl::StatusOr<std::unique_ptr<TensorSource>> Open(const std::string& path,
                                                            ModelConfig* config) {
    OTARO_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(path));
    OTARO_ASSIGN_OR_RETURN(*config, ConfigFromGguf(*file));
    auto source = std::unique_ptr<GgufSource>(new GgufSource(path, std::move(file)));
    for (const GgufTensorName& name : GgufTensorNames(*config)) {
      if (source->file_->FindTensor(name.gguf) != nullptr) {
        source->names_[name.hf] = name;
      }
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
    const GgufTensorName& mapped = names_.at(std::string(name));
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
  std::map<std::string, GgufTensorName> names_;
};

// --- llama2.c --------------------------------------------------------------

class Llama2cSource final : public TensorSource {
 public:
  static absl::StatusOr<std::unique_ptr<TensorSource>> Open(const std::string& path,
                                                            ModelConfig* config) {
    OTARO_ASSIGN_OR_RETURN(auto file, MappedFile::Open(path));
    auto not_llama2c = [&](absl::string_view why) {
      return absl::NotFoundError(absl::StrCat(path, " is not a llama2.c checkpoint: ", why));
    };
    if (file->size() < 7 * sizeof(int32_t)) return not_llama2c("shorter than its header");
    int32_t h[7];
    std::memcpy(h, file->data(), sizeof(h));
    const int64_t dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4];
    const int64_t vocab = std::abs(static_cast<int64_t>(h[5])), seq_len = h[6];
    const bool shared = h[5] > 0;
    const int64_t limit = int64_t{1} << 20;
    for (int64_t v : {dim, hidden, layers, heads, kv_heads, vocab, seq_len}) {
      if (v <= 0 || v > limit) return not_llama2c("implausible header");
    }
    if (dim % heads != 0 || heads % kv_heads != 0) return not_llama2c("implausible header");
    const int64_t head = dim / heads, kv_dim = kv_heads * head;

    auto source = std::unique_ptr<Llama2cSource>(new Llama2cSource(path, std::move(file)));
    uint64_t offset = sizeof(h);
    auto take = [&](int64_t count) {
      uint64_t at = offset;
      offset += static_cast<uint64_t>(count) * sizeof(float);
      return at;
    };
    auto add = [&](const std::string& name, std::vector<int64_t> shape, uint64_t at,
                   int64_t permute_heads = 0) {
      source->tensors_[name] = {std::move(shape), at, permute_heads};
    };
    add("model.embed_tokens.weight", {vocab, dim}, take(vocab * dim));
    // Per-kind arrays hold every layer back to back.
    auto per_layer = [&](const char* tail, std::vector<int64_t> shape, int64_t permute = 0) {
      int64_t count = 1;
      for (int64_t d : shape) count *= d;
      for (int64_t l = 0; l < layers; ++l) {
        add(absl::StrCat("model.layers.", l, ".", tail), shape, take(count), permute);
      }
    };
    per_layer("input_layernorm.weight", {dim});
    // q/k rows are in llama2.c's interleaved RoPE order, as in GGUF.
    per_layer("self_attn.q_proj.weight", {dim, dim}, heads);
    per_layer("self_attn.k_proj.weight", {kv_dim, dim}, kv_heads);
    per_layer("self_attn.v_proj.weight", {kv_dim, dim});
    per_layer("self_attn.o_proj.weight", {dim, dim});
    per_layer("post_attention_layernorm.weight", {dim});
    per_layer("mlp.gate_proj.weight", {hidden, dim});
    per_layer("mlp.down_proj.weight", {dim, hidden});
    per_layer("mlp.up_proj.weight", {hidden, dim});
    add("model.norm.weight", {dim}, take(dim));
    take(seq_len * head);  // Legacy freq_cis_real + freq_cis_imag tables (unused).
    if (!shared) add("lm_head.weight", {vocab, dim}, take(vocab * dim));
    if (offset != source->file_->size()) {
      return not_llama2c(absl::StrCat("the header implies ", offset, " bytes, the file has ",
                                      source->file_->size()));
    }
    ModelConfig c;
    c.architecture = "llama";
    c.vocab_size = vocab;
    c.hidden_size = dim;
    c.intermediate_size = hidden;
    c.num_layers = layers;
    c.num_heads = heads;
    c.num_kv_heads = kv_heads;
    c.head_dim = head;
    c.max_position = seq_len;
    c.rms_norm_eps = 1e-5;  // run.c's constant
    c.rope_theta = 10000;   // run.c's constant
    c.tie_word_embeddings = shared;
    c.bos_token_id = 1;  // llama2.c's SentencePiece convention
    c.eos_token_ids = {2};
    OTARO_RETURN_IF_ERROR(ValidateConfig(c));
    *config = c;
    return std::unique_ptr<TensorSource>(std::move(source));
  }

  std::vector<std::string> Names() const override {
    std::vector<std::string> names;
    for (const auto& [name, t] : tensors_) names.push_back(name);
    return names;
  }
  bool Has(absl::string_view name) const override { return tensors_.count(std::string(name)); }
  absl::StatusOr<std::vector<int64_t>> Shape(absl::string_view name) const override {
    auto it = tensors_.find(std::string(name));
    if (it == tensors_.end()) return MissingTensor(name, path_);
    return it->second.shape;
  }
  std::string StorageType(absl::string_view name) const override { return Has(name) ? "F32" : ""; }
  absl::StatusOr<std::vector<float>> ReadFloat32(absl::string_view name) const override {
    auto it = tensors_.find(std::string(name));
    if (it == tensors_.end()) return MissingTensor(name, path_);
    const Entry& e = it->second;
    int64_t count = 1;
    for (int64_t d : e.shape) count *= d;
    std::vector<float> values(static_cast<size_t>(count));
    std::memcpy(values.data(), file_->data() + e.offset, values.size() * sizeof(float));
    if (e.permute_heads > 0) {
      OTARO_RETURN_IF_ERROR(gguf::UndoGgufRotaryPermutation(absl::MakeSpan(values), e.shape[0],
                                                            e.shape[1], e.permute_heads));
    }
    return values;
  }
  std::string Describe() const override { return absl::StrCat("llama2.c checkpoint ", path_); }

 private:
  struct Entry {
    std::vector<int64_t> shape;
    uint64_t offset = 0;
    int64_t permute_heads = 0;
  };
  Llama2cSource(std::string path, std::unique_ptr<MappedFile> file)
      : path_(std::move(path)), file_(std::move(file)) {}

  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, Entry> tensors_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TensorSource>> OpenLlama2c(const std::string& path,
                                                          ModelConfig* config) {
  return Llama2cSource::Open(path, config);
}

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
  return SafetensorsSource::OpenFolder(dir);
}

absl::StatusOr<std::unique_ptr<TensorSource>> OpenMasterCheckpoint(const std::string& path,
                                                                   ModelConfig* config) {
  OTARO_ASSIGN_OR_RETURN(auto file, safetensors::File::Open(path));
  const auto& metadata = file->metadata();
  auto format = metadata.find("format");
  if (format == metadata.end() || format->second != kMasterCheckpointFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a master checkpoint (no __metadata__ format \"",
                     kMasterCheckpointFormat, "\")"));
  }
  auto version = metadata.find("format_version");
  if (version == metadata.end() || version->second != "1") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unsupported master checkpoint version (this build reads 1)"));
  }
  auto config_json = metadata.find(kModelConfigMetadataKey);
  if (config_json == metadata.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": master checkpoint without ", kModelConfigMetadataKey));
  }
  auto parsed = ModelConfigFromJson(config_json->second);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  *config = *parsed;
  return SafetensorsSource::OpenFile(path);
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
