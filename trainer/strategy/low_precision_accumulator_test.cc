#include "trainer/strategy/low_precision_accumulator.h"

#include <optional>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::trainer {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::FloatEq;
using ::testing::HasSubstr;
using Applied = std::optional<std::vector<float>>;

LowPrecisionAccumulator Make(const char* strategy, LaaOptions options, int64_t num_params = 2) {
  absl::StatusOr<LowPrecisionAccumulator> laa =
      LowPrecisionAccumulator::Create(*ParseStrategy(strategy), options, num_params);
  EXPECT_TRUE(laa.ok()) << laa.status();
  return *std::move(laa);
}

LaaOptions N3(LaaOptions::Reduce reduce = LaaOptions::Reduce::kSum) {
  LaaOptions options;
  options.n = 3;
  options.reduce = reduce;
  return options;
}

// Copies what Step handed out (the span may point into the accumulator).
Applied StepOf(LowPrecisionAccumulator& laa, std::optional<int> m, std::vector<float> grad) {
  absl::StatusOr<std::optional<absl::Span<float>>> out = laa.Step(m, absl::MakeSpan(grad));
  EXPECT_TRUE(out.ok()) << out.status();
  if (!out.ok() || !out->has_value()) return std::nullopt;
  return std::vector<float>((*out)->begin(), (*out)->end());
}

Applied FlushOf(LowPrecisionAccumulator& laa) {
  std::optional<absl::Span<float>> out = laa.Flush();
  if (!out.has_value()) return std::nullopt;
  return std::vector<float>(out->begin(), out->end());
}

// N = 3, ultra-low = m <= 4, SUM (eq. 18). Widths 8,4,3,6,4,3,5,(nullopt); the
// applied updates, worked out by hand:
//   m=8 [1,2]        -> apply [1,2] at once
//   m=4 [10,20]      -> accumulate (i=1)
//   m=3 [30,40]      -> accumulate (i=2)
//   m=6 [5,6]        -> apply [5,6] at once, in between (asynchronous)
//   m=4 [100,200]    -> i=3=N: apply 10+30+100, 20+40+200 = [140,260]; i=0
//   m=3 [1,1]        -> accumulate (i=1); the old sum is not carried over
//   m=5 [7,7]        -> apply [7,7] (5 > 4 is not ultra-low)
//   unquantized [9,9]-> apply [9,9]
//   Flush            -> [1,1]; a second Flush has nothing
TEST(LowPrecisionAccumulatorTest, ScriptedSequenceSum) {
  LowPrecisionAccumulator laa = Make("otaro", N3());
  ASSERT_TRUE(laa.active());
  EXPECT_EQ(StepOf(laa, 8, {1, 2}), Applied({1, 2}));
  EXPECT_EQ(StepOf(laa, 4, {10, 20}), std::nullopt);
  EXPECT_EQ(laa.pending(), 1);
  EXPECT_EQ(StepOf(laa, 3, {30, 40}), std::nullopt);
  EXPECT_EQ(laa.pending(), 2);
  EXPECT_THAT(laa.accumulator(), ElementsAre(40, 60));
  EXPECT_EQ(StepOf(laa, 6, {5, 6}), Applied({5, 6}));
  EXPECT_EQ(laa.pending(), 2);
  EXPECT_EQ(StepOf(laa, 4, {100, 200}), Applied({140, 260}));
  EXPECT_EQ(laa.pending(), 0);
  EXPECT_TRUE(laa.accumulator().empty());
  EXPECT_EQ(StepOf(laa, 3, {1, 1}), std::nullopt);
  EXPECT_EQ(StepOf(laa, 5, {7, 7}), Applied({7, 7}));
  EXPECT_EQ(StepOf(laa, std::nullopt, {9, 9}), Applied({9, 9}));
  EXPECT_EQ(FlushOf(laa), Applied({1, 1}));
  EXPECT_EQ(laa.pending(), 0);
  EXPECT_EQ(FlushOf(laa), std::nullopt);
}

TEST(LowPrecisionAccumulatorTest, ImmediateUpdatesAreTheInputItself) {
  LowPrecisionAccumulator laa = Make("otaro", N3());
  std::vector<float> grad = {1, 2};
  absl::StatusOr<std::optional<absl::Span<float>>> out = laa.Step(7, absl::MakeSpan(grad));
  ASSERT_TRUE(out.ok() && out->has_value());
  EXPECT_EQ((*out)->data(), grad.data());  // no copy of a 135M-float gradient
}

