// LLaMA-shaped models with random weights, made directly as SEFP checkpoints
// (for benchmarks: speed does not depend on the values). Linear weights are
// ~N(0, std) SEFP-encoded; embeddings (and an untied lm_head) ~N(0, std) in
// float32; norm weights are 1. No tokenizer: prompts must be token ids.
#ifndef OTARO_TOOLS_MAKE_MODEL_RANDOM_MODEL_H_
#define OTARO_TOOLS_MAKE_MODEL_RANDOM_MODEL_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/model_config.h"
#include "sefp/checkpoint.h"

namespace otaro::tools {

// Known shapes: "llama-3.2-1b", "smollm2-135m", "tiny".
std::vector<std::string> RandomModelShapes();
absl::StatusOr<engine::ModelConfig> RandomModelShape(absl::string_view name);

struct RandomModelOptions {
  uint64_t seed = 1;
  double stddev = 0.02;
  // Called after each tensor: (done, total, name).
  std::function<void(int64_t, int64_t, const std::string&)> progress;
};

// The whole checkpoint in memory (metadata x.model_config set; no tokenizer).
absl::StatusOr<sefp::Checkpoint> MakeRandomCheckpoint(const engine::ModelConfig& config,
                                                      const RandomModelOptions& options);

}  // namespace otaro::tools

#endif  // OTARO_TOOLS_MAKE_MODEL_RANDOM_MODEL_H_
