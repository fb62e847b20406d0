// The tuning strategy switch (../shared/design/OTARO.md "Strategies"): one name
// selects OTARo itself or one of the paper's baselines, so every experiment runs
// the same loop with a different bit-width policy and with LAA on or off.
//   otaro     BPS + LAA (the method)
//   bps       BPS only (ablation)
//   uniform   a bit-width drawn uniformly at random per batch (paper, Figure 3)
//   fixed:m   always m ("fixed precision fine-tuning"; one run per m)
//   fp        no quantization during training ("FP16 fine-tuning")
// and, for a baseline trained with OTARo's update mechanism (the paper's
// fixed-precision baseline uses "an update mechanism that aligns with OTARo"):
//   uniform+laa, fixed:m+laa   the same bit-widths, updated through LAA
// (otaro is bps+laa; fp never trains at an ultra-low width, so fp+laa is refused).
// Also the bit set B ("3,4,5,6,7,8" or "3-8") that BPS, uniform and evaluation use.
#ifndef OTARO_TRAINER_STRATEGY_STRATEGY_H_
#define OTARO_TRAINER_STRATEGY_STRATEGY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace otaro::trainer {

enum class StrategyKind { kOtaro, kBps, kUniform, kFixed, kFp };

struct Strategy {
  StrategyKind kind = StrategyKind::kOtaro;
  int fixed_m = 0;  // the bit-width of kFixed (2..8); 0 otherwise
  // "+laa": LAA on for kUniform / kFixed (kOtaro always has it; never set for
  // the others).
  bool with_laa = false;

  // Bit-widths chosen by Bit-width Path Search (eq. 5).
  bool uses_bps() const { return kind == StrategyKind::kOtaro || kind == StrategyKind::kBps; }
  // Low-precision asynchronous accumulation (eq. 16-18).
  bool uses_laa() const { return kind == StrategyKind::kOtaro || with_laa; }
  // Forward passes see Q(W, m) rather than W.
  bool quantized() const { return kind != StrategyKind::kFp; }

  friend bool operator==(const Strategy&, const Strategy&) = default;
};

// "otaro" | "bps" | "uniform" | "fixed:m" (m = 2..8 or E5Mm) | "fp", and
// "uniform+laa" | "fixed:m+laa"; any case, surrounding spaces ignored. Anything
// else is an InvalidArgument error that lists the valid forms (bps+laa, otaro+laa
// and fp+laa say why they are refused).
absl::StatusOr<Strategy> ParseStrategy(absl::string_view text);

// The canonical name ParseStrategy reads back: "otaro", "fixed:4", "fixed:4+laa", ...
std::string StrategyName(const Strategy& strategy);

// A bit set: comma-separated widths and inclusive ranges, e.g. "3,4,5,6,7,8",
// "3-8", "3-5,8", "E5M3,E5M4". Every width is 2..8, none twice; returned sorted
// ascending. The paper's default is 3-8.
absl::StatusOr<std::vector<int>> ParseBitSet(absl::string_view text);

// OK iff `bits` is non-empty, sorted ascending, without duplicates, all in 2..8
// (what ParseBitSet returns; for sets built in code).
absl::Status CheckBitSet(absl::Span<const int> bits);

// "3,4,5,6,7,8".
std::string FormatBitSet(absl::Span<const int> bits);

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_STRATEGY_STRATEGY_H_
