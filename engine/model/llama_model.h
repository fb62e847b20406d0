// A LLaMA-family model in memory, ready for inference: linear layers as SEFP
// bit-planes (or float32 for unquantized reference runs), everything else in
// float32, plus the tokenizer. Engines read it; they never touch files.
#ifndef OTARO_ENGINE_MODEL_LLAMA_MODEL_H_
#define OTARO_ENGINE_MODEL_LLAMA_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/model_config.h"
#include "engine/tokenizer/tokenizer.h"
#include "sefp/format.h"
#include "sefp/layout.h"

namespace otaro::engine {

// y = W x (+ b) with W [out_features, in_features].
struct Linear {
  int64_t out_features = 0;
  int64_t in_features = 0;
  // SEFP planes resident down to the model's resident_max_bits (quantized models).
  std::optional<sefp::PackedMatrix> packed;
  // Row-major float32 weights (unquantized models).
  std::vector<float> dense;
  // [out_features], or empty.
  std::vector<float> bias;

  bool quantized() const { return packed.has_value(); }
};

struct LlamaLayer {
  std::vector<float> input_norm;           // [hidden]
  Linear q, k, v, o;                       // attention
  std::vector<float> post_attention_norm;  // [hidden]
  Linear gate, up, down;                   // SwiGLU MLP
};

// How the output projection (lm_head) is held and at which precision it is
// read. Every token's logits read all of it (49152 x 576 for SmolLM2), so as
// float32 it is most of a low-precision decode step's bytes.
struct LmHeadPrecision {
  enum class Kind {
    kFixed,    // SEFP planes, always read at `bits` (E5M8: near-lossless, the default)
    kRequest,  // SEFP planes, read at each request's precision
    kFloat32,  // float32, as the source stores it
  };
  Kind kind = Kind::kFixed;
  int bits = sefp::kMasterBits;  // kFixed only

  // "E5M8" or "8" (fixed, 2..8), "request", "float32".
  static absl::StatusOr<LmHeadPrecision> Parse(absl::string_view text);
  // The same spellings back ("E5M8", "request", "float32").
  std::string Name() const;
};

struct LlamaModel {
  ModelConfig config;
  // [vocab, hidden]; empty when the embedding is tied to a SEFP lm_head: the
  // rows are then decoded from its planes (Embed()), and no float32 copy of the
  // table stays in memory.
  std::vector<float> embed;
  std::vector<LlamaLayer> layers;
  std::vector<float> final_norm;  // [hidden]
  // [vocab, hidden] float32; empty when tied to `embed` (use LmHead()) or
  // held as SEFP (quantized_lm_head).
  std::vector<float> lm_head;
  // The lm_head as SEFP planes (SEFP.md allows it by config), read as
  // lm_head_precision says; unset for LmHeadPrecision::Kind::kFloat32.
  std::optional<Linear> quantized_lm_head;
  LmHeadPrecision lm_head_precision;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;

  // Whether the linear layers are SEFP (else float32), down to which precision
  // they are resident, and how mantissas are reconstructed.
  bool quantized = true;
  int resident_max_bits = sefp::kMasterBits;
  sefp::Reconstruction reconstruction = sefp::Reconstruction::kMidpoint;

  // Where it came from: the path and its format ("sefp", "hf", "gguf").
  std::string source;
  std::string source_format;
  // Groups whose exponent saturated during encoding (SEFP.md), all tensors.
  int64_t saturated_groups = 0;

  // The float32 lm_head (tied: the embedding); empty when it is SEFP.
  const std::vector<float>& LmHead() const {
    return quantized_lm_head || !lm_head.empty() ? lm_head : embed;
  }
  // Token t's embedding row (hidden floats): from `embed`, or decoded from the
  // tied SEFP lm_head at the most precise planes it holds (E5M8 by default:
  // near-lossless).
  absl::Status Embed(int32_t token, float* out) const;
  // The precision the lm_head is read at for a request at precision m.
  int LmHeadBits(int m) const {
    return lm_head_precision.kind == LmHeadPrecision::Kind::kFixed ? lm_head_precision.bits : m;
  }

  // Bytes held by the linear layers (all resident planes, or float32); the
  // quantized lm_head, when present, counts as one of them.
  size_t LinearWeightBytes() const;
  // Bytes of the linear layers read per token at precision m (SEFP.md); a SEFP
  // lm_head counts at the precision it is read at (LmHeadBits(m)).
  size_t LinearBytesRead(int m) const;
  // Bytes of embeddings, lm_head, norms and biases.
  size_t DenseBytes() const;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_MODEL_LLAMA_MODEL_H_
