#include "engine/model/llama_model.h"

namespace otaro::engine {
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
    bytes += l.quantized() ? l.packed->BytesRead(m) : l.dense.size() * sizeof(float);
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
