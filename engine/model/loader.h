// Loads any supported model file into a LlamaModel, and converts any of them
// into the project's SEFP checkpoint.
//
// Formats (detected from the path, not its name):
//   sefp  a SEFP checkpoint (safetensors, __metadata__ format "otaro-sefp"):
//         the fastest to load, and what tuning jobs publish. Self-contained:
//         it carries the model config and the tokenizer.
//   hf    a Hugging Face folder (config.json + safetensors shards).
//   gguf  a GGUF v2/v3 file (quantized types are dequantized, then SEFP-encoded).
//   llama2c  a llama2.c checkpoint (run.c's format), with tokenizer.bin or
//         tok<vocab>.bin beside it.
//   master  the trainer's float32 master checkpoint (tensor_source.h): what
//         tuning continues from; it loads like any float model.
#ifndef OTARO_ENGINE_MODEL_LOADER_H_
#define OTARO_ENGINE_MODEL_LOADER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/llama_model.h"
#include "engine/model/tensor_source.h"
#include "sefp/checkpoint.h"

namespace otaro::engine {

enum class ModelFormat { kSefp, kHfFolder, kGguf, kLlama2c, kMaster };
absl::string_view ModelFormatName(ModelFormat format);
absl::StatusOr<ModelFormat> DetectModelFormat(const std::string& path);

// Called after each tensor: (tensors done, tensors in all, the tensor's name).
using LoadProgress = std::function<void(int64_t done, int64_t total, absl::string_view name)>;

struct LoadOptions {
  // Keep SEFP planes down to this precision (2..8); requests above it are refused.
  int resident_max_bits = sefp::kMasterBits;
  // false: keep the linear layers in float32 (reference runs; no SEFP).
  bool quantize = true;
  // How the lm_head is held and read (llama_model.h); ignored when quantize is
  // false (a float32 reference model keeps everything float32).
  LmHeadPrecision lm_head;
  // Reconstruction for models that are not SEFP checkpoints (a checkpoint
  // records the mode it was tuned for, and that mode is used).
  sefp::Reconstruction reconstruction = sefp::Reconstruction::kMidpoint;
  LoadProgress progress;
};

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadModel(const std::string& path,
                                                      const LoadOptions& options = {});

// The float32 weights of a model file, for tuning: OTARO.md trains from the
// original weights, so a SEFP checkpoint (quantized linear layers) is refused
// with an error that says what to pass instead.
absl::StatusOr<std::unique_ptr<TensorSource>> OpenModelSource(const std::string& path,
                                                              ModelConfig* config);

// A LlamaModel from any tensor source, e.g. the trainer's parameters held in
// memory (evaluation at every precision through the real engine). `source_name`
// fills LlamaModel::source.
absl::StatusOr<std::unique_ptr<LlamaModel>> BuildModel(
    const TensorSource& source, const ModelConfig& config,
    std::unique_ptr<tokenizer::Tokenizer> tokenizer, const std::string& source_name,
    const LoadOptions& options = {});

// The tokenizer that comes with a model (GGUF metadata, tokenizer.json in a HF
// folder, or the one a SEFP checkpoint carries). NotFound if it has none.
absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> LoadModelTokenizer(const std::string& path);

// What a conversion did, for `otaro convert`'s summary.
struct ConversionSummary {
  int64_t parameters = 0;
  int64_t linear_parameters = 0;
  int64_t saturated_groups = 0;
  int64_t tensors = 0;
};

// Converts an HF folder, GGUF, llama2.c or master checkpoint into a SEFP
// checkpoint written atomically at `out_path`.
absl::StatusOr<ConversionSummary> ConvertToSefpCheckpoint(const std::string& in_path,
                                                          const std::string& out_path,
                                                          sefp::Reconstruction reconstruction,
                                                          const LoadProgress& progress = {});

// What a written checkpoint records besides the weights.
struct CheckpointProvenance {
  std::string source_model;       // where the weights came from
  std::string tuning_provenance;  // JSON: job, strategy, data, evaluation ...
};

// The SEFP checkpoint of any tensor source (the one implementation behind
// ConvertToSefpCheckpoint and the trainer's export). `tokenizer` may be null.
absl::StatusOr<ConversionSummary> WriteSefpCheckpoint(const TensorSource& source,
                                                      const ModelConfig& config,
                                                      const tokenizer::Tokenizer* tokenizer,
                                                      sefp::Reconstruction reconstruction,
                                                      const CheckpointProvenance& provenance,
                                                      const std::string& out_path,
                                                      const LoadProgress& progress = {});

// The float32 master checkpoint of any tensor source (tensor_source.h),
// written crash-safely. `tokenizer` may be null.
absl::Status WriteMasterCheckpoint(const TensorSource& source, const ModelConfig& config,
                                   const tokenizer::Tokenizer* tokenizer,
                                   const CheckpointProvenance& provenance,
                                   const std::string& out_path);

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_MODEL_LOADER_H_
