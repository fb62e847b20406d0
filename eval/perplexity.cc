#include "eval/perplexity.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/runtime/kv_sequence_guard.h"
#include "engine/runtime/sampler.h"

namespace otaro::eval {

using engine::BatchStep;
using engine::KVCache;
using engine::Logits;
using engine::SequenceStep;
using engine::Token;

absl::StatusOr<PerplexityResult> EvaluatePerplexity(engine::Backend& backend,
                                                    absl::Span<const Token> tokens, int precision,
                                                    int64_t window, int64_t stride,
                                                    const PerplexityOptions& options) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (window < 2) {
    return absl::InvalidArgumentError(absl::StrCat("window must be at least 2, not ", window));
  }
  if (stride < 1 || stride > window) {
    return absl::InvalidArgumentError(
        absl::StrCat("stride must be in [1, window=", window, "], not ", stride));
  }
  if (n < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("perplexity needs at least 2 tokens, got ", n));
  }
  if (absl::Status s = backend.CheckPrecision(precision); !s.ok()) {
    return absl::InvalidArgumentError(s.message());
  }
  KVCache& kv = backend.kv_cache();
  const int64_t span = std::min(window, n);
  if (absl::Status s = kv.CheckFits(span); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("window of ", span, " tokens: ", s.message()));
  }
  const int64_t chunk = options.chunk > 0 ? options.chunk : window;

  // Number of windows, for progress.
  int64_t num_windows = 0;
  for (int64_t begin = 0;; begin += stride) {
    ++num_windows;
    if (std::min(begin + window, n) == n) break;
  }
  if (options.token_nll != nullptr) {
    options.token_nll->assign(tokens.size(), std::numeric_limits<double>::quiet_NaN());
  }

  PerplexityResult result;
  int64_t prev_end = 0;
  int64_t done = 0;
  Logits logits;
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + window, n);
    const int64_t first_scored = std::max(prev_end, begin + 1);
    engine::KvSequenceGuard guard(kv);
    auto seq = guard.Allocate(0, end - begin);
    if (!seq.ok()) return seq.status();
    // Positions whose logits are needed: first_scored - 1 .. end - 2 (window-relative
    // minus begin). Earlier chunks still have to run for the K/V.
    for (int64_t at = begin; at < end; at += chunk) {
      const int64_t stop = std::min(at + chunk, end);
      if (absl::Status s = kv.Extend(*seq, stop - begin); !s.ok()) return s;
      BatchStep step;
      SequenceStep ss;
      ss.seq = *seq;
      ss.tokens.assign(tokens.begin() + at, tokens.begin() + stop);
      ss.start_position = at - begin;
      ss.precision = precision;
      ss.all_logits = true;
      step.sequences.push_back(std::move(ss));
      if (absl::Status s = backend.Forward(step, &logits); !s.ok()) return s;
      result.forward_tokens += stop - at;
      // Row r (position at + r) predicts token at + r + 1.
      for (int64_t r = 0; r < stop - at; ++r) {
        const int64_t target = at + r + 1;
        if (target < first_scored || target >= end) continue;
        const double nll = -engine::LogSoftmaxAt(logits.Row(0, r), tokens[target]);
        result.nll_sum += nll;
        ++result.tokens;
        if (options.token_nll != nullptr) (*options.token_nll)[target] = nll;
      }
    }
    prev_end = end;
    ++done;
    if (options.progress) options.progress(done, num_windows, result);
    if (end == n) break;
  }
  return result;
}

}  // namespace otaro::eval
