// `otaro export`: any model otaro loads, written for the standard tools: a GGUF
// file llama.cpp loads (and quantizes), or a Hugging Face folder transformers
// loads. The pipeline comparison of issue 15 (fine-tune in float, quantize
// with llama.cpp) starts here.
//
// What is written:
//   gguf  GGUF v3, LLaMA (or Qwen2) metadata as llama.cpp's convert_hf_to_gguf
//         writes it, llama.cpp's tensor names (GgufTensorNames), q/k rows
//         re-permuted (gguf::ApplyGgufRotaryPermutation: the reader undoes it,
//         so a round trip is exact), 2-D weights at `dtype` and 1-D ones
//         (norms, biases) in F32 as llama.cpp keeps them. The tokenizer: every
//         tokenizer.* key of the source when it is a GGUF file, else built from
//         the tokenizer otaro loaded (tokenizer.ggml.model llama | gpt2).
//   hf    a folder: config.json, generation_config.json, model.safetensors (every
//         tensor at `dtype`, lm_head omitted when tied), and the tokenizer: the
//         source folder's own files when the source is a Hugging Face folder, else
//         tokenizer.json + tokenizer_config.json built from otaro's tokenizer.
// The source is float weights (HF folder, GGUF, llama2.c, master checkpoint),
// or a SEFP checkpoint read at precision `bits`: its linear layers decoded at
// E5M<bits> with the reconstruction it records, exactly the weights the engine
// multiplies by at that precision. `bits` with a float source shows the same
// view of it: each linear layer SEFP-encoded, then decoded at E5M<bits>.
#ifndef OTARO_ENGINE_MODEL_EXPORT_H_
#define OTARO_ENGINE_MODEL_EXPORT_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/loader.h"
#include "engine/model/tensor_source.h"
#include "sefp/format.h"

namespace otaro::engine {

enum class ExportFormat { kGguf, kHfFolder };
enum class ExportDType { kF32, kF16, kBf16 };
// "gguf" | "hf"; "f32" | "f16" | "bf16". InvalidArgument listing the valid ones.
absl::StatusOr<ExportFormat> ParseExportFormat(absl::string_view text);
absl::StatusOr<ExportDType> ParseExportDType(absl::string_view text);

struct ExportOptions {
  ExportFormat format = ExportFormat::kGguf;
  ExportDType dtype = ExportDType::kF32;
  // 0: the weights as they are (float sources only). 2..8: linear layers at
  // E5M<bits> (required for a SEFP checkpoint).
  int bits = 0;
  // For a float source with bits: how its SEFP encoding is read back. A SEFP
  // checkpoint always uses its own.
  sefp::Reconstruction reconstruction = sefp::Reconstruction::kMidpoint;
  LoadProgress progress;
};

struct ExportSummary {
  std::string source;  // what was read, e.g. "SEFP checkpoint m.sefp at E5M4 (truncate)"
  int64_t tensors = 0;
  int64_t parameters = 0;
};

absl::StatusOr<ExportSummary> ExportModel(const std::string& model_path,
                                          const std::string& out_path,
                                          const ExportOptions& options);

// The float weights `ExportModel` writes (the source as described above), for
// tests and tools that want them without a file.
absl::StatusOr<std::unique_ptr<TensorSource>> OpenExportSource(const std::string& model_path,
                                                               const ExportOptions& options,
                                                               ModelConfig* config);

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_MODEL_EXPORT_H_
