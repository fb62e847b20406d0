#include "engine/model/loader.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/logging.h"
#include "common/safetensors/safetensors.h"
#include "common/status_macros.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/loaders.h"
#include "engine/tokenizer/vocab_json.h"

namespace otaro::engine {
namespace {

// Keys of sefp::CheckpointMetadata::extra (stored with its "x." prefix, so in
// the file they are kModelConfigMetadataKey / kTokenizerMetadataKey).
constexpr char kModelConfigKey[] = "model_config";
constexpr char kTokenizerKey[] = "tokenizer";

bool IsLinear(absl::string_view name) {
  return absl::EndsWith(name, "_proj.weight");
}

std::string LayerName(int64_t layer, absl::string_view tail) {
  return absl::StrCat("model.layers.", layer, ".", tail);
}

// Reads one model's tensors by canonical name, whatever the file.
class WeightReader {
 public:
  virtual ~WeightReader() = default;
  virtual absl::StatusOr<std::vector<float>> Dense(const std::string& name) const = 0;
  // A linear weight as SEFP (encoded here from float, or as stored).
  virtual absl::StatusOr<sefp::SefpTensor> Quantized(const std::string& name, int64_t rows,
                                                     int64_t cols,
                                                     int64_t* saturated) const = 0;
  // A linear weight as float32.
  virtual absl::StatusOr<std::vector<float>> LinearDense(const std::string& name) const = 0;
};

class SourceReader final : public WeightReader {
 public:
  explicit SourceReader(const TensorSource* source) : source_(source) {}
  absl::StatusOr<std::vector<float>> Dense(const std::string& name) const override {
    return source_->ReadFloat32(name);
  }
  absl::StatusOr<sefp::SefpTensor> Quantized(const std::string& name, int64_t rows, int64_t cols,
                                             int64_t* saturated) const override {
    OTARO_ASSIGN_OR_RETURN(std::vector<float> values, source_->ReadFloat32(name));
    OTARO_ASSIGN_OR_RETURN(sefp::SefpTensor tensor,
                           sefp::EncodeTensor(name, values, rows, cols));
    *saturated += tensor.saturated;
    return tensor;
  }
  absl::StatusOr<std::vector<float>> LinearDense(const std::string& name) const override {
    return source_->ReadFloat32(name);
  }

 private:
  const TensorSource* source_;
};

class CheckpointWeightReader final : public WeightReader {
 public:
  explicit CheckpointWeightReader(const sefp::CheckpointReader* reader) : reader_(reader) {}
  absl::StatusOr<std::vector<float>> Dense(const std::string& name) const override {
    const safetensors::TensorView* view = reader_->FindDense(name);
    if (view == nullptr) {
      return absl::NotFoundError(absl::StrCat("tensor '", name, "' missing from the checkpoint"));
    }
    auto values = view->ToFloat32();
    // A checkpoint we wrote holds only F32/F16/BF16 dense tensors: anything
    // else is a damaged file.
    if (!values.ok()) return absl::DataLossError(values.status().message());
    return values;
  }
  absl::StatusOr<sefp::SefpTensor> Quantized(const std::string& name, int64_t rows, int64_t cols,
                                             int64_t* saturated) const override {
    OTARO_ASSIGN_OR_RETURN(sefp::SefpTensor tensor, reader_->LoadQuantized(name));
    if (tensor.rows != rows || tensor.cols != cols) {
      return absl::DataLossError(absl::StrCat("tensor '", name, "' is [", tensor.rows, ", ",
                                              tensor.cols, "], the config says [", rows, ", ",
                                              cols, "]"));
    }
    *saturated += tensor.saturated;
    return tensor;
  }
  absl::StatusOr<std::vector<float>> LinearDense(const std::string& name) const override {
    OTARO_ASSIGN_OR_RETURN(sefp::SefpTensor tensor, reader_->LoadQuantized(name));
    return tensor.DecodeAll(sefp::kMasterBits, reader_->metadata().reconstruction);
  }

