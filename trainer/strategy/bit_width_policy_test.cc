#include "trainer/strategy/bit_width_policy.h"

#include <cmath>
#include <map>
#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::trainer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<int> kPaperBits = {3, 4, 5, 6, 7, 8};

BitWidthPolicy MakePolicy(const char* strategy, uint64_t seed = 1,
                          std::vector<int> bits = kPaperBits) {
  absl::StatusOr<BitWidthPolicy> policy =
      BitWidthPolicy::Create(*ParseStrategy(strategy), std::move(bits), BpsOptions{}, seed);
  EXPECT_TRUE(policy.ok()) << policy.status();
  return *std::move(policy);
}

// A loss that depends on the batch and the width, as a real run's would.
double LossAt(int64_t t, std::optional<int> m) {
  return 3.0 / (m.value_or(16)) + 0.1 * std::cos(0.3 * static_cast<double>(t));
}

std::vector<std::optional<int>> RunBatches(BitWidthPolicy& policy, int batches) {
  std::vector<std::optional<int>> picks;
  for (int k = 0; k < batches; ++k) {
    std::optional<int> m = policy.Next();
    picks.push_back(m);
    EXPECT_TRUE(policy.Observe(m, LossAt(policy.batches(), m)).ok());
  }
  return picks;
}

TEST(BitWidthPolicyTest, FixedAlwaysGivesItsWidth) {
  BitWidthPolicy policy = MakePolicy("fixed:5");
  for (const std::optional<int>& m : RunBatches(policy, 20)) EXPECT_EQ(m, 5);
  EXPECT_EQ(policy.bps(), nullptr);
  // fixed:m may lie outside the evaluated bit set.
  BitWidthPolicy outside = MakePolicy("fixed:2", 1, {3, 4});
  EXPECT_EQ(outside.Next(), 2);
}

TEST(BitWidthPolicyTest, FpIsUnquantized) {
  BitWidthPolicy policy = MakePolicy("fp");
  for (const std::optional<int>& m : RunBatches(policy, 5)) EXPECT_FALSE(m.has_value());
  EXPECT_EQ(policy.Next(), std::nullopt);
  EXPECT_THAT(policy.Observe(4, 1.0).message(), HasSubstr("observed bit-width 4"));
  EXPECT_TRUE(policy.Observe(std::nullopt, 1.0).ok());
}

TEST(BitWidthPolicyTest, OtaroAndBpsFollowThePathSearch) {
  for (const char* name : {"otaro", "bps"}) {
    BitWidthPolicy policy = MakePolicy(name);
    ASSERT_NE(policy.bps(), nullptr);
    std::vector<std::optional<int>> picks = RunBatches(policy, 6);
    EXPECT_THAT(picks, ElementsAre(8, 7, 6, 5, 4, 3));
    // LossAt makes the narrow widths lossier, so BPS must learn from the observed
    // losses: after many batches the widest width is used most.
    RunBatches(policy, 300);
    EXPECT_EQ(policy.batches(), 306);
    EXPECT_GT(policy.bps()->count(8), policy.bps()->count(3));
    int64_t total = 0;
    for (int b : kPaperBits) total += policy.bps()->count(b);
    EXPECT_EQ(total, 306);
  }
}

TEST(BitWidthPolicyTest, UniformIsReproducibleAndRoughlyUniform) {
  BitWidthPolicy a = MakePolicy("uniform", 42);
  BitWidthPolicy b = MakePolicy("uniform", 42);
  BitWidthPolicy c = MakePolicy("uniform", 43);
  const std::vector<std::optional<int>> picks_a = RunBatches(a, 60000);
  EXPECT_EQ(RunBatches(b, 60000), picks_a);
  EXPECT_NE(RunBatches(c, 60000), picks_a);
  std::map<int, int> histogram;
  for (const std::optional<int>& m : picks_a) ++histogram[m.value()];
  ASSERT_EQ(histogram.size(), kPaperBits.size());
  // Chi-square with 5 degrees of freedom; 20.5 is its 0.999 quantile.
  double chi2 = 0;
  for (const auto& [width, count] : histogram) {
    const double expected = 60000.0 / 6;
    chi2 += (count - expected) * (count - expected) / expected;
  }
  EXPECT_LT(chi2, 20.5);
  // Draws are not stuck in a pattern: consecutive picks differ about 5/6 of the time.
  int changes = 0;
  for (size_t k = 1; k < picks_a.size(); ++k) changes += picks_a[k] != picks_a[k - 1];
  EXPECT_NEAR(changes / 60000.0, 5.0 / 6, 0.01);
}

