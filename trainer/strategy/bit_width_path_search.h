// Exploitation-Exploration Bit-width Path Search (BPS), paper eq. 5 and
// Algorithm 1 lines 2-3: at batch t pick
//   b* = argmax_b Score(b),   Score(b) = lambda * sqrt(ln t / t_b) - L_b
// where t_b counts the batches that used b and L_b is the training loss seen at b
// (the latest one, or an exponential moving average: OTARO.md `bps.loss`).
// The paper leaves t_b = 0 undefined (division by zero); as in UCB1 every width is
// tried once first, the widest first, so the first |B| batches of a 3..8 run are
// 8,7,6,5,4,3. Exact score ties go to the higher width (the more precise one).
//
// Usage per batch: b = Pick(t); train at b; Observe(b, loss). The counts and
// losses are the whole state: ToJson/FromJson carry them through a checkpoint so a
// resumed run picks exactly what the uninterrupted one would have.
#ifndef OTARO_TRAINER_STRATEGY_BIT_WIDTH_PATH_SEARCH_H_
#define OTARO_TRAINER_STRATEGY_BIT_WIDTH_PATH_SEARCH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"

namespace otaro::trainer {

struct BpsOptions {
  // Exploration coefficient lambda (paper's best: 5; its ablation covers 3..7).
  double lambda = 5.0;
  // L_b: the latest loss at b (paper: "real-time loss"), or an EMA of them.
  enum class LossMode { kLatest, kEma };
  LossMode loss = LossMode::kLatest;
  // kEma: L_b <- ema_decay * L_b + (1 - ema_decay) * loss; the first loss seen at b
  // initialises L_b. In [0, 1).
  double ema_decay = 0.9;
};

// "latest" | "ema" (config `bps.loss`).
absl::StatusOr<BpsOptions::LossMode> ParseBpsLossMode(absl::string_view text);
absl::string_view BpsLossModeName(BpsOptions::LossMode mode);
absl::Status ValidateBpsOptions(const BpsOptions& options);

class BitWidthPathSearch {
 public:
  // `bits` as CheckBitSet accepts (sorted, unique, 2..8).
  static absl::StatusOr<BitWidthPathSearch> Create(std::vector<int> bits,
                                                   const BpsOptions& options);

  // The width for batch t (1-based): the widest untried width while there is one,
  // else the argmax of Score (ties: the higher width). t < 1 is treated as 1.
  int Pick(int64_t t) const;

  // Records that a batch trained at `b` had training loss `loss`: t_b += 1 and
  // L_b updated. Refuses (state unchanged) a width outside the set and a NaN/Inf
  // loss, which would poison L_b for the rest of the run.
  absl::Status Observe(int b, double loss);

  // eq. 5 for width b at batch t; nullopt while b is untried (t_b = 0).
  std::optional<double> Score(int b, int64_t t) const;

  const std::vector<int>& bits() const { return bits_; }
  const BpsOptions& options() const { return options_; }
  // t_b and L_b (nullopt while untried); 0 / nullopt for widths not in the set.
  int64_t count(int b) const;
  std::optional<double> loss(int b) const;

  // {"bits": [...], "counts": [...], "losses": [x | null, ...]} (losses round-trip
  // exactly through nlohmann's shortest-representation doubles).
  nlohmann::json ToJson() const;
  // Restores counts and losses; the checkpoint's bit set must equal this one's.
  absl::Status FromJson(const nlohmann::json& state);

 private:
  BitWidthPathSearch(std::vector<int> bits, const BpsOptions& options);
  int IndexOf(int b) const;  // -1 when not in the set

  std::vector<int> bits_;  // ascending
  BpsOptions options_;
  std::vector<int64_t> counts_;
  std::vector<std::optional<double>> losses_;
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_STRATEGY_BIT_WIDTH_PATH_SEARCH_H_