 private:
  const sefp::CheckpointReader* reader_;
};

struct LinearShape {
  const char* tail;
  Linear LlamaLayer::*member;
};

std::vector<LinearShape> LinearShapes() {
  return {{"self_attn.q_proj", &LlamaLayer::q},   {"self_attn.k_proj", &LlamaLayer::k},
          {"self_attn.v_proj", &LlamaLayer::v},   {"self_attn.o_proj", &LlamaLayer::o},
          {"mlp.gate_proj", &LlamaLayer::gate},   {"mlp.up_proj", &LlamaLayer::up},
          {"mlp.down_proj", &LlamaLayer::down}};
}

std::pair<int64_t, int64_t> LinearDims(const ModelConfig& c, absl::string_view tail) {
  if (tail == "self_attn.q_proj") return {c.q_dim(), c.hidden_size};
  if (tail == "self_attn.k_proj" || tail == "self_attn.v_proj") return {c.kv_dim(), c.hidden_size};
  if (tail == "self_attn.o_proj") return {c.hidden_size, c.q_dim()};
  if (tail == "mlp.down_proj") return {c.hidden_size, c.intermediate_size};
  return {c.intermediate_size, c.hidden_size};  // gate, up
}

absl::Status FillModel(const WeightReader& reader, const LoadOptions& options, LlamaModel* model) {
  const ModelConfig& c = model->config;
  const int64_t total = static_cast<int64_t>(ExpectedTensorNames(c).size());
  int64_t done = 0;
  auto step = [&](const std::string& name) {
    if (options.progress) options.progress(++done, total, name);
  };
  auto dense = [&](const std::string& name, std::vector<float>* out) -> absl::Status {
    OTARO_ASSIGN_OR_RETURN(*out, reader.Dense(name));
    step(name);
    return absl::OkStatus();
  };
  OTARO_RETURN_IF_ERROR(dense("model.embed_tokens.weight", &model->embed));
  model->layers.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LlamaLayer& layer = model->layers[i];
    OTARO_RETURN_IF_ERROR(dense(LayerName(i, "input_layernorm.weight"), &layer.input_norm));
    OTARO_RETURN_IF_ERROR(
        dense(LayerName(i, "post_attention_layernorm.weight"), &layer.post_attention_norm));
    for (const LinearShape& shape : LinearShapes()) {
      const std::string name = LayerName(i, absl::StrCat(shape.tail, ".weight"));
      Linear& linear = layer.*shape.member;
      std::tie(linear.out_features, linear.in_features) = LinearDims(c, shape.tail);
      if (options.quantize) {
        OTARO_ASSIGN_OR_RETURN(
            sefp::SefpTensor tensor,
            reader.Quantized(name, linear.out_features, linear.in_features,
                             &model->saturated_groups));
        OTARO_ASSIGN_OR_RETURN(sefp::PackedMatrix packed,
                               sefp::PackedMatrix::Pack(tensor, options.resident_max_bits));
        linear.packed.emplace(std::move(packed));
      } else {
        OTARO_ASSIGN_OR_RETURN(linear.dense, reader.LinearDense(name));
      }
      step(name);
      if (c.attention_bias && absl::StartsWith(shape.tail, "self_attn.") &&
          shape.tail != std::string("self_attn.o_proj")) {
        OTARO_RETURN_IF_ERROR(dense(LayerName(i, absl::StrCat(shape.tail, ".bias")), &linear.bias));
      }
    }
  }
  OTARO_RETURN_IF_ERROR(dense("model.norm.weight", &model->final_norm));
  if (!c.tie_word_embeddings) OTARO_RETURN_IF_ERROR(dense("lm_head.weight", &model->lm_head));
  // A float32 reference model (quantize = false) keeps its lm_head float32 too.
  model->lm_head_precision = options.quantize ? options.lm_head : LmHeadPrecision{LmHeadPrecision::Kind::kFloat32};
  if (model->lm_head_precision.kind != LmHeadPrecision::Kind::kFloat32) {
    // A fixed-precision lm_head keeps the planes it reads, whatever the linear
    // layers keep (resident_max_bits); a per-request one keeps theirs.
    const int head_planes = model->lm_head_precision.kind == LmHeadPrecision::Kind::kFixed
                                ? model->lm_head_precision.bits
                                : options.resident_max_bits;
    Linear head;
    head.out_features = c.vocab_size;
    head.in_features = c.hidden_size;
    OTARO_ASSIGN_OR_RETURN(sefp::SefpTensor tensor,
                           sefp::EncodeTensor("lm_head.weight", model->LmHead(), c.vocab_size,
                                              c.hidden_size));
    model->saturated_groups += tensor.saturated;
    OTARO_ASSIGN_OR_RETURN(sefp::PackedMatrix packed,
                           sefp::PackedMatrix::Pack(tensor, head_planes));
    head.packed.emplace(std::move(packed));
    model->quantized_lm_head.emplace(std::move(head));
    // The planes replace the float32 table: a tied embedding is decoded from
    // them (LlamaModel::Embed), so neither copy stays resident.
    if (c.tie_word_embeddings) {
      std::vector<float>().swap(model->embed);
    } else {
      std::vector<float>().swap(model->lm_head);
    }
  }
  model->quantized = options.quantize;
  model->resident_max_bits = options.quantize ? options.resident_max_bits : sefp::kMasterBits;
  return absl::OkStatus();
}

sefp::DenseTensor Float32Tensor(const std::vector<int64_t>& shape,
                                const std::vector<float>& values) {
  sefp::DenseTensor dense;
  dense.dtype = safetensors::DType::kF32;
  dense.shape = shape;
  dense.bytes.resize(values.size() * sizeof(float));
  if (!values.empty()) std::memcpy(dense.bytes.data(), values.data(), dense.bytes.size());
  return dense;
}

absl::StatusOr<std::unique_ptr<TensorSource>> OpenSource(const std::string& path,
                                                         ModelFormat format,
                                                         ModelConfig* config) {
  switch (format) {
    case ModelFormat::kHfFolder: return OpenHfFolder(path, config);
    case ModelFormat::kLlama2c: return OpenLlama2c(path, config);
    case ModelFormat::kMaster: return OpenMasterCheckpoint(path, config);
    case ModelFormat::kGguf: return OpenGguf(path, config);
    case ModelFormat::kSefp: break;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, " is a SEFP checkpoint: its linear layers are quantized, so it cannot be a "
            "float source; use the model it was converted from (or a master checkpoint)"));
}

absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> TokenizerFromMetadata(
    const std::map<std::string, std::string>& metadata, absl::string_view key,
    const std::string& path) {
  auto it = metadata.find(std::string(key));
  if (it == metadata.end()) {
    return absl::NotFoundError(absl::StrCat(path, " carries no tokenizer"));
  }
  OTARO_ASSIGN_OR_RETURN(tokenizer::VocabSpec spec, tokenizer::VocabSpecFromJson(it->second));
  return tokenizer::Tokenizer::Create(std::move(spec));
}

}  // namespace

absl::string_view ModelFormatName(ModelFormat format) {
  switch (format) {
    case ModelFormat::kSefp: return "sefp";
    case ModelFormat::kHfFolder: return "hf";
    case ModelFormat::kGguf: return "gguf";
    case ModelFormat::kLlama2c: return "llama2c";
    case ModelFormat::kMaster: return "master";
  }
  return "unknown";
}

absl::StatusOr<ModelFormat> DetectModelFormat(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("model path ", path, " does not exist"));
  }
  if (S_ISDIR(st.st_mode)) {
    if (::stat((path + "/config.json").c_str(), &st) == 0) return ModelFormat::kHfFolder;
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a folder without config.json: not a Hugging Face model folder"));
  }
  char magic[8] = {};
  std::ifstream(path, std::ios::binary).read(magic, sizeof(magic));
  if (std::memcmp(magic, "GGUF", 4) == 0) return ModelFormat::kGguf;
  auto file = safetensors::File::Open(path);
  if (file.ok()) {
    auto it = (*file)->metadata().find("format");
    if (it != (*file)->metadata().end() && it->second == sefp::kCheckpointFormat) {
      return ModelFormat::kSefp;
    }
    if (it != (*file)->metadata().end() && it->second == kMasterCheckpointFormat) {
      return ModelFormat::kMaster;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is a safetensors file but not a SEFP checkpoint; to load a Hugging Face "
              "model, pass its folder (with config.json)"));
  }
  ModelConfig unused;
  if (OpenLlama2c(path, &unused).ok()) return ModelFormat::kLlama2c;
  return absl::InvalidArgumentError(absl::StrCat(
      path, " is not a model: expected a SEFP checkpoint, a Hugging Face folder or a GGUF file"));
}

absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> LoadModelTokenizer(const std::string& path) {
  OTARO_ASSIGN_OR_RETURN(ModelFormat format, DetectModelFormat(path));
  switch (format) {
    case ModelFormat::kGguf: {
      OTARO_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(path));
      if (!file->Has("tokenizer.ggml.tokens")) {
        return absl::NotFoundError(absl::StrCat(path, " has no tokenizer in its metadata"));
      }
      return tokenizer::LoadFromGguf(*file);
    }
    case ModelFormat::kHfFolder:
      return tokenizer::LoadFromHfDirectory(path);
    case ModelFormat::kLlama2c: {
      // llama2.c ships its tokenizer beside the weights: tokenizer.bin, or
      // tok<vocab>.bin for its small custom vocabularies.
      ModelConfig config;
      OTARO_RETURN_IF_ERROR(OpenLlama2c(path, &config).status());
      const std::string dir = path.substr(0, path.find_last_of('/') + 1);
      for (const std::string& name :
           {std::string("tokenizer.bin"), absl::StrCat("tok", config.vocab_size, ".bin")}) {
        std::string contents;
        if (ReadFileToString(dir + name, &contents).ok()) {
          return tokenizer::LoadFromLlama2cTokenizer(contents);
        }
      }
      return absl::NotFoundError(absl::StrCat("no tokenizer.bin or tok", config.vocab_size,
                                              ".bin beside ", path));
    }
    case ModelFormat::kSefp: {
      OTARO_ASSIGN_OR_RETURN(auto reader, sefp::CheckpointReader::Open(path));
      return TokenizerFromMetadata(reader->metadata().extra, kTokenizerKey, path);
    }
    case ModelFormat::kMaster: {
      OTARO_ASSIGN_OR_RETURN(auto file, safetensors::File::Open(path));
      return TokenizerFromMetadata(file->metadata(), kTokenizerMetadataKey, path);
    }
  }
  return absl::InternalError("unreachable");
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadModel(const std::string& path,
                                                      const LoadOptions& options) {
  OTARO_RETURN_IF_ERROR(sefp::CheckPrecision(options.resident_max_bits));
  OTARO_ASSIGN_OR_RETURN(ModelFormat format, DetectModelFormat(path));
  auto model = std::make_unique<LlamaModel>();
  model->source = path;
  model->source_format = std::string(ModelFormatName(format));
  if (format == ModelFormat::kSefp) {
    OTARO_ASSIGN_OR_RETURN(auto reader, sefp::CheckpointReader::Open(path));
    auto config = reader->metadata().extra.find(kModelConfigKey);
    if (config == reader->metadata().extra.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, " is a SEFP checkpoint without a model config (x.model_config): it holds "
                "tensors, not a whole model"));
    }
    OTARO_ASSIGN_OR_RETURN(model->config, ModelConfigFromJson(config->second));
    model->reconstruction = reader->metadata().reconstruction;
    OTARO_RETURN_IF_ERROR(FillModel(CheckpointWeightReader(reader.get()), options, model.get()));
  } else {
    OTARO_ASSIGN_OR_RETURN(auto source, OpenSource(path, format, &model->config));
    OTARO_RETURN_IF_ERROR(CheckTensors(*source, model->config));
    model->reconstruction = options.reconstruction;
    OTARO_RETURN_IF_ERROR(FillModel(SourceReader(source.get()), options, model.get()));
  }
  auto tok = LoadModelTokenizer(path);
  if (tok.ok()) {
    model->tokenizer = std::move(*tok);
  } else if (tok.status().code() == absl::StatusCode::kNotFound) {
    OTARO_LOG_WARN("model {} has no tokenizer: only token-id prompts will work ({})", path,
                   tok.status().message());
  } else {
    return tok.status();
  }
  if (model->saturated_groups > 0) {
    OTARO_LOG_WARN("model {}: {} SEFP groups saturated (exponent clamped at 15)", path,
                   model->saturated_groups);
  }
  return model;
}

