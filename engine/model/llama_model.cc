#include "engine/model/llama_model.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace otaro::engine {

absl::StatusOr<LmHeadPrecision> LmHeadPrecision::Parse(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  LmHeadPrecision p;
  if (lower == "request") {
    p.kind = Kind::kRequest;
    return p;
  }
  if (lower == "float32" || lower == "f32") {
    p.kind = Kind::kFloat32;
    return p;
  }
  absl::StatusOr<int> bits = sefp::ParsePrecision(text);
  if (!bits.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lm_head precision \"", text, "\": want E5M2..E5M8 (or 2..8), request or float32"));
  }
  p.kind = Kind::kFixed;
  p.bits = *bits;
  return p;
}

std::string LmHeadPrecision::Name() const {
  switch (kind) {
    case Kind::kFixed: return absl::StrCat("E5M", bits);
    case Kind::kRequest: return "request";
    case Kind::kFloat32: return "float32";
  }
  return "?";
}

absl::Status LlamaModel::Embed(int32_t token, float* out) const {
  const int64_t h = config.hidden_size;
  if (token < 0 || token >= config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("token id ", token, " outside [0, ",
                                                   config.vocab_size, ")"));
  }
  if (!embed.empty()) {
    std::memcpy(out, embed.data() + static_cast<int64_t>(token) * h, h * sizeof(float));
    return absl::OkStatus();
  }
  if (!quantized_lm_head) return absl::FailedPreconditionError("model has no embedding table");
  const sefp::PackedMatrix& planes = *quantized_lm_head->packed;
  return planes.DecodeRow(token, planes.resident_max_bits(), reconstruction, out);
}

namespace {

template <typename Fn>
void ForEachLinear(const LlamaModel& model, Fn fn) {
  for (const LlamaLayer& layer : model.layers) {
    for (const Linear* linear : {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up,
                                 &layer.down}) {
      fn(*linear);
    }
  }
  if (model.quantized_lm_head) fn(*model.quantized_lm_head);
}

}  // namespace

size_t LlamaModel::LinearWeightBytes() const {
  size_t bytes = 0;
  ForEachLinear(*this, [&](const Linear& l) {
    bytes += l.quantized() ? l.packed->BytesResident() : l.dense.size() * sizeof(float);
  });
  return bytes;
}

size_t LlamaModel::LinearBytesRead(int m) const {
  size_t bytes = 0;
  ForEachLinear(*this, [&](const Linear& l) {
    const int bits = &l == (quantized_lm_head ? &*quantized_lm_head : nullptr) ? LmHeadBits(m) : m;
    bytes += l.quantized() ? l.packed->BytesRead(bits) : l.dense.size() * sizeof(float);
  });
  return bytes;
}

size_t LlamaModel::DenseBytes() const {
  size_t floats = embed.size() + final_norm.size() + lm_head.size();
  for (const LlamaLayer& layer : layers) {
    floats += layer.input_norm.size() + layer.post_attention_norm.size() + layer.q.bias.size() +
              layer.k.bias.size() + layer.v.bias.size();
  }
  return floats * sizeof(float);
}

}  // namespace otaro::engine
