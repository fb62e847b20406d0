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

struct LlamaModel {
  ModelConfig config;
  std::vector<float> embed;  // [vocab, hidden]
  std::vector<LlamaLayer> layers;
  std::vector<float> final_norm;  // [hidden]
  // [vocab, hidden]; empty when tied to `embed` (use LmHead()).
  std::vector<float> lm_head;
  // The lm_head as SEFP planes too (LoadOptions::quantize_lm_head; SEFP.md
  // allows it by config). Every token reads the whole lm_head, so at low
  // precision it dominates the bytes of a decode step unless it is quantized.
  // When set, engines use it at each request's precision; `embed` stays
  // float32 for the token lookup.
  std::optional<Linear> quantized_lm_head;
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

  const std::vector<float>& LmHead() const { return lm_head.empty() ? embed : lm_head; }

  // Bytes held by the linear layers (all resident planes, or float32); the
  // quantized lm_head, when present, counts as one of them.
  size_t LinearWeightBytes() const;
  // Bytes of the linear layers read per token at precision m (SEFP.md).
  size_t LinearBytesRead(int m) const;
  // Bytes of embeddings, lm_head, norms and biases.
  size_t DenseBytes() const;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_MODEL_LLAMA_MODEL_H_