TEST(BitWidthPolicyTest, UniformOverASubset) {
  BitWidthPolicy policy = MakePolicy("uniform", 7, {2, 8});
  std::map<int, int> histogram;
  for (const std::optional<int>& m : RunBatches(policy, 1000)) ++histogram[m.value()];
  EXPECT_EQ(histogram.size(), 2u);
  EXPECT_NEAR(histogram[2], 500, 60);
}

TEST(BitWidthPolicyTest, StateRoundTripContinuesTheSameSequence) {
  for (const char* name : {"otaro", "bps", "uniform", "fixed:3", "fp"}) {
    SCOPED_TRACE(name);
    BitWidthPolicy reference = MakePolicy(name, 99);
    const std::vector<std::optional<int>> all = RunBatches(reference, 250);
    BitWidthPolicy interrupted = MakePolicy(name, 99);
    RunBatches(interrupted, 111);
    const std::string saved = interrupted.ToJson().dump();
    // A fresh process: different seed even; the state carries the generator.
    BitWidthPolicy resumed = MakePolicy(name, 12345);
    ASSERT_TRUE(resumed.FromJson(nlohmann::json::parse(saved)).ok());
    EXPECT_EQ(resumed.batches(), 111);
    const std::vector<std::optional<int>> rest = RunBatches(resumed, 139);
    EXPECT_EQ(rest, std::vector<std::optional<int>>(all.begin() + 111, all.end()));
    EXPECT_EQ(resumed.ToJson(), reference.ToJson());
  }
}

TEST(BitWidthPolicyTest, FromJsonRefusesAnotherStrategyOrBitSet) {
  BitWidthPolicy otaro = MakePolicy("otaro");
  RunBatches(otaro, 10);
  BitWidthPolicy uniform = MakePolicy("uniform");
  EXPECT_THAT(uniform.FromJson(otaro.ToJson()).message(),
              HasSubstr("saved for strategy \"otaro\" but this run uses uniform"));
  BitWidthPolicy narrower = MakePolicy("otaro", 1, {3, 4});
  EXPECT_THAT(narrower.FromJson(otaro.ToJson()).message(), HasSubstr("bit set"));
  nlohmann::json broken_rng = MakePolicy("uniform").ToJson();
  broken_rng["rng"] = "not a generator";
  EXPECT_THAT(uniform.FromJson(broken_rng).message(), HasSubstr("'rng'"));
  nlohmann::json no_bps = otaro.ToJson();
  no_bps.erase("bps");
  BitWidthPolicy fresh = MakePolicy("otaro");
  EXPECT_FALSE(fresh.FromJson(no_bps).ok());
  EXPECT_EQ(fresh.batches(), 0);
}

TEST(BitWidthPolicyTest, ObserveMustFollowNext) {
  BitWidthPolicy policy = MakePolicy("otaro");
  EXPECT_EQ(policy.Observe(8, 1.0).code(), absl::StatusCode::kFailedPrecondition);
  const std::optional<int> m = policy.Next();
  EXPECT_THAT(policy.Observe(3, 1.0).message(), HasSubstr("batch 1 was given 8"));
  EXPECT_FALSE(policy.Observe(m, std::nan("")).ok());  // BPS refuses NaN
  EXPECT_TRUE(policy.Observe(m, 1.0).ok());
  EXPECT_FALSE(policy.Observe(m, 1.0).ok());  // once per batch
}

TEST(BitWidthPolicyTest, SkippedBatchAdvancesTheBatchCount) {
  BitWidthPolicy policy = MakePolicy("otaro");
  EXPECT_EQ(policy.Next(), 8);  // say its loss was NaN: not observed
  EXPECT_EQ(policy.Next(), 8);  // still untried
  EXPECT_EQ(policy.batches(), 2);
  EXPECT_EQ(policy.bps()->count(8), 0);
}

TEST(BitWidthPolicyTest, CreateValidates) {
  EXPECT_FALSE(BitWidthPolicy::Create(*ParseStrategy("otaro"), {}, {}, 1).ok());
  EXPECT_FALSE(BitWidthPolicy::Create(Strategy{StrategyKind::kFixed, 9}, kPaperBits, {}, 1).ok());
  BpsOptions bad;
  bad.lambda = std::nan("");
  EXPECT_FALSE(BitWidthPolicy::Create(*ParseStrategy("bps"), kPaperBits, bad, 1).ok());
  // BPS options do not matter to strategies without BPS.
  EXPECT_TRUE(BitWidthPolicy::Create(*ParseStrategy("uniform"), kPaperBits, bad, 1).ok());
}

}  // namespace
}  // namespace otaro::trainer
