#include "trainer/strategy/bit_width_path_search.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::trainer {
namespace {

using ::testing::HasSubstr;

const std::vector<int> kPaperBits = {3, 4, 5, 6, 7, 8};

BitWidthPathSearch MakeBps(std::vector<int> bits = kPaperBits, BpsOptions options = {}) {
  absl::StatusOr<BitWidthPathSearch> bps = BitWidthPathSearch::Create(std::move(bits), options);
  EXPECT_TRUE(bps.ok()) << bps.status();
  return *std::move(bps);
}

// A scripted run with lambda = 5, B = {3..8}, L_b = the latest loss. The losses are
// handed out in order, whatever width was picked. Scores worked out by hand
// (5 * sqrt(ln t / t_b) - L_b; ln 7 = 1.945910, ln 8 = 2.079442, ...):
//   t  pick loss  scores                                      why
//   1-6 8,7,6,5,4,3  2.0 2.1 2.2 2.4 2.8 3.5                  untried widths, widest first
//   7  8  1.9  all t_b=1: 6.974794 - L_b -> 8: 4.974794 (lowest loss wins)
//   8  7  2.0  8: 5*sqrt(ln8/2)-1.9 = 3.198335; 7: 5*sqrt(ln8)-2.1 = 5.110134
//   9  6  2.1  6: 7.411519-2.2 = 5.211519 beats 5: 5.011519, 8: 3.340735, 7: 3.240735
//   10 5  1.8  5: 7.587136-2.4 = 5.187136; 4: 4.787136; 6: 3.264915
//   11 4  2.3  4: 7.742569-2.8 = 4.942569; 5: 5*sqrt(ln11/2)-2.4 = 3.674823
//   12 3  1.7  3: 7.881793-3.5 = 4.381793; 5 (t_b=2, L=1.8): 3.773270
//   13 3  2.6  3: 5*sqrt(ln13/2)-1.7 = 3.962320 (its new low loss); 5: 3.862320
//   14 5  1.9  3 now t_b=3, L=2.6: 2.089578; 5: 3.943537; 8: 3.843537
TEST(BitWidthPathSearchTest, ScriptedRunMatchesHandWorkedTable) {
  BitWidthPathSearch bps = MakeBps();
  const std::vector<double> losses = {2.0, 2.1, 2.2, 2.4, 2.8, 3.5, 1.9,
                                      2.0, 2.1, 1.8, 2.3, 1.7, 2.6, 1.9};
  const std::vector<int> expected = {8, 7, 6, 5, 4, 3, 8, 7, 6, 5, 4, 3, 3, 5};
  for (size_t k = 0; k < losses.size(); ++k) {
    const int64_t t = static_cast<int64_t>(k) + 1;
    const int b = bps.Pick(t);
    ASSERT_EQ(b, expected[k]) << "t = " << t;
    ASSERT_TRUE(bps.Observe(b, losses[k]).ok());
  }
  EXPECT_EQ(bps.count(3), 3);  // t = 6, 12, 13
  EXPECT_EQ(bps.count(5), 3);
  EXPECT_EQ(bps.count(8), 2);
  EXPECT_DOUBLE_EQ(*bps.loss(5), 1.9);
  // Scores at t = 15 against the formula written out.
  EXPECT_NEAR(*bps.Score(3, 15), 5 * std::sqrt(std::log(15.0) / 3) - 2.6, 1e-12);
  EXPECT_NEAR(*bps.Score(5, 15), 5 * std::sqrt(std::log(15.0) / 3) - 1.9, 1e-12);
}

TEST(BitWidthPathSearchTest, ScoreValuesFromTheTable) {
  BitWidthPathSearch bps = MakeBps();
  const std::vector<double> first_pass = {2.0, 2.1, 2.2, 2.4, 2.8, 3.5};
  for (double loss : first_pass) ASSERT_TRUE(bps.Observe(bps.Pick(1), loss).ok());
  EXPECT_NEAR(*bps.Score(8, 7), 4.974794, 1e-6);
  EXPECT_NEAR(*bps.Score(3, 7), 3.474794, 1e-6);
  ASSERT_TRUE(bps.Observe(8, 1.9).ok());
  EXPECT_NEAR(*bps.Score(8, 8), 3.198335, 1e-6);
  EXPECT_NEAR(*bps.Score(7, 8), 5.110134, 1e-6);
}

TEST(BitWidthPathSearchTest, UntriedWidthsHaveNoScoreAndComeWidestFirst) {
  BitWidthPathSearch bps = MakeBps({2, 5, 7});
  EXPECT_FALSE(bps.Score(7, 1).has_value());
  EXPECT_FALSE(bps.loss(7).has_value());
  // Picking alone does not count: the width stays untried until observed.
  EXPECT_EQ(bps.Pick(1), 7);
  EXPECT_EQ(bps.Pick(2), 7);
  ASSERT_TRUE(bps.Observe(7, 100.0).ok());
  EXPECT_EQ(bps.Pick(2), 5);
  ASSERT_TRUE(bps.Observe(5, 100.0).ok());
  EXPECT_EQ(bps.Pick(3), 2);
}

TEST(BitWidthPathSearchTest, ExactTieGoesToTheHigherWidth) {
  BitWidthPathSearch bps = MakeBps({3, 4});
  ASSERT_TRUE(bps.Observe(4, 2.0).ok());
  ASSERT_TRUE(bps.Observe(3, 2.0).ok());
  // t = 3: both t_b = 1 and L_b = 2.0, identical scores.
  ASSERT_EQ(*bps.Score(3, 3), *bps.Score(4, 3));
  EXPECT_EQ(bps.Pick(3), 4);
  // At t = 1 every exploration term is 0 (ln 1): a tie of -L_b again.
  EXPECT_EQ(bps.Pick(1), 4);
}

TEST(BitWidthPathSearchTest, LambdaZeroIsGreedyOnLoss) {
  BpsOptions options;
  options.lambda = 0;
  BitWidthPathSearch bps = MakeBps({3, 4, 5}, options);
  ASSERT_TRUE(bps.Observe(5, 2.0).ok());
  ASSERT_TRUE(bps.Observe(4, 1.5).ok());
  ASSERT_TRUE(bps.Observe(3, 3.0).ok());
  for (int64_t t = 4; t < 50; ++t) EXPECT_EQ(bps.Pick(t), 4);
}

// EMA, decay 0.5: L_4 = 0.5 * 2.0 + 0.5 * 1.0 = 1.5 after losses 2.0 then 1.0.
// At t = 4 (t_4 = 2, t_3 = 1, L_3 = 3.0):
//   Score(4) = 5 * sqrt(ln 4 / 2) - L_4 = 4.162773 - L_4
//   Score(3) = 5 * sqrt(ln 4) - 3.0 = 2.887050
// latest (L_4 = 1.0): 3.162773 -> picks 4;  ema (L_4 = 1.5): 2.662773 -> picks 3.
TEST(BitWidthPathSearchTest, EmaLossModeChangesThePick) {
  for (auto mode : {BpsOptions::LossMode::kLatest, BpsOptions::LossMode::kEma}) {
    BpsOptions options;
    options.loss = mode;
    options.ema_decay = 0.5;
    BitWidthPathSearch bps = MakeBps({3, 4}, options);
    ASSERT_TRUE(bps.Observe(4, 2.0).ok());
    ASSERT_TRUE(bps.Observe(3, 3.0).ok());
    ASSERT_TRUE(bps.Observe(4, 1.0).ok());
    if (mode == BpsOptions::LossMode::kEma) {
      EXPECT_DOUBLE_EQ(*bps.loss(4), 1.5);
      EXPECT_NEAR(*bps.Score(4, 4), 2.662773, 1e-6);
      EXPECT_EQ(bps.Pick(4), 3);
    } else {
      EXPECT_DOUBLE_EQ(*bps.loss(4), 1.0);
      EXPECT_NEAR(*bps.Score(4, 4), 3.162773, 1e-6);
      EXPECT_EQ(bps.Pick(4), 4);
    }
    EXPECT_NEAR(*bps.Score(3, 4), 2.887050, 1e-6);
    // The first loss seen at a width initialises its EMA (no decay toward 0).
    EXPECT_DOUBLE_EQ(*bps.loss(3), 3.0);
  }
}

TEST(BitWidthPathSearchTest, ObserveRefusesUnknownWidthAndNonFiniteLoss) {
  BitWidthPathSearch bps = MakeBps({3, 4});
  EXPECT_THAT(bps.Observe(5, 1.0).message(), HasSubstr("not in the bit set {3,4}"));
  EXPECT_FALSE(bps.Observe(4, std::numeric_limits<double>::quiet_NaN()).ok());
  EXPECT_FALSE(bps.Observe(4, std::numeric_limits<double>::infinity()).ok());
  EXPECT_EQ(bps.count(4), 0);  // unchanged
}

TEST(BitWidthPathSearchTest, OptionsAreValidated) {
  BpsOptions negative_lambda;
  negative_lambda.lambda = -1;
  EXPECT_FALSE(BitWidthPathSearch::Create(kPaperBits, negative_lambda).ok());
  BpsOptions bad_decay;
  bad_decay.ema_decay = 1.0;
  EXPECT_FALSE(BitWidthPathSearch::Create(kPaperBits, bad_decay).ok());
  EXPECT_FALSE(BitWidthPathSearch::Create({4, 3}, {}).ok());
  EXPECT_FALSE(BitWidthPathSearch::Create({}, {}).ok());
  EXPECT_EQ(*ParseBpsLossMode("EMA"), BpsOptions::LossMode::kEma);
  EXPECT_EQ(*ParseBpsLossMode("latest"), BpsOptions::LossMode::kLatest);
  EXPECT_THAT(ParseBpsLossMode("mean").status().message(), HasSubstr("valid: latest, ema"));
}

TEST(BitWidthPathSearchTest, JsonRoundTripResumesIdentically) {
  BpsOptions options;
  options.loss = BpsOptions::LossMode::kEma;
  BitWidthPathSearch reference = MakeBps(kPaperBits, options);
  BitWidthPathSearch first_half = MakeBps(kPaperBits, options);
  // A deterministic, irregular loss per (t, width) so doubles with long expansions
  // go through the JSON text.
  auto loss_at = [](int64_t t, int b) { return 1.0 / (1 + b) + std::sin(0.7 * t) / 3.0; };
  std::vector<int> reference_picks;
  for (int64_t t = 1; t <= 200; ++t) {
    const int b = reference.Pick(t);
    reference_picks.push_back(b);
    ASSERT_TRUE(reference.Observe(b, loss_at(t, b)).ok());
  }
  for (int64_t t = 1; t <= 77; ++t) {
    const int b = first_half.Pick(t);
    ASSERT_TRUE(first_half.Observe(b, loss_at(t, b)).ok());
  }
  const std::string saved = first_half.ToJson().dump();
  BitWidthPathSearch resumed = MakeBps(kPaperBits, options);
  ASSERT_TRUE(resumed.FromJson(nlohmann::json::parse(saved)).ok());
  for (int64_t t = 78; t <= 200; ++t) {
    const int b = resumed.Pick(t);
    ASSERT_EQ(b, reference_picks[t - 1]) << "t = " << t;
    ASSERT_TRUE(resumed.Observe(b, loss_at(t, b)).ok());
  }
  EXPECT_EQ(resumed.ToJson(), reference.ToJson());
  // Every width was used (exploration) and the search favours the wider ones.
  for (int b : kPaperBits) EXPECT_GT(reference.count(b), 0) << b;
}

TEST(BitWidthPathSearchTest, FromJsonRefusesMismatchesAndLeavesStateAlone) {
  BitWidthPathSearch bps = MakeBps({3, 4});
  ASSERT_TRUE(bps.Observe(4, 1.0).ok());
  const nlohmann::json before = bps.ToJson();
  EXPECT_THAT(
      bps.FromJson({{"bits", {3, 4, 5}}, {"counts", {0, 0, 0}}, {"losses", {nullptr, nullptr, nullptr}}})
          .message(),
      HasSubstr("saved for bit set {3,4,5} but this run uses {3,4}"));
  EXPECT_FALSE(bps.FromJson({{"bits", {3, 4}}, {"counts", {1, 0}}, {"losses", {nullptr, nullptr}}}).ok());
  EXPECT_FALSE(bps.FromJson({{"bits", {3, 4}}, {"counts", {0, 0}}, {"losses", {1.0, nullptr}}}).ok());
  EXPECT_FALSE(bps.FromJson({{"bits", {3, 4}}, {"counts", {-1, 0}}, {"losses", {nullptr, nullptr}}}).ok());
  EXPECT_FALSE(bps.FromJson({{"bits", {3, 4}}, {"counts", {0}}, {"losses", {nullptr}}}).ok());
  EXPECT_FALSE(bps.FromJson(nlohmann::json::array()).ok());
  EXPECT_FALSE(bps.FromJson({{"bits", {3, 4}}}).ok());
  EXPECT_EQ(bps.ToJson(), before);
}

}  // namespace
}  // namespace otaro::trainer
