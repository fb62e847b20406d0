#include "trainer/strategy/bit_width_path_search.h"

#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "trainer/strategy/strategy.h"

namespace otaro::trainer {

absl::StatusOr<BpsOptions::LossMode> ParseBpsLossMode(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (name == "latest") return BpsOptions::LossMode::kLatest;
  if (name == "ema") return BpsOptions::LossMode::kEma;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown bps.loss '", text, "'; valid: latest, ema"));
}

absl::string_view BpsLossModeName(BpsOptions::LossMode mode) {
  return mode == BpsOptions::LossMode::kEma ? "ema" : "latest";
}

absl::Status ValidateBpsOptions(const BpsOptions& options) {
  if (!std::isfinite(options.lambda) || options.lambda < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bps.lambda must be finite and >= 0, got ", options.lambda));
  }
  if (!(options.ema_decay >= 0 && options.ema_decay < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bps.ema_decay must be in [0, 1), got ", options.ema_decay));
  }
  return absl::OkStatus();
}

absl::StatusOr<BitWidthPathSearch> BitWidthPathSearch::Create(std::vector<int> bits,
                                                              const BpsOptions& options) {
  if (absl::Status s = CheckBitSet(bits); !s.ok()) return s;
  if (absl::Status s = ValidateBpsOptions(options); !s.ok()) return s;
  return BitWidthPathSearch(std::move(bits), options);
}

BitWidthPathSearch::BitWidthPathSearch(std::vector<int> bits, const BpsOptions& options)
    : bits_(std::move(bits)),
      options_(options),
      counts_(bits_.size(), 0),
      losses_(bits_.size()) {}

int BitWidthPathSearch::IndexOf(int b) const {
  for (size_t i = 0; i < bits_.size(); ++i) {
    if (bits_[i] == b) return static_cast<int>(i);
  }
  return -1;
}

std::optional<double> BitWidthPathSearch::Score(int b, int64_t t) const {
  const int i = IndexOf(b);
  if (i < 0 || counts_[i] == 0) return std::nullopt;
  const double log_t = std::log(static_cast<double>(std::max<int64_t>(t, 1)));
  return options_.lambda * std::sqrt(log_t / static_cast<double>(counts_[i])) - *losses_[i];
}

int BitWidthPathSearch::Pick(int64_t t) const {
  // Untried widths first, widest first.
  for (int i = static_cast<int>(bits_.size()) - 1; i >= 0; --i) {
    if (counts_[i] == 0) return bits_[i];
  }
  // Scan from the widest down and replace only on a strictly greater score, so an
  // exact tie keeps the higher width.
  int best = bits_.back();
  double best_score = *Score(best, t);
  for (int i = static_cast<int>(bits_.size()) - 2; i >= 0; --i) {
    const double score = *Score(bits_[i], t);
    if (score > best_score) {
      best = bits_[i];
      best_score = score;
    }
  }
  return best;
}

absl::Status BitWidthPathSearch::Observe(int b, double loss) {
  const int i = IndexOf(b);
  if (i < 0) {
    return absl::InvalidArgumentError(absl::StrCat("BPS observed bit-width ", b,
                                                   ", which is not in the bit set {",
                                                   FormatBitSet(bits_), "}"));
  }
  if (!std::isfinite(loss)) {
    return absl::InvalidArgumentError(
        absl::StrCat("BPS observed a non-finite training loss (", loss, ") at bit-width ", b));
  }
  ++counts_[i];
  if (options_.loss == BpsOptions::LossMode::kEma && losses_[i].has_value()) {
    losses_[i] = options_.ema_decay * *losses_[i] + (1.0 - options_.ema_decay) * loss;
  } else {
    losses_[i] = loss;
  }
  return absl::OkStatus();
}

int64_t BitWidthPathSearch::count(int b) const {
  const int i = IndexOf(b);
  return i < 0 ? 0 : counts_[i];
}

std::optional<double> BitWidthPathSearch::loss(int b) const {
  const int i = IndexOf(b);
  return i < 0 ? std::nullopt : losses_[i];
}

nlohmann::json BitWidthPathSearch::ToJson() const {
  nlohmann::json losses = nlohmann::json::array();
  for (const auto& l : losses_) losses.push_back(l.has_value() ? nlohmann::json(*l) : nullptr);
  return {{"bits", bits_}, {"counts", counts_}, {"losses", std::move(losses)}};
}

absl::Status BitWidthPathSearch::FromJson(const nlohmann::json& state) {
  auto error = [](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("BPS state: ", why));
  };
  if (!state.is_object()) return error("not a JSON object");
  for (const char* key : {"bits", "counts", "losses"}) {
    if (!state.contains(key) || !state[key].is_array()) {
      return error(absl::StrCat("missing array '", key, "'"));
    }
  }
  std::vector<int> bits;
  for (const auto& b : state["bits"]) {
    if (!b.is_number_integer()) return error("'bits' holds a non-integer");
    bits.push_back(b.get<int>());
  }
  if (bits != bits_) {
    return error(absl::StrCat("saved for bit set {", FormatBitSet(bits),
                              "} but this run uses {", FormatBitSet(bits_), "}"));
  }
  const nlohmann::json& counts_json = state["counts"];
  const nlohmann::json& losses_json = state["losses"];
  if (counts_json.size() != bits_.size() || losses_json.size() != bits_.size()) {
    return error("'counts' and 'losses' must have one entry per bit-width");
  }
  std::vector<int64_t> counts(bits_.size());
  std::vector<std::optional<double>> losses(bits_.size());
  for (size_t i = 0; i < bits_.size(); ++i) {
    if (!counts_json[i].is_number_integer() || counts_json[i].get<int64_t>() < 0) {
      return error(absl::StrCat("count of bit-width ", bits_[i], " is not a count"));
    }
    counts[i] = counts_json[i].get<int64_t>();
    if (losses_json[i].is_null()) {
      if (counts[i] != 0) {
        return error(absl::StrCat("bit-width ", bits_[i], " was used but has no loss"));
      }
      continue;
    }
    if (!losses_json[i].is_number() || !std::isfinite(losses_json[i].get<double>())) {
      return error(absl::StrCat("loss of bit-width ", bits_[i], " is not a finite number"));
    }
    if (counts[i] == 0) {
      return error(absl::StrCat("bit-width ", bits_[i], " has a loss but was never used"));
    }
    losses[i] = losses_json[i].get<double>();
  }
  counts_ = std::move(counts);
  losses_ = std::move(losses);
  return absl::OkStatus();
}

}  // namespace otaro::trainer
