#include "trainer/strategy/strategy.h"

#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::trainer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseStrategyTest, EveryNameAndItsFlags) {
  struct Case {
    const char* text;
    StrategyKind kind;
    int fixed_m;
    bool bps, laa, quantized;
    const char* name;
  };
  for (const Case& c : std::vector<Case>{
           {"otaro", StrategyKind::kOtaro, 0, true, true, true, "otaro"},
           {" BPS ", StrategyKind::kBps, 0, true, false, true, "bps"},
           {"Uniform", StrategyKind::kUniform, 0, false, false, true, "uniform"},
           {"fixed:4", StrategyKind::kFixed, 4, false, false, true, "fixed:4"},
           {"fixed:E5M8", StrategyKind::kFixed, 8, false, false, true, "fixed:8"},
           {"fixed:2", StrategyKind::kFixed, 2, false, false, true, "fixed:2"},
           {"fp", StrategyKind::kFp, 0, false, false, false, "fp"},
           // Baselines updated through LAA, as OTARo is.
           {"fixed:4+laa", StrategyKind::kFixed, 4, false, true, true, "fixed:4+laa"},
           {" Fixed:E5M3+LAA", StrategyKind::kFixed, 3, false, true, true, "fixed:3+laa"},
           {"uniform+laa", StrategyKind::kUniform, 0, false, true, true, "uniform+laa"},
       }) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<Strategy> s = ParseStrategy(c.text);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->kind, c.kind);
    EXPECT_EQ(s->fixed_m, c.fixed_m);
    EXPECT_EQ(s->uses_bps(), c.bps);
    EXPECT_EQ(s->uses_laa(), c.laa);
    EXPECT_EQ(s->quantized(), c.quantized);
    EXPECT_EQ(StrategyName(*s), c.name);
    // The name reads back to the same strategy.
    absl::StatusOr<Strategy> again = ParseStrategy(StrategyName(*s));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *s);
  }
}

TEST(ParseStrategyTest, ErrorsListTheValidForms) {
  for (const char* bad : {"", "otaro+", "fixed", "fixed:", "fixed:9", "fixed:1", "fixed:-4",
                          "fixed:4.5", "fixed4", "fp16"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<Strategy> s = ParseStrategy(bad);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.status().message(), HasSubstr("otaro, bps, uniform, fixed:m"));
  }
}

TEST(ParseStrategyTest, LaaSuffixOnlyWhereItChangesSomething) {
  for (const auto& [bad, why] : std::vector<std::pair<const char*, const char*>>{
           {"otaro+laa", "otaro already updates through LAA"},
           {"bps+laa", "write otaro"},
           {"fp+laa", "LAA would never accumulate"},
           {"fixed:9+laa", "fixed:m"},
           {"+laa", "unknown tuning strategy"},
           {"fixed:4+laa+laa", "fixed:m"},
       }) {
    SCOPED_TRACE(bad);
    absl::StatusOr<Strategy> s = ParseStrategy(bad);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.status().message(), HasSubstr(why));
  }
  // The same widths with and without LAA are different strategies (a resume
  // of one from the other's checkpoint is refused by name).
  EXPECT_NE(*ParseStrategy("fixed:4"), *ParseStrategy("fixed:4+laa"));
}

TEST(ParseBitSetTest, ListsAndRanges) {
  EXPECT_THAT(*ParseBitSet("3,4,5,6,7,8"), ElementsAre(3, 4, 5, 6, 7, 8));
  EXPECT_THAT(*ParseBitSet("3-8"), ElementsAre(3, 4, 5, 6, 7, 8));
  EXPECT_THAT(*ParseBitSet(" 8, 3-5 "), ElementsAre(3, 4, 5, 8));
  EXPECT_THAT(*ParseBitSet("E5M4,e5m2"), ElementsAre(2, 4));
  EXPECT_THAT(*ParseBitSet("6-6"), ElementsAre(6));
  EXPECT_EQ(FormatBitSet(*ParseBitSet("8,3")), "3,8");
}

TEST(ParseBitSetTest, Errors) {
  for (const char* bad : {"", "3,,4", "3,3", "3-5,4", "1-8", "3-9", "8-3", "x", "3-", "-3", "3,"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<std::vector<int>> bits = ParseBitSet(bad);
    ASSERT_FALSE(bits.ok());
    EXPECT_EQ(bits.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(bits.status().message(), HasSubstr("bit set"));
  }
  EXPECT_THAT(ParseBitSet("3,3").status().message(), HasSubstr("width 3 appears twice"));
}

TEST(CheckBitSetTest, RefusesUnsortedDuplicateAndOutOfRange) {
  EXPECT_TRUE(CheckBitSet(std::vector<int>{3, 4, 8}).ok());
  EXPECT_FALSE(CheckBitSet(std::vector<int>{}).ok());
  EXPECT_FALSE(CheckBitSet(std::vector<int>{4, 3}).ok());
  EXPECT_FALSE(CheckBitSet(std::vector<int>{4, 4}).ok());
  EXPECT_FALSE(CheckBitSet(std::vector<int>{1, 4}).ok());
  EXPECT_FALSE(CheckBitSet(std::vector<int>{4, 9}).ok());
}

}  // namespace
}  // namespace otaro::trainer