// Same widths, MEAN: [140,260] / 3, and the flushed partial accumulator is divided
// by what it holds: ([1,1] + [2,5]) / 2 = [1.5, 3].
TEST(LowPrecisionAccumulatorTest, ScriptedSequenceMeanAndPartialFlush) {
  LowPrecisionAccumulator laa = Make("otaro", N3(LaaOptions::Reduce::kMean));
  EXPECT_EQ(StepOf(laa, 8, {1, 2}), Applied({1, 2}));
  EXPECT_EQ(StepOf(laa, 4, {10, 20}), std::nullopt);
  EXPECT_EQ(StepOf(laa, 3, {30, 40}), std::nullopt);
  EXPECT_EQ(StepOf(laa, 6, {5, 6}), Applied({5, 6}));
  Applied mean = StepOf(laa, 4, {100, 200});
  ASSERT_TRUE(mean.has_value());
  EXPECT_THAT(*mean, ElementsAre(FloatEq(140.0f / 3), FloatEq(260.0f / 3)));
  EXPECT_EQ(StepOf(laa, 3, {1, 1}), std::nullopt);
  EXPECT_EQ(StepOf(laa, 2, {2, 5}), std::nullopt);
  EXPECT_EQ(FlushOf(laa), Applied({1.5f, 3}));
}

TEST(LowPrecisionAccumulatorTest, NoFlushWhenEmpty) {
  LowPrecisionAccumulator laa = Make("otaro", N3());
  EXPECT_EQ(FlushOf(laa), std::nullopt);
  EXPECT_EQ(StepOf(laa, 3, {1, 1}), std::nullopt);
  EXPECT_EQ(StepOf(laa, 3, {1, 1}), std::nullopt);
  EXPECT_EQ(StepOf(laa, 3, {1, 1}), Applied({3, 3}));
  EXPECT_EQ(FlushOf(laa), std::nullopt);  // the full accumulator was already applied
}

TEST(LowPrecisionAccumulatorTest, UltraLowCutIsConfigurable) {
  LaaOptions options = N3();
  options.ultra_low_max_bits = 3;
  LowPrecisionAccumulator laa = Make("otaro", options);
  EXPECT_EQ(StepOf(laa, 4, {1, 1}), Applied({1, 1}));
  EXPECT_EQ(StepOf(laa, 3, {1, 1}), std::nullopt);
  EXPECT_TRUE(laa.IsUltraLow(2));
  EXPECT_FALSE(laa.IsUltraLow(4));
  EXPECT_FALSE(laa.IsUltraLow(std::nullopt));
}

TEST(LowPrecisionAccumulatorTest, NEqualsOneAppliesEveryStep) {
  LaaOptions options;
  options.n = 1;
  LowPrecisionAccumulator laa = Make("otaro", options);
  EXPECT_EQ(StepOf(laa, 3, {1, 2}), Applied({1, 2}));
  EXPECT_EQ(StepOf(laa, 3, {4, 8}), Applied({4, 8}));
  EXPECT_EQ(FlushOf(laa), std::nullopt);
}

TEST(LowPrecisionAccumulatorTest, OtherStrategiesBypassLaa) {
  for (const char* name : {"bps", "uniform", "fixed:3", "fp"}) {
    SCOPED_TRACE(name);
    LowPrecisionAccumulator laa = Make(name, N3());
    EXPECT_FALSE(laa.active());
    EXPECT_FALSE(laa.IsUltraLow(3));
    for (int k = 0; k < 5; ++k) {
      EXPECT_EQ(StepOf(laa, 3, {1, 2}), Applied({1, 2}));
    }
    EXPECT_EQ(laa.pending(), 0);
    EXPECT_EQ(FlushOf(laa), std::nullopt);
    EXPECT_FALSE(laa.Restore(1, std::vector<float>{1, 1}).ok());
    EXPECT_TRUE(laa.Restore(0, {}).ok());
  }
}

