// Where a model's weights come from, independent of the file format. Every
// source speaks the Hugging Face tensor names and layouts ([out, in] row-major
// linear weights, rotate_half RoPE order for q/k), so the SEFP converter, the
// engines and the trainer are written once for one naming.
//
//   model.embed_tokens.weight                      [vocab, hidden]
//   model.layers.{i}.input_layernorm.weight        [hidden]
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight
//   model.layers.{i}.self_attn.{q,k,v}_proj.bias   (qwen2)
//   model.layers.{i}.post_attention_layernorm.weight
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight
//   model.norm.weight, lm_head.weight (absent when tied)
#ifndef OTARO_ENGINE_MODEL_TENSOR_SOURCE_H_
#define OTARO_ENGINE_MODEL_TENSOR_SOURCE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/model_config.h"

namespace otaro::engine {

class TensorSource {
 public:
  virtual ~TensorSource() = default;

  // Canonical names of every tensor the source holds.
  virtual std::vector<std::string> Names() const = 0;
  virtual bool Has(absl::string_view name) const = 0;
  // Shape in Hugging Face order; NotFound naming the tensor if absent.
  virtual absl::StatusOr<std::vector<int64_t>> Shape(absl::string_view name) const = 0;
  // The values as float32 (converted or dequantized), Hugging Face layout.
  virtual absl::StatusOr<std::vector<float>> ReadFloat32(absl::string_view name) const = 0;
  // The storage type of a tensor as the file has it ("F32", "BF16", "Q4_1", ...).
  virtual std::string StorageType(absl::string_view name) const = 0;
  // e.g. "Hugging Face folder /m (2 shards)".
  virtual std::string Describe() const = 0;
};

// Opens a Hugging Face model folder: config.json, generation_config.json,
// model.safetensors or model-0000x-of-0000y.safetensors + index.json; F32, F16
// and BF16 tensors, memory-mapped.
absl::StatusOr<std::unique_ptr<TensorSource>> OpenHfFolder(const std::string& dir,
                                                           ModelConfig* config);

// Opens a GGUF file (v2/v3): names mapped to the Hugging Face ones, q/k rows
// un-permuted, quantized types dequantized.
absl::StatusOr<std::unique_ptr<TensorSource>> OpenGguf(const std::string& path,
                                                       ModelConfig* config);

// llama.cpp's GGUF name of each Hugging Face tensor name of a model with
// `config`, and for LLaMA's q/k weights the number of heads whose rows GGUF
// interleaves (gguf::ApplyGgufRotaryPermutation; 0 = stored as is). Optional
// tensors (biases, lm_head unless tied) are listed too: readers keep the ones a
// file has, writers the ones the model has. The GGUF reader and `otaro export`
// share this table.
struct GgufTensorName {
  std::string hf;
  std::string gguf;
  int64_t permute_heads = 0;
};
std::vector<GgufTensorName> GgufTensorNames(const ModelConfig& config);

// Opens a llama2.c checkpoint (Karpathy's run.c format, "version 0": a 7-int32
// header, then float32 weights). It has no magic number: a file is taken as
// llama2.c only when its header is plausible and its size matches exactly.
// NotFound if it is not one.
absl::StatusOr<std::unique_ptr<TensorSource>> OpenLlama2c(const std::string& path,
                                                          ModelConfig* config);

// The trainer's float32 master checkpoint: one safetensors file, tensors under
// the Hugging Face names, __metadata__ format "otaro-master", format_version
// "1", the model config (ModelConfigToJson) under kModelConfigMetadataKey and,
// when the model has one, the tokenizer (VocabSpecToJson) under
// kTokenizerMetadataKey. SEFP checkpoints use the same two keys. Unlike a SEFP
// checkpoint it keeps full precision, so tuning can continue from it.
inline constexpr char kMasterCheckpointFormat[] = "otaro-master";
inline constexpr char kModelConfigMetadataKey[] = "x.model_config";
inline constexpr char kTokenizerMetadataKey[] = "x.tokenizer";
absl::StatusOr<std::unique_ptr<TensorSource>> OpenMasterCheckpoint(const std::string& path,
                                                                   ModelConfig* config);

// The tensor names a model with this config must have, in load order.
std::vector<std::string> ExpectedTensorNames(const ModelConfig& config);

// Checks that every expected tensor exists with the expected shape; the error
// names the first tensor that is missing or wrong.
absl::Status CheckTensors(const TensorSource& source, const ModelConfig& config);

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_MODEL_TENSOR_SOURCE_H_
