// Which bit-width each training batch uses, for every strategy (strategy.h):
//   otaro, bps  Bit-width Path Search (bit_width_path_search.h)
//   uniform     uniform over the bit set, from a seeded std::mt19937_64
//   fixed:m     always m
//   fp          nullopt: train unquantized
// The policy counts the batches itself (t = 1, 2, ... for BPS). Per batch:
//   std::optional<int> m = policy.Next();  ...train...;  policy.Observe(m, loss);
// ToJson/FromJson carry t, the BPS state and the generator's exact state, so a run
// resumed from a checkpoint draws the same sequence as an uninterrupted one.
#ifndef OTARO_TRAINER_STRATEGY_BIT_WIDTH_POLICY_H_
#define OTARO_TRAINER_STRATEGY_BIT_WIDTH_POLICY_H_

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "trainer/strategy/bit_width_path_search.h"
#include "trainer/strategy/strategy.h"

namespace otaro::trainer {

class BitWidthPolicy {
 public:
  // `bits`: the set B (CheckBitSet), used by BPS and uniform. fixed:m need not be
  // in B (a fixed run may train a width it is not evaluated at). `seed` only
  // matters for uniform.
  static absl::StatusOr<BitWidthPolicy> Create(const Strategy& strategy, std::vector<int> bits,
                                               const BpsOptions& bps_options, uint64_t seed);

  // The bit-width of the next batch (nullopt = unquantized, for fp).
  std::optional<int> Next();

  // The training loss of the batch `m` was returned for by the last Next(). BPS
  // learns from it; other strategies only check it. A batch the loop skips (NaN
  // loss) is simply not observed: the next Next() moves on to t + 1.
  absl::Status Observe(std::optional<int> m, double loss);

  const Strategy& strategy() const { return strategy_; }
  const std::vector<int>& bits() const { return bits_; }
  // Batches handed out so far (the t of the last Next()).
  int64_t batches() const { return batches_; }
  // The BPS state (null for strategies without BPS), for logging.
  const BitWidthPathSearch* bps() const { return bps_ ? &*bps_ : nullptr; }

  // {"strategy", "bits", "batches", "bps" (BPS strategies), "rng" (uniform)}.
  nlohmann::json ToJson() const;
  // The state must come from a policy with the same strategy and bit set.
  absl::Status FromJson(const nlohmann::json& state);

 private:
  BitWidthPolicy(const Strategy& strategy, std::vector<int> bits,
                 std::optional<BitWidthPathSearch> bps, uint64_t seed);

  Strategy strategy_;
  std::vector<int> bits_;
  std::optional<BitWidthPathSearch> bps_;
  std::mt19937_64 rng_;
  int64_t batches_ = 0;
  // What the last Next() returned, until Observe consumes it.
  bool awaiting_observe_ = false;
  std::optional<int> last_pick_;
};

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_STRATEGY_BIT_WIDTH_POLICY_H_
