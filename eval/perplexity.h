// Sliding-window perplexity of a token sequence under a Backend, as Hugging
// Face's "perplexity of fixed-length models" guide computes it:
//
//   prev_end = 0
//   for begin in 0, stride, 2*stride, ...:
//     end = min(begin + window, n)
//     run tokens[begin, end) from position 0 (a fresh KV sequence), all logits
//     score token i for i in [max(prev_end, begin + 1), end) with the logits
//       of position i - 1: nll_i = -log_softmax(logits[i - 1 - begin])[tokens[i]]
//     prev_end = end; stop once end == n
//
// So each window scores only the tokens the previous window did not, with as
// much left context as the window allows. The first token of a window has no
// logits to predict it, so with stride == window (non-overlapping windows) the
// first token of every window is not scored (as in Hugging Face); with
// stride < window every token but tokens[0] is scored exactly once.
// Sums are float64; log-softmax is LogSoftmaxAt (engine/runtime/sampler.h).
#ifndef OTARO_EVAL_PERPLEXITY_H_
#define OTARO_EVAL_PERPLEXITY_H_

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/runtime/backend.h"

namespace otaro::eval {

struct PerplexityResult {
  int64_t tokens = 0;          // tokens scored
  double nll_sum = 0;          // sum of -log p over them (nats)
  int64_t forward_tokens = 0;  // positions run through the model (overlap counts twice)

  double MeanNll() const { return tokens > 0 ? nll_sum / tokens : NAN; }
  double Perplexity() const { return std::exp(MeanNll()); }
};

struct PerplexityOptions {
  // Tokens per Forward call within a window (chunked prefill; bounds the
  // logits buffer to chunk x vocab floats). 0 = the whole window at once.
  int64_t chunk = 512;
  // Called after each window: (windows done, windows in all, result so far).
  std::function<void(int64_t, int64_t, const PerplexityResult&)> progress;
  // If set: resized to tokens.size(); entry i = nll of token i, NaN if unscored.
  std::vector<double>* token_nll = nullptr;
};

// InvalidArgument for window < 2, stride outside [1, window], fewer than 2
// tokens, a window longer than the backend's KV cache can hold for one
// sequence, or a precision the backend cannot run. Frees its KV sequences
// whatever happens.
absl::StatusOr<PerplexityResult> EvaluatePerplexity(engine::Backend& backend,
                                                    absl::Span<const engine::Token> tokens,
                                                    int precision, int64_t window, int64_t stride,
                                                    const PerplexityOptions& options = {});

}  // namespace otaro::eval

#endif  // OTARO_EVAL_PERPLEXITY_H_
