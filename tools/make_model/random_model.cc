#include "tools/make_model/random_model.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "sefp/format.h"

namespace otaro::tools {
namespace {

// splitmix64: a fast, seedable stream; each tensor gets its own stream so the
// values do not depend on the order tensors are made in.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1].
  double Uniform() { return (static_cast<double>(Next() >> 11) + 1.0) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

uint64_t HashName(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// n values ~N(0, stddev) (Box-Muller), deterministic in (seed, name).
void FillNormal(uint64_t seed, const std::string& name, double stddev, float* out, size_t n) {
  Rng rng(HashName(seed, name));
  constexpr double kTwoPi = 6.283185307179586;
  for (size_t i = 0; i < n; i += 2) {
    const double r = stddev * std::sqrt(-2.0 * std::log(rng.Uniform()));
    const double a = kTwoPi * rng.Uniform();
    out[i] = static_cast<float>(r * std::cos(a));
    if (i + 1 < n) out[i + 1] = static_cast<float>(r * std::sin(a));
  }
}

sefp::DenseTensor DenseF32(std::vector<int64_t> shape) {
  sefp::DenseTensor t;
  t.dtype = safetensors::DType::kF32;
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  t.shape = std::move(shape);
  t.bytes.resize(static_cast<size_t>(n) * sizeof(float));
  return t;
}

sefp::DenseTensor Ones(int64_t n) {
  sefp::DenseTensor t = DenseF32({n});
  const float one = 1.0f;
  for (int64_t i = 0; i < n; ++i) std::memcpy(t.bytes.data() + 4 * i, &one, 4);
  return t;
}

sefp::DenseTensor RandomDense(std::vector<int64_t> shape, uint64_t seed, const std::string& name,
                              double stddev) {
  sefp::DenseTensor t = DenseF32(std::move(shape));
  // The bytes buffer is not float-aligned by type; fill through a float vector
  // in slices to bound the extra memory.
  const size_t n = t.bytes.size() / sizeof(float);
  if (reinterpret_cast<uintptr_t>(t.bytes.data()) % alignof(float) == 0) {
    FillNormal(seed, name, stddev, reinterpret_cast<float*>(t.bytes.data()), n);
  } else {
    std::vector<float> values(n);
    FillNormal(seed, name, stddev, values.data(), n);
    std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  }
  return t;
}

engine::ModelConfig Base() {
  engine::ModelConfig c;
  c.architecture = "llama";
  c.rms_norm_eps = 1e-5;
  return c;
}

}  // namespace

std::vector<std::string> RandomModelShapes() { return {"llama-3.2-1b", "smollm2-135m", "tiny"}; }

absl::StatusOr<engine::ModelConfig> RandomModelShape(absl::string_view name) {
  engine::ModelConfig c = Base();
  if (name == "llama-3.2-1b") {
    // meta-llama/Llama-3.2-1B config.json; context 131072 capped at 8192.
    c.vocab_size = 128256;
    c.hidden_size = 2048;
    c.intermediate_size = 8192;
    c.num_layers = 16;
    c.num_heads = 32;
    c.num_kv_heads = 8;
    c.head_dim = 64;
    c.max_position = 8192;
    c.rope_theta = 500000;
    c.rope_scaling.factor = 32;
    c.rope_scaling.low_freq_factor = 1;
    c.rope_scaling.high_freq_factor = 4;
    c.rope_scaling.original_max_position = 8192;
    c.tie_word_embeddings = true;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128008, 128009};
  } else if (name == "smollm2-135m") {
    // HuggingFaceTB/SmolLM2-135M config.json.
    c.vocab_size = 49152;
    c.hidden_size = 576;
    c.intermediate_size = 1536;
    c.num_layers = 30;
    c.num_heads = 9;
    c.num_kv_heads = 3;
    c.head_dim = 64;
    c.max_position = 8192;
    c.rope_theta = 100000;
    c.tie_word_embeddings = true;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else if (name == "tiny") {
    // For tests: an untied lm_head and a K that is not a multiple of 64.
    c.vocab_size = 300;
    c.hidden_size = 96;
    c.intermediate_size = 200;
    c.num_layers = 2;
    c.num_heads = 4;
    c.num_kv_heads = 2;
    c.head_dim = 24;
    c.max_position = 256;
    c.rope_theta = 10000;
    c.tie_word_embeddings = false;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown shape '", name, "'; known: ",
                                                   absl::StrJoin(RandomModelShapes(), ", ")));
  }
  OTARO_RETURN_IF_ERROR(engine::ValidateConfig(c));
  return c;
}

absl::StatusOr<sefp::Checkpoint> MakeRandomCheckpoint(const engine::ModelConfig& c,
                                                      const RandomModelOptions& options) {
  OTARO_RETURN_IF_ERROR(engine::ValidateConfig(c));
  if (!(options.stddev > 0)) return absl::InvalidArgumentError("stddev must be positive");
  if (c.attention_bias) {
    return absl::UnimplementedError("random models with attention biases (qwen2)");
  }
  sefp::Checkpoint checkpoint;
  checkpoint.metadata.reconstruction = sefp::Reconstruction::kMidpoint;
  checkpoint.metadata.source_model =
      absl::StrCat("random LLaMA-shaped model (otaro make-model, seed ", options.seed, ")");
  checkpoint.metadata.tuning_provenance = "none: random weights ~N(0, " +
                                          absl::StrCat(options.stddev) + ") for benchmarks";
  checkpoint.metadata.extra["model_config"] = engine::ModelConfigToJson(c);

  const int64_t total = 2 + 9 * c.num_layers + (c.tie_word_embeddings ? 0 : 1);
  int64_t done = 0;
  auto step = [&](const std::string& name) {
    if (options.progress) options.progress(++done, total, name);
  };
  auto add_dense = [&](const std::string& name, sefp::DenseTensor t) {
    checkpoint.dense.emplace(name, std::move(t));
    step(name);
  };
  add_dense("model.embed_tokens.weight",
            RandomDense({c.vocab_size, c.hidden_size}, options.seed, "model.embed_tokens.weight",
                        options.stddev));
  struct LinearSpec {
    const char* tail;
    int64_t rows, cols;
  };
  const LinearSpec linears[] = {
      {"self_attn.q_proj.weight", c.q_dim(), c.hidden_size},
      {"self_attn.k_proj.weight", c.kv_dim(), c.hidden_size},
      {"self_attn.v_proj.weight", c.kv_dim(), c.hidden_size},
      {"self_attn.o_proj.weight", c.hidden_size, c.q_dim()},
      {"mlp.gate_proj.weight", c.intermediate_size, c.hidden_size},
      {"mlp.up_proj.weight", c.intermediate_size, c.hidden_size},
      {"mlp.down_proj.weight", c.hidden_size, c.intermediate_size},
  };
  std::vector<float> values;  // reused: one linear weight at a time
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string prefix = absl::StrCat("model.layers.", i, ".");
    add_dense(prefix + "input_layernorm.weight", Ones(c.hidden_size));
    add_dense(prefix + "post_attention_layernorm.weight", Ones(c.hidden_size));
    for (const LinearSpec& l : linears) {
      const std::string name = prefix + l.tail;
      values.resize(static_cast<size_t>(l.rows * l.cols));
      FillNormal(options.seed, name, options.stddev, values.data(), values.size());
      OTARO_ASSIGN_OR_RETURN(sefp::SefpTensor tensor,
                             sefp::EncodeTensor(name, values, l.rows, l.cols));
      checkpoint.quantized.emplace(name, std::move(tensor));
      step(name);
    }
  }
  add_dense("model.norm.weight", Ones(c.hidden_size));
  if (!c.tie_word_embeddings) {
    add_dense("lm_head.weight", RandomDense({c.vocab_size, c.hidden_size}, options.seed,
                                            "lm_head.weight", options.stddev));
  }
  return checkpoint;
}

}  // namespace otaro::tools
