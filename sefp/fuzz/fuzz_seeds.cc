#include "sefp/fuzz/fuzz_seeds.h"

#include <cmath>

#include "common/safetensors/safetensors.h"
#include "sefp/checkpoint.h"

namespace otaro::sefp::fuzz {

std::vector<std::string> SeedFiles() {
  std::vector<std::string> seeds;
  for (int variant = 0; variant < 3; ++variant) {
    Checkpoint c;
    c.metadata.reconstruction = variant == 1 ? Reconstruction::kTruncate : Reconstruction::kMidpoint;
    c.metadata.source_model = "seed";
    c.metadata.tuning_provenance = "{}";
    const int64_t rows = 3 + variant, cols = variant == 0 ? 44 : 64 * variant + 20;
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < w.size(); ++i) w[i] = std::sin(static_cast<float>(i) * 0.7f) * (i % 5 == 0 ? 0.0f : 0.3f);
    c.quantized["layer.w"] = *EncodeTensor("seed", w, rows, cols);
    if (variant == 2) c.quantized["layer.v"] = *EncodeTensor("seed", std::vector<float>(8 * 64, 0.0f), 8, 64);
    DenseTensor d;
    d.dtype = variant == 0 ? safetensors::DType::kF32 : safetensors::DType::kBF16;
    d.shape = {2};
    d.bytes.assign(variant == 0 ? 8 : 4, 0x3f);
    c.dense["norm"] = d;
    seeds.push_back(*SerializeCheckpoint(c));
  }
  // A generic (non-SEFP) safetensors file, like a Hugging Face model.
  safetensors::Writer hf;
  static const float kData[6] = {1, 2, 3, 4, 5, 6};
  (void)hf.SetMetadata("format", "pt");
  (void)hf.AddTensor("model.embed_tokens.weight", safetensors::DType::kF32, {2, 3},
                     {reinterpret_cast<const uint8_t*>(kData), sizeof(kData)});
  seeds.push_back(hf.Serialize());
  return seeds;
}

}  // namespace otaro::sefp::fuzz
