#include "trainer/strategy/low_precision_accumulator.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "sefp/format.h"

namespace otaro::trainer {

absl::StatusOr<LaaOptions::Reduce> ParseLaaReduce(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (name == "sum") return LaaOptions::Reduce::kSum;
  if (name == "mean") return LaaOptions::Reduce::kMean;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown laa.reduce '", text, "'; valid: sum, mean"));
}

absl::string_view LaaReduceName(LaaOptions::Reduce reduce) {
  return reduce == LaaOptions::Reduce::kMean ? "mean" : "sum";
}

absl::Status ValidateLaaOptions(const LaaOptions& options) {
  if (options.n < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("laa.n (the delayed interval N) must be >= 1, got ", options.n));
  }
  if (options.ultra_low_max_bits < sefp::kMinBits ||
      options.ultra_low_max_bits > sefp::kMasterBits) {
    return absl::InvalidArgumentError(absl::StrCat("laa.ultra_low_max_bits must be in ",
                                                   sefp::kMinBits, "..", sefp::kMasterBits,
                                                   ", got ", options.ultra_low_max_bits));
  }
  return absl::OkStatus();
}

absl::StatusOr<LowPrecisionAccumulator> LowPrecisionAccumulator::Create(
    const Strategy& strategy, const LaaOptions& options, int64_t num_params) {
  if (absl::Status s = ValidateLaaOptions(options); !s.ok()) return s;
  if (num_params < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LAA: the parameter count must be >= 0, got ", num_params));
  }
  return LowPrecisionAccumulator(strategy.uses_laa(), options, num_params);
}

absl::StatusOr<std::optional<absl::Span<float>>> LowPrecisionAccumulator::Step(
    std::optional<int> m, absl::Span<float> grad) {
  if (static_cast<int64_t>(grad.size()) != num_params_) {
    return absl::InvalidArgumentError(absl::StrCat("LAA: gradient has ", grad.size(),
                                                   " values, expected ", num_params_));
  }
  if (!IsUltraLow(m)) return std::optional<absl::Span<float>>(grad);
  if (pending_ == 0) {
    // Algorithm 1 line 8: the first gradient initialises the accumulator, so a
    // released accumulator never needs clearing.
    sum_.assign(grad.begin(), grad.end());
  } else {
    for (size_t k = 0; k < grad.size(); ++k) sum_[k] += grad[k];
  }
  ++pending_;
  if (pending_ < options_.n) return std::optional<absl::Span<float>>();
  return std::optional<absl::Span<float>>(Release(pending_));
}

std::optional<absl::Span<float>> LowPrecisionAccumulator::Flush() {
  if (pending_ == 0) return std::nullopt;
  return Release(pending_);
}

absl::Span<float> LowPrecisionAccumulator::Release(int count) {
  if (options_.reduce == LaaOptions::Reduce::kMean && count > 1) {
    const float divisor = static_cast<float>(count);
    for (float& g : sum_) g /= divisor;
  }
  pending_ = 0;
  return absl::MakeSpan(sum_);
}

absl::Span<const float> LowPrecisionAccumulator::accumulator() const {
  if (pending_ == 0) return {};
  return sum_;
}

absl::Status LowPrecisionAccumulator::Restore(int pending, absl::Span<const float> accumulator) {
  const int max_pending = active_ ? options_.n - 1 : 0;
  if (pending < 0 || pending > max_pending) {
    return absl::InvalidArgumentError(absl::StrCat("LAA state: pending count ", pending,
                                                   " is outside 0..", max_pending,
                                                   active_ ? "" : " (LAA is off for this strategy)"));
  }
  if (pending > 0 && static_cast<int64_t>(accumulator.size()) != num_params_) {
    return absl::InvalidArgumentError(absl::StrCat("LAA state: accumulator has ",
                                                   accumulator.size(), " values, expected ",
                                                   num_params_));
  }
  pending_ = pending;
  if (pending > 0 && accumulator.data() != sum_.data()) {
    sum_.assign(accumulator.begin(), accumulator.end());
  }
  return absl::OkStatus();
}

}  // namespace otaro::trainer
