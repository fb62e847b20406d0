#include "tools/bench/bench_stats.h"

#include "gtest/gtest.h"

namespace otaro::bench {
namespace {

TEST(BenchStatsTest, PercentileIsNearestRank) {
  EXPECT_EQ(Percentile({}, 50), 0);
  EXPECT_EQ(Percentile({3, 1, 2}, 50), 2);
  EXPECT_EQ(Percentile({3, 1, 2}, 99), 3);
  EXPECT_EQ(Percentile({3, 1, 2}, 0), 1);
  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i);
  EXPECT_EQ(Percentile(hundred, 50), 50);
  EXPECT_EQ(Percentile(hundred, 99), 99);
  EXPECT_EQ(Percentile(hundred, 100), 100);
}

TEST(BenchStatsTest, TtftAndInterTokenLatencies) {
  RequestTrace t;
  t.ok = true;
  // A chunk without tokens (e.g. the final one with usage) does not count.
  t.chunk_seconds = {0.5, 0.6, 0.8, 0.9};
  t.chunk_tokens = {1, 1, 2, 0};
  EXPECT_DOUBLE_EQ(TimeToFirstToken(t), 0.5);
  EXPECT_EQ(TokenCount(t), 4);
  std::vector<double> itl = InterTokenLatencies(t);
  ASSERT_EQ(itl.size(), 3u);
  EXPECT_NEAR(itl[0], 0.1, 1e-12);
  EXPECT_NEAR(itl[1], 0.1, 1e-12);
  EXPECT_NEAR(itl[2], 0.1, 1e-12);

  RequestTrace none;
  none.chunk_seconds = {0.2};
  none.chunk_tokens = {0};
  EXPECT_EQ(TimeToFirstToken(none), -1);
  EXPECT_TRUE(InterTokenLatencies(none).empty());
}

TEST(BenchStatsTest, SummaryCountsErrorsAndTokens) {
  RequestTrace a, b, failed;
  a.ok = b.ok = true;
  a.chunk_seconds = {1.0, 1.5};
  a.chunk_tokens = {1, 1};
  b.chunk_seconds = {2.0, 2.25, 2.5};
  b.chunk_tokens = {1, 1, 1};
  failed.error = "boom";
  Summary s = Summarize({a, failed, b}, 2.5);
  EXPECT_EQ(s.requests, 3);
  EXPECT_EQ(s.errors, 1);
  EXPECT_EQ(s.first_error, "boom");
  EXPECT_EQ(s.tokens, 5);
  EXPECT_DOUBLE_EQ(s.tokens_per_second, 2.0);
  EXPECT_DOUBLE_EQ(s.requests_per_second, 0.8);
  EXPECT_DOUBLE_EQ(s.ttft_p50, 1.0);
  EXPECT_DOUBLE_EQ(s.ttft_p99, 2.0);
  EXPECT_DOUBLE_EQ(s.itl_p50, 0.25);
  EXPECT_DOUBLE_EQ(s.itl_p99, 0.5);
}

}  // namespace
}  // namespace otaro::bench
