#include "trainer/strategy/strategy.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "sefp/format.h"

namespace otaro::trainer {
namespace {

constexpr absl::string_view kValidStrategies =
    "otaro, bps, uniform, fixed:m (m = 2..8, e.g. fixed:4), fp; uniform+laa or fixed:m+laa "
    "for LAA with a baseline";

constexpr absl::string_view kLaaSuffix = "+laa";

absl::StatusOr<Strategy> ParseBaseStrategy(absl::string_view text, absl::string_view name);

}  // namespace

absl::StatusOr<Strategy> ParseStrategy(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  absl::string_view base = name;
  if (!absl::ConsumeSuffix(&base, kLaaSuffix)) return ParseBaseStrategy(text, name);
  absl::StatusOr<Strategy> strategy = ParseBaseStrategy(text, base);
  if (!strategy.ok()) return strategy.status();
  auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("strategy '", text, "': ", why, "; valid strategies: ", kValidStrategies));
  };
  switch (strategy->kind) {
    case StrategyKind::kOtaro:
      return refuse("otaro already updates through LAA");
    case StrategyKind::kBps:
      return refuse("bps with LAA is otaro: write otaro");
    case StrategyKind::kFp:
      return refuse("fp trains unquantized, so LAA would never accumulate");
    case StrategyKind::kUniform:
    case StrategyKind::kFixed:
      break;
  }
  strategy->with_laa = true;
  return strategy;
}

namespace {

absl::StatusOr<Strategy> ParseBaseStrategy(absl::string_view text, absl::string_view name) {
  if (name == "otaro") return Strategy{StrategyKind::kOtaro};
  if (name == "bps") return Strategy{StrategyKind::kBps};
  if (name == "uniform") return Strategy{StrategyKind::kUniform};
  if (name == "fp") return Strategy{StrategyKind::kFp};
  absl::string_view rest = name;
  if (absl::ConsumePrefix(&rest, "fixed:")) {
    absl::StatusOr<int> m = sefp::ParsePrecision(rest);
    if (!m.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("strategy '", text, "': ",
                                                     m.status().message(), "; valid strategies: ",
                                                     kValidStrategies));
    }
    return Strategy{StrategyKind::kFixed, *m};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tuning strategy '", text, "'; valid strategies: ", kValidStrategies));
}

std::string BaseStrategyName(const Strategy& strategy) {
  switch (strategy.kind) {
    case StrategyKind::kOtaro:
      return "otaro";
    case StrategyKind::kBps:
      return "bps";
    case StrategyKind::kUniform:
      return "uniform";
    case StrategyKind::kFixed:
      return absl::StrCat("fixed:", strategy.fixed_m);
    case StrategyKind::kFp:
      return "fp";
  }
  return "unknown";
}

}  // namespace

std::string StrategyName(const Strategy& strategy) {
  const std::string base = BaseStrategyName(strategy);
  return strategy.with_laa && strategy.kind != StrategyKind::kOtaro
             ? absl::StrCat(base, kLaaSuffix)
             : base;
}

absl::StatusOr<std::vector<int>> ParseBitSet(absl::string_view text) {
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bit set '", text, "': ", why, " (write e.g. 3,4,5,6,7,8 or 3-8; widths 2..8)"));
  };
  std::vector<int> bits;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) return error("empty entry");
    std::vector<absl::string_view> ends = absl::StrSplit(item, absl::MaxSplits('-', 1));
    absl::StatusOr<int> low = sefp::ParsePrecision(ends[0]);
    if (!low.ok()) return error(low.status().message());
    int high = *low;
    if (ends.size() == 2) {
      absl::StatusOr<int> parsed_high = sefp::ParsePrecision(ends[1]);
      if (!parsed_high.ok()) return error(parsed_high.status().message());
      high = *parsed_high;
      if (high < *low) return error(absl::StrCat("range ", item, " runs backwards"));
    }
    for (int m = *low; m <= high; ++m) {
      if (std::find(bits.begin(), bits.end(), m) != bits.end()) {
        return error(absl::StrCat("width ", m, " appears twice"));
      }
      bits.push_back(m);
    }
  }
  std::sort(bits.begin(), bits.end());
  return bits;
}

absl::Status CheckBitSet(absl::Span<const int> bits) {
  if (bits.empty()) return absl::InvalidArgumentError("bit set is empty");
  for (size_t i = 0; i < bits.size(); ++i) {
    if (absl::Status s = sefp::CheckPrecision(bits[i]); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("bit set {", FormatBitSet(bits), "}: ", s.message()));
    }
    if (i > 0 && bits[i] <= bits[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "bit set {", FormatBitSet(bits), "} must be sorted ascending without duplicates"));
    }
  }
  return absl::OkStatus();
}

std::string FormatBitSet(absl::Span<const int> bits) { return absl::StrJoin(bits, ","); }

}  // namespace otaro::trainer
