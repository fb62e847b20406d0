#include "trainer/strategy/bit_width_policy.h"

#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "sefp/format.h"

namespace otaro::trainer {
namespace {

// An index in [0, n) from a 64-bit draw, without modulo bias (rejects the lowest
// 2^64 mod n values). Written out rather than std::uniform_int_distribution, whose
// algorithm is implementation-defined: the sequence must not change with the
// standard library, or a resumed run on another build would diverge.
size_t UniformIndex(std::mt19937_64& rng, size_t n) {
  const uint64_t n64 = n;
  const uint64_t reject_below = (0 - n64) % n64;  // 2^64 mod n
  uint64_t x = rng();
  while (x < reject_below) x = rng();
  return static_cast<size_t>(x % n64);
}

std::string OptionalName(std::optional<int> m) {
  return m.has_value() ? absl::StrCat(*m) : "unquantized";
}

}  // namespace

absl::StatusOr<BitWidthPolicy> BitWidthPolicy::Create(const Strategy& strategy,
                                                      std::vector<int> bits,
                                                      const BpsOptions& bps_options,
                                                      uint64_t seed) {
  if (absl::Status s = CheckBitSet(bits); !s.ok()) return s;
  if (strategy.kind == StrategyKind::kFixed) {
    if (absl::Status s = sefp::CheckPrecision(strategy.fixed_m); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("strategy fixed:", strategy.fixed_m, ": ",
                                                     s.message()));
    }
  }
  std::optional<BitWidthPathSearch> bps;
  if (strategy.uses_bps()) {
    absl::StatusOr<BitWidthPathSearch> created = BitWidthPathSearch::Create(bits, bps_options);
    if (!created.ok()) return created.status();
    bps = std::move(*created);
  }
  return BitWidthPolicy(strategy, std::move(bits), std::move(bps), seed);
}

BitWidthPolicy::BitWidthPolicy(const Strategy& strategy, std::vector<int> bits,
                               std::optional<BitWidthPathSearch> bps, uint64_t seed)
    : strategy_(strategy), bits_(std::move(bits)), bps_(std::move(bps)), rng_(seed) {}

std::optional<int> BitWidthPolicy::Next() {
  ++batches_;
  std::optional<int> m;
  switch (strategy_.kind) {
    case StrategyKind::kOtaro:
    case StrategyKind::kBps:
      m = bps_->Pick(batches_);
      break;
    case StrategyKind::kUniform:
      m = bits_[UniformIndex(rng_, bits_.size())];
      break;
    case StrategyKind::kFixed:
      m = strategy_.fixed_m;
      break;
    case StrategyKind::kFp:
      break;
  }
  awaiting_observe_ = true;
  last_pick_ = m;
  return m;
}

absl::Status BitWidthPolicy::Observe(std::optional<int> m, double loss) {
  if (!awaiting_observe_) {
    return absl::FailedPreconditionError(
        absl::StrCat("bit-width policy: Observe(", OptionalName(m), ") without a Next()"));
  }
  if (m != last_pick_) {
    return absl::InvalidArgumentError(absl::StrCat("bit-width policy: observed bit-width ",
                                                   OptionalName(m), " but batch ", batches_,
                                                   " was given ", OptionalName(last_pick_)));
  }
  if (bps_) {
    if (absl::Status s = bps_->Observe(*m, loss); !s.ok()) return s;
  }
  awaiting_observe_ = false;
  return absl::OkStatus();
}

nlohmann::json BitWidthPolicy::ToJson() const {
  nlohmann::json state = {
      {"strategy", StrategyName(strategy_)}, {"bits", bits_}, {"batches", batches_}};
  if (bps_) state["bps"] = bps_->ToJson();
  if (strategy_.kind == StrategyKind::kUniform) {
    std::ostringstream rng_text;
    rng_text << rng_;
    state["rng"] = rng_text.str();
  }
  return state;
}

absl::Status BitWidthPolicy::FromJson(const nlohmann::json& state) {
  auto error = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("bit-width policy state: ", why));
  };
  if (!state.is_object()) return error("not a JSON object");
  if (!state.contains("strategy") || !state["strategy"].is_string() ||
      state["strategy"].get<std::string>() != StrategyName(strategy_)) {
    return error(absl::StrCat("saved for strategy ",
                              state.contains("strategy") ? state["strategy"].dump() : "(none)",
                              " but this run uses ", StrategyName(strategy_)));
  }
  if (!state.contains("bits") || state["bits"] != nlohmann::json(bits_)) {
    return error(absl::StrCat("saved for bit set ",
                              state.contains("bits") ? state["bits"].dump() : "(none)",
                              " but this run uses [", FormatBitSet(bits_), "]"));
  }
  if (!state.contains("batches") || !state["batches"].is_number_integer() ||
      state["batches"].get<int64_t>() < 0) {
    return error("'batches' is missing or not a count");
  }
  // Parse everything before changing anything, so a bad state leaves the policy as it was.
  std::optional<BitWidthPathSearch> bps = bps_;
  if (bps) {
    if (!state.contains("bps")) return error("missing 'bps'");
    if (absl::Status s = bps->FromJson(state["bps"]); !s.ok()) return s;
  }
  std::mt19937_64 rng = rng_;
  if (strategy_.kind == StrategyKind::kUniform) {
    if (!state.contains("rng") || !state["rng"].is_string()) return error("missing 'rng'");
    std::istringstream rng_text(state["rng"].get<std::string>());
    rng_text >> rng;
    if (rng_text.fail()) return error("'rng' is not a std::mt19937_64 state");
  }
  bps_ = std::move(bps);
  rng_ = rng;
  batches_ = state["batches"].get<int64_t>();
  awaiting_observe_ = false;
  last_pick_.reset();
  return absl::OkStatus();
}

}  // namespace otaro::trainer