absl::StatusOr<std::unique_ptr<TensorSource>> OpenModelSource(const std::string& path,
                                                              ModelConfig* config) {
  OTARO_ASSIGN_OR_RETURN(ModelFormat format, DetectModelFormat(path));
  OTARO_ASSIGN_OR_RETURN(auto source, OpenSource(path, format, config));
  OTARO_RETURN_IF_ERROR(CheckTensors(*source, *config));
  return source;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> BuildModel(
    const TensorSource& source, const ModelConfig& config,
    std::unique_ptr<tokenizer::Tokenizer> tokenizer, const std::string& source_name,
    const LoadOptions& options) {
  OTARO_RETURN_IF_ERROR(sefp::CheckPrecision(options.resident_max_bits));
  OTARO_RETURN_IF_ERROR(ValidateConfig(config));
  OTARO_RETURN_IF_ERROR(CheckTensors(source, config));
  auto model = std::make_unique<LlamaModel>();
  model->config = config;
  model->source = source_name;
  model->source_format = "memory";
  model->reconstruction = options.reconstruction;
  OTARO_RETURN_IF_ERROR(FillModel(SourceReader(&source), options, model.get()));
  model->tokenizer = std::move(tokenizer);
  return model;
}

absl::StatusOr<ConversionSummary> ConvertToSefpCheckpoint(const std::string& in_path,
                                                          const std::string& out_path,
                                                          sefp::Reconstruction reconstruction,
                                                          const LoadProgress& progress) {
  OTARO_ASSIGN_OR_RETURN(ModelFormat format, DetectModelFormat(in_path));
  if (format == ModelFormat::kSefp) {
    return absl::InvalidArgumentError(
        absl::StrCat(in_path, " is already a SEFP checkpoint; convert from the original model"));
  }
  ModelConfig config;
  OTARO_ASSIGN_OR_RETURN(auto source, OpenModelSource(in_path, &config));
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  auto tok = LoadModelTokenizer(in_path);
  if (tok.ok()) {
    tokenizer = std::move(*tok);
  } else if (tok.status().code() != absl::StatusCode::kNotFound) {
    return tok.status();
  }
  CheckpointProvenance provenance;
  provenance.source_model = source->Describe();
  return WriteSefpCheckpoint(*source, config, tokenizer.get(), reconstruction, provenance,
                             out_path, progress);
}

absl::StatusOr<ConversionSummary> WriteSefpCheckpoint(const TensorSource& source,
                                                      const ModelConfig& config,
                                                      const tokenizer::Tokenizer* tokenizer,
                                                      sefp::Reconstruction reconstruction,
                                                      const CheckpointProvenance& provenance,
                                                      const std::string& out_path,
                                                      const LoadProgress& progress) {
  OTARO_RETURN_IF_ERROR(CheckTensors(source, config));
  sefp::Checkpoint checkpoint;
  checkpoint.metadata.reconstruction = reconstruction;
  checkpoint.metadata.source_model = provenance.source_model;
  checkpoint.metadata.tuning_provenance = provenance.tuning_provenance;
  checkpoint.metadata.extra[kModelConfigKey] = ModelConfigToJson(config);
  if (tokenizer != nullptr) {
    checkpoint.metadata.extra[kTokenizerKey] = tokenizer::VocabSpecToJson(tokenizer->spec());
  }

  ConversionSummary summary;
  summary.parameters = config.ParameterCount();
  summary.linear_parameters = config.LinearParameterCount();
  const std::vector<std::string> names = ExpectedTensorNames(config);
  int64_t done = 0;
  for (const std::string& name : names) {
    OTARO_ASSIGN_OR_RETURN(std::vector<float> values, source.ReadFloat32(name));
    OTARO_ASSIGN_OR_RETURN(std::vector<int64_t> shape, source.Shape(name));
    if (IsLinear(name)) {
      OTARO_ASSIGN_OR_RETURN(sefp::SefpTensor tensor,
                             sefp::EncodeTensor(name, values, shape[0], shape[1]));
      summary.saturated_groups += tensor.saturated;
      checkpoint.quantized.emplace(name, std::move(tensor));
    } else {
      checkpoint.dense.emplace(name, Float32Tensor(shape, values));
    }
    ++summary.tensors;
    if (progress) progress(++done, static_cast<int64_t>(names.size()), name);
  }
  OTARO_RETURN_IF_ERROR(sefp::WriteCheckpoint(out_path, checkpoint));
  return summary;
}

absl::Status WriteMasterCheckpoint(const TensorSource& source, const ModelConfig& config,
                                   const tokenizer::Tokenizer* tokenizer,
                                   const CheckpointProvenance& provenance,
                                   const std::string& out_path) {
  OTARO_RETURN_IF_ERROR(CheckTensors(source, config));
  safetensors::Writer writer;
  OTARO_RETURN_IF_ERROR(writer.SetMetadata("format", kMasterCheckpointFormat));
  OTARO_RETURN_IF_ERROR(writer.SetMetadata("format_version", "1"));
  OTARO_RETURN_IF_ERROR(writer.SetMetadata(kModelConfigMetadataKey, ModelConfigToJson(config)));
  if (tokenizer != nullptr) {
    OTARO_RETURN_IF_ERROR(
        writer.SetMetadata(kTokenizerMetadataKey, tokenizer::VocabSpecToJson(tokenizer->spec())));
  }
  if (!provenance.source_model.empty()) {
    OTARO_RETURN_IF_ERROR(writer.SetMetadata("source_model", provenance.source_model));
  }
  if (!provenance.tuning_provenance.empty()) {
    OTARO_RETURN_IF_ERROR(writer.SetMetadata("tuning_provenance", provenance.tuning_provenance));
  }
  // The writer borrows bytes until it has written the file.
  std::vector<sefp::DenseTensor> tensors;
  const std::vector<std::string> names = ExpectedTensorNames(config);
  tensors.reserve(names.size());
  for (const std::string& name : names) {
    OTARO_ASSIGN_OR_RETURN(std::vector<float> values, source.ReadFloat32(name));
    OTARO_ASSIGN_OR_RETURN(std::vector<int64_t> shape, source.Shape(name));
    tensors.push_back(Float32Tensor(shape, values));
    OTARO_RETURN_IF_ERROR(writer.AddTensor(name, safetensors::DType::kF32, tensors.back().shape,
                                           tensors.back().bytes));
  }
  return writer.WriteAtomically(out_path);
}

}  // namespace otaro::engine