TEST(LowPrecisionAccumulatorTest, LaaBaselinesAccumulateLikeOtaro) {
  for (const char* name : {"fixed:3+laa", "uniform+laa"}) {
    SCOPED_TRACE(name);
    LowPrecisionAccumulator laa = Make(name, N3());
    EXPECT_TRUE(laa.active());
    EXPECT_EQ(StepOf(laa, 3, {1, 2}), std::nullopt);
    EXPECT_EQ(StepOf(laa, 8, {5, 5}), Applied({5, 5}));
    EXPECT_EQ(StepOf(laa, 3, {1, 2}), std::nullopt);
    EXPECT_EQ(StepOf(laa, 4, {1, 2}), Applied({3, 6}));
  }
}

TEST(LowPrecisionAccumulatorTest, SaveRestoreContinuesIdentically) {
  const std::vector<int> widths = {3, 8, 4, 4, 5, 3, 3, 3, 7, 4};
  auto grad_of = [](size_t k) {
    return std::vector<float>{0.5f * k + 0.25f, -1.0f * k, 3.0f};
  };
  LowPrecisionAccumulator reference = Make("otaro", N3(), 3);
  std::vector<Applied> expected;
  for (size_t k = 0; k < widths.size(); ++k) {
    expected.push_back(StepOf(reference, widths[k], grad_of(k)));
  }
  expected.push_back(FlushOf(reference));

  // Widths 3,4,4 (k = 0,2,3) fill N = 3 once; 3,3 (k = 5,6) leave two pending: a
  // checkpoint after k = 6 must carry them.
  LowPrecisionAccumulator first = Make("otaro", N3(), 3);
  for (size_t k = 0; k < 7; ++k) EXPECT_EQ(StepOf(first, widths[k], grad_of(k)), expected[k]);
  ASSERT_EQ(first.pending(), 2);
  const int saved_pending = first.pending();
  const std::vector<float> saved_sum(first.accumulator().begin(), first.accumulator().end());
  EXPECT_THAT(saved_sum, ElementsAreArray(std::vector<float>{0.5f * 5 + 0.25f + 0.5f * 6 + 0.25f,
                                                             -11.0f, 6.0f}));

  LowPrecisionAccumulator resumed = Make("otaro", N3(), 3);
  ASSERT_TRUE(resumed.Restore(saved_pending, saved_sum).ok());
  for (size_t k = 7; k < widths.size(); ++k) {
    EXPECT_EQ(StepOf(resumed, widths[k], grad_of(k)), expected[k]) << "k = " << k;
  }
  EXPECT_EQ(FlushOf(resumed), expected.back());
  ASSERT_TRUE(expected.back().has_value());  // k = 9 left one gradient pending
}

TEST(LowPrecisionAccumulatorTest, RestoreAndStepValidate) {
  LowPrecisionAccumulator laa = Make("otaro", N3(), 2);
  EXPECT_THAT(laa.Restore(3, std::vector<float>{1, 1}).message(), HasSubstr("outside 0..2"));
  EXPECT_FALSE(laa.Restore(-1, {}).ok());
  EXPECT_THAT(laa.Restore(1, std::vector<float>{1, 1, 1}).message(),
              HasSubstr("accumulator has 3 values, expected 2"));
  EXPECT_TRUE(laa.Restore(0, {}).ok());
  EXPECT_EQ(laa.pending(), 0);
  std::vector<float> wrong = {1, 2, 3};
  EXPECT_THAT(laa.Step(8, absl::MakeSpan(wrong)).status().message(),
              HasSubstr("gradient has 3 values"));
}

TEST(LowPrecisionAccumulatorTest, OptionsAreValidated) {
  LaaOptions zero_n;
  zero_n.n = 0;
  EXPECT_THAT(LowPrecisionAccumulator::Create(*ParseStrategy("otaro"), zero_n, 1).status().message(),
              HasSubstr("laa.n"));
  LaaOptions bad_cut;
  bad_cut.ultra_low_max_bits = 9;
  EXPECT_FALSE(LowPrecisionAccumulator::Create(*ParseStrategy("otaro"), bad_cut, 1).ok());
  EXPECT_FALSE(LowPrecisionAccumulator::Create(*ParseStrategy("otaro"), {}, -1).ok());
  EXPECT_EQ(*ParseLaaReduce("MEAN"), LaaOptions::Reduce::kMean);
  EXPECT_EQ(*ParseLaaReduce("sum"), LaaOptions::Reduce::kSum);
  EXPECT_THAT(ParseLaaReduce("avg").status().message(), HasSubstr("valid: sum, mean"));
}

}  // namespace
}  // namespace otaro::trainer
