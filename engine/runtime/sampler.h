// Choosing the next token from logits, and deciding when a generation stops.
//
// Sampling is a pure function of (logits, params, seed, step index): the random
// number for the i-th generated token comes from a counter-based generator
// (SplitMix64 of seed and i), not from shared state, so the same seed and the
// same logits give the same token whatever else runs beside the request.
#ifndef OTARO_ENGINE_RUNTIME_SAMPLER_H_
#define OTARO_ENGINE_RUNTIME_SAMPLER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace otaro::engine {

struct SamplingParams {
  // 0 = greedy (argmax; ties go to the lowest id). Else logits / temperature.
  double temperature = 0;
  // Keep the k most likely tokens; 0 = all.
  int64_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability (after top_k)
  // reaches top_p; 1 = all.
  double top_p = 1;
  uint64_t seed = 0;
};

// InvalidArgument naming the field: temperature < 0 or not finite, top_k < 0,
// top_p outside (0, 1].
absl::Status ValidateSamplingParams(const SamplingParams& params);

struct SampledToken {
  int32_t id = -1;
  // log p(id) under the model's distribution: log-softmax of the raw logits
  // (temperature 1, before top-k / top-p), computed in float64; NaN when the
  // caller did not ask for it (it costs a pass of exp over the vocabulary).
  double logprob = 0;
};

// The uniform [0, 1) number for generated token `step` of a request with `seed`.
double SampleUniform(uint64_t seed, uint64_t step);

// Log-softmax of logits[id] in float64.
double LogSoftmaxAt(absl::Span<const float> logits, int32_t id);

// Picks a token. `step` is the index of the token being generated (0 for the
// first), which keys the random number. with_logprob = false leaves
// SampledToken::logprob NaN (the choice of token does not depend on it).
absl::StatusOr<SampledToken> Sample(absl::Span<const float> logits, const SamplingParams& params,
                                    uint64_t step, bool with_logprob = true);

// Stop strings on streamed text. Push takes the text a token completed and
// returns what may be shown now: text that could still turn out to be the start
// of a stop string is held back until it cannot. When a stop string appears,
// the text before it is released, the rest is dropped, and stopped() is true.
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);

  std::string Push(absl::string_view text);
  // At the end of a generation: whatever is held back.
  std::string Flush();
  bool stopped() const { return stopped_; }
  // The stop string that matched (empty if none).
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_RUNTIME_SAMPLER_H_
