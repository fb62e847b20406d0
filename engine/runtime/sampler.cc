#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace otaro::engine {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The largest logit and whether any is NaN, in one pass over independent
// lanes: a greedy step of 16 sequences scans 16 x 49152 logits on the
// scheduler's thread while the engine's other threads wait, and the plain
// loop (a compare chained through the running maximum, and a NaN check that
// exits early) took ~4% of a 16-stream server's time. `v > lane ? v : lane`
// skips NaN and keeps the first of equal values, as the scalar loop did.
struct MaxScan {
  float max;
  bool has_nan;
};
MaxScan ScanMax(absl::Span<const float> logits) {
  constexpr size_t kLanes = 16;
  float lane[kLanes];
  bool nan[kLanes];
  for (size_t j = 0; j < kLanes; ++j) {
    lane[j] = -INFINITY;
    nan[j] = false;
  }
  const size_t n = logits.size();
  const float* x = logits.data();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      const float v = x[i + j];
      nan[j] |= v != v;
      lane[j] = v > lane[j] ? v : lane[j];
    }
  }
  MaxScan out = {-INFINITY, false};
  for (; i < n; ++i) {
    out.has_nan |= x[i] != x[i];
    out.max = x[i] > out.max ? x[i] : out.max;
  }
  for (size_t j = 0; j < kLanes; ++j) {
    out.has_nan |= nan[j];
    out.max = lane[j] > out.max ? lane[j] : out.max;
  }
  return out;
}

// The lowest id holding `max` (no logit is NaN): ties go to the lowest id.
int32_t FirstIndexOf(absl::Span<const float> logits, float max) {
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == max) return static_cast<int32_t>(i);
  }
  return 0;  // not reached: max is one of the logits
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be finite and >= 0, got ", p.temperature));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", p.top_k));
  }
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  return absl::OkStatus();
}

double SampleUniform(uint64_t seed, uint64_t step) {
  // Two rounds so that nearby (seed, step) pairs give unrelated numbers.
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ step);
  return static_cast<double>(bits >> 11) * 0x1.0p-53;  // 53 random bits
}

double LogSoftmaxAt(absl::Span<const float> logits, int32_t id) {
  double max = -INFINITY;
  for (float v : logits) max = std::max(max, static_cast<double>(v));
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
  return static_cast<double>(logits[id]) - max - std::log(sum);
}

absl::StatusOr<SampledToken> Sample(absl::Span<const float> logits, const SamplingParams& params,
                                    uint64_t step, bool with_logprob) {
  if (absl::Status s = ValidateSamplingParams(params); !s.ok()) return s;
  if (logits.empty()) return absl::InvalidArgumentError("no logits to sample from");
  const MaxScan scan = ScanMax(logits);
  if (scan.has_nan) return absl::InternalError("logits contain NaN");
  SampledToken out;
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (params.temperature == 0 || params.top_k == 1) {
    out.id = FirstIndexOf(logits, scan.max);
    out.logprob = with_logprob ? LogSoftmaxAt(logits, out.id) : std::nan("");
    return out;
  }

  // Candidates, most likely first (ties: lower id first) -- only as sorted as
  // top-k / top-p need.
  std::vector<int32_t> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  auto more_likely = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  auto weight = [&](int32_t id) {
    return std::exp((static_cast<double>(logits[id]) - scan.max) / params.temperature);
  };
  std::vector<double> w;
  double total = 0;
  if (params.top_k > 0 && params.top_k < vocab) {
    std::partial_sort(ids.begin(), ids.begin() + params.top_k, ids.end(), more_likely);
    ids.resize(params.top_k);
  } else if (params.top_p < 1) {
    // The smallest set of most likely tokens whose mass (at the temperature,
    // float64) reaches top_p of the whole. Sorting the whole vocabulary for
    // it took ~4 ms a row (49152 ids); the set is often far smaller, so the
    // 256 most likely are sorted first, and everything only when they fall
    // short. (Widening 4x at a time instead cost 3x the whole sort on a flat
    // distribution: partial_sort's heap is slow for large prefixes.)
    for (int32_t id : ids) total += weight(id);
    const double wanted = params.top_p * total;
    for (int64_t sorted = std::min<int64_t>(vocab, 256);; sorted = vocab) {
      if (sorted == vocab) {
        std::sort(ids.begin(), ids.end(), more_likely);
      } else {
        std::partial_sort(ids.begin(), ids.begin() + sorted, ids.end(), more_likely);
      }
      double mass = 0;
      int64_t n = 0;
      while (n < sorted && mass < wanted) mass += weight(ids[n++]);
      if (mass >= wanted || sorted == vocab) {
        ids.resize(n);
        break;
      }
    }
  }

  // Probabilities at the temperature, in float64, over the kept candidates
  // (for top_p: the nucleus, renormalized to its own mass).
  w.resize(ids.size());
  total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    w[i] = weight(ids[i]);
    total += w[i];
  }
  const double target = SampleUniform(params.seed, step) * total;
  double cumulative = 0;
  out.id = ids.back();  // rounding can leave target just past the last sum
  for (size_t i = 0; i < w.size(); ++i) {
    cumulative += w[i];
    if (target < cumulative) {
      out.id = ids[i];
      break;
    }
  }
  out.logprob = with_logprob ? LogSoftmaxAt(logits, out.id) : std::nan("");
  return out;
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) {
  for (std::string& s : stops) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string StopStringMatcher::Push(absl::string_view text) {
  if (stopped_) return "";
  pending_.append(text.data(), text.size());
  // The earliest stop string occurrence ends the text.
  size_t first = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = pending_.find(s);
    if (at != std::string::npos && (first == std::string::npos || at < first)) {
      first = at;
      matched_ = s;
    }
  }
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, pending_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopStringMatcher::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace otaro::engine
