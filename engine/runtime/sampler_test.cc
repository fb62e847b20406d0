#include "engine/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "gtest/gtest.h"

namespace otaro::engine {
namespace {

std::vector<float> SomeLogits() {
  // Distinct values, the maximum not at an end.
  std::vector<float> l(50);
  for (int i = 0; i < 50; ++i) l[i] = std::sin(i * 1.7f) * 3 + (i == 31 ? 4 : 0);
  return l;
}

TEST(SamplerTest, GreedyIsArgmaxWithLowestIdOnTies) {
  const std::vector<float> l = SomeLogits();
  auto t = Sample(l, {}, 0);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->id, std::max_element(l.begin(), l.end()) - l.begin());
  std::vector<float> tie = {1, 5, 2, 5};
  EXPECT_EQ(Sample(tie, {}, 3)->id, 1);
  SamplingParams top1;
  top1.temperature = 1.5;
  top1.top_k = 1;
  EXPECT_EQ(Sample(tie, top1, 9)->id, 1);
}

// Greedy scans the logits in 16 lanes plus a tail: against the plain
// first-maximum loop over sizes around the lane width, with values drawn from
// a few levels (many ties, across lanes and in the tail), infinities, signed
// zeros, and a NaN anywhere being an error.
TEST(SamplerTest, GreedyMatchesThePlainLoopOnEveryLayout) {
  auto plain = [](const std::vector<float>& l) {
    int32_t best = 0;
    for (size_t i = 1; i < l.size(); ++i) {
      if (l[i] > l[best]) best = static_cast<int32_t>(i);
    }
    return best;
  };
  const float levels[] = {-INFINITY, -1.0f, -0.0f, 0.0f, 2.5f, 2.5f, 7.0f, INFINITY};
  uint64_t state = 12345;
  auto next = [&] { return state = state * 6364136223846793005ull + 1442695040888963407ull; };
  for (size_t n : {1, 2, 15, 16, 17, 31, 32, 33, 49152}) {
    for (int trial = 0; trial < 40; ++trial) {
      std::vector<float> l(n);
      const int spread = 1 + trial % 8;  // how many of the levels appear
      for (float& v : l) v = levels[(next() >> 33) % spread];
      ASSERT_EQ(Sample(l, {}, 0)->id, plain(l)) << "n " << n << " trial " << trial;
      l[(next() >> 33) % n] = std::nanf("");
      auto with_nan = Sample(l, {}, 0);
      ASSERT_FALSE(with_nan.ok()) << "n " << n << " trial " << trial;
      EXPECT_EQ(with_nan.status().code(), absl::StatusCode::kInternal);
    }
  }
}

// top_p over a large vocabulary: the sampler sorts the 256 most likely first
// and everything only when they fall short; against the whole sort, the same
// token for every step, with nuclei from a few tokens to most of the
// vocabulary (both branches).
TEST(SamplerTest, TopPOnALargeVocabularyMatchesAFullSort) {
  constexpr int kVocab = 5000;
  for (double spread : {0.05, 1.0, 6.0}) {  // flat ... peaked
    std::vector<float> l(kVocab);
    for (int i = 0; i < kVocab; ++i) l[i] = static_cast<float>(std::sin(i * 0.61) * spread);
    l[1234] += 2;
    l[4321] = l[1234];  // a tie at the top
    for (double top_p : {0.3, 0.9, 0.999}) {
      SamplingParams p;
      p.temperature = 0.8;
      p.top_p = top_p;
      p.seed = 7;
      // The reference: every id sorted, most likely first (ties: lower id).
      std::vector<int32_t> ids(kVocab);
      for (int i = 0; i < kVocab; ++i) ids[i] = i;
      std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
        return l[a] > l[b] || (l[a] == l[b] && a < b);
      });
      const double max = *std::max_element(l.begin(), l.end());
      auto weight = [&](int32_t id) { return std::exp((l[id] - max) / p.temperature); };
      double total = 0;
      for (int i = 0; i < kVocab; ++i) total += weight(i);
      std::vector<double> w;
      double mass = 0;
      while (w.size() < ids.size() && mass < top_p * total) {
        w.push_back(weight(ids[w.size()]));
        mass += w.back();
      }
      for (uint64_t step = 0; step < 200; ++step) {
        const double target = SampleUniform(p.seed, step) * mass;
        double cumulative = 0;
        int32_t want = ids[w.size() - 1];
        for (size_t i = 0; i < w.size(); ++i) {
          cumulative += w[i];
          if (target < cumulative) {
            want = ids[i];
            break;
          }
        }
        auto got = Sample(l, p, step, false);
        ASSERT_TRUE(got.ok());
        ASSERT_EQ(got->id, want) << "spread " << spread << " top_p " << top_p << " step " << step
                                 << " (nucleus " << w.size() << " tokens)";
      }
    }
  }
}

TEST(SamplerTest, LogprobIsTheLogSoftmaxOfTheChosenToken) {
  std::vector<float> l = {1, 2, 3};
  const double z = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  auto t = Sample(l, {}, 0);
  EXPECT_EQ(t->id, 2);
  EXPECT_NEAR(t->logprob, 3 - z, 1e-12);
  EXPECT_NEAR(LogSoftmaxAt(l, 0), 1 - z, 1e-12);
  // Large logits do not overflow (float64, max subtracted).
  std::vector<float> big = {1000, 1000};
  EXPECT_NEAR(LogSoftmaxAt(big, 1), std::log(0.5), 1e-12);
  // Sampled tokens report their own log p under the raw distribution.
  SamplingParams p;
  p.temperature = 0.7;
  for (uint64_t step = 0; step < 20; ++step) {
    auto s = Sample(l, p, step);
    EXPECT_NEAR(s->logprob, l[s->id] - z, 1e-12);
  }
}

TEST(SamplerTest, SeededSamplingIsReproducibleAndKeyedBySeedAndStep) {
  const std::vector<float> l = SomeLogits();
  SamplingParams p;
  p.temperature = 1.0;
  p.seed = 1234;
  std::vector<int32_t> first, again, other_seed;
  for (uint64_t step = 0; step < 200; ++step) {
    first.push_back(Sample(l, p, step)->id);
    again.push_back(Sample(l, p, step)->id);
  }
  p.seed = 1235;
  for (uint64_t step = 0; step < 200; ++step) other_seed.push_back(Sample(l, p, step)->id);
  EXPECT_EQ(first, again);
  EXPECT_NE(first, other_seed);
  // Not constant across steps.
  EXPECT_GT(std::set<int32_t>(first.begin(), first.end()).size(), 5u);
  EXPECT_EQ(SampleUniform(7, 3), SampleUniform(7, 3));
  EXPECT_NE(SampleUniform(7, 3), SampleUniform(7, 4));
}

TEST(SamplerTest, FrequenciesFollowTheTemperedDistribution) {
  // p = softmax(l / T): with l = {0, ln 3} and T = 1, p = {1/4, 3/4}; with
  // T = 0.5, p = {1/10, 9/10}.
  std::vector<float> l = {0.0f, static_cast<float>(std::log(3.0))};
  for (double temp : {1.0, 0.5}) {
    SamplingParams p;
    p.temperature = temp;
    p.seed = 99;
    int ones = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) ones += Sample(l, p, i)->id;
    const double want = temp == 1.0 ? 0.75 : 0.9;
    EXPECT_NEAR(static_cast<double>(ones) / n, want, 0.015) << "T = " << temp;
  }
}

TEST(SamplerTest, TopKAndTopPRestrictTheSupport) {
  const std::vector<float> l = SomeLogits();
  std::vector<int32_t> by_logit(l.size());
  for (size_t i = 0; i < l.size(); ++i) by_logit[i] = i;
  std::sort(by_logit.begin(), by_logit.end(), [&](int a, int b) { return l[a] > l[b]; });

  SamplingParams k;
  k.temperature = 5;  // flat: without top-k almost every token would appear
  k.top_k = 4;
  std::set<int32_t> seen;
  for (int i = 0; i < 3000; ++i) seen.insert(Sample(l, k, i)->id);
  EXPECT_EQ(seen, std::set<int32_t>(by_logit.begin(), by_logit.begin() + 4));

  // top_p: the smallest most-likely prefix with mass >= top_p (at temperature 1).
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp(l[i]);
  size_t n = 0;
  double mass = 0;
  while (mass < 0.8 * z) mass += p[by_logit[n++]];
  ASSERT_GT(n, 1u);
  ASSERT_LT(n, l.size() / 2);
  SamplingParams tp;
  tp.temperature = 1;
  tp.top_p = 0.8;
  seen.clear();
  for (int i = 0; i < 5000; ++i) seen.insert(Sample(l, tp, i)->id);
  EXPECT_EQ(seen, std::set<int32_t>(by_logit.begin(), by_logit.begin() + n));

  SamplingParams none;
  none.temperature = 5;
  seen.clear();
  for (int i = 0; i < 5000; ++i) seen.insert(Sample(l, none, i)->id);
  EXPECT_GT(seen.size(), 40u);
}

TEST(SamplerTest, RejectsBadValuesNamingTheField) {
  std::vector<float> l = {1, 2};
  SamplingParams p;
  p.temperature = -1;
  EXPECT_NE(Sample(l, p, 0).status().message().find("temperature"), std::string::npos);
  p = {};
  p.top_k = -2;
  EXPECT_NE(ValidateSamplingParams(p).message().find("top_k"), std::string::npos);
  for (double bad : {0.0, 1.5, std::nan("")}) {
    p = {};
    p.top_p = bad;
    EXPECT_NE(ValidateSamplingParams(p).message().find("top_p"), std::string::npos) << bad;
  }
  p = {};
  p.temperature = INFINITY;
  EXPECT_FALSE(ValidateSamplingParams(p).ok());
  EXPECT_FALSE(Sample({}, {}, 0).ok());
}

TEST(StopStringMatcherTest, HoldsBackPossiblePrefixesAndCutsAtTheStop) {
  StopStringMatcher m({"\n\nUser:", "END"});
  std::string shown;
  shown += m.Push("Hello");
  EXPECT_EQ(shown, "Hello");
  shown += m.Push(" wor");
  shown += m.Push("ld\n");  // "\n" could start "\n\nUser:"
  EXPECT_EQ(shown, "Hello world");
  shown += m.Push("\nUs");
  EXPECT_EQ(shown, "Hello world");
  shown += m.Push("ual");  // not the stop after all: released
  EXPECT_EQ(shown, "Hello world\n\nUsual");
  shown += m.Push(" text EN");
  EXPECT_EQ(shown, "Hello world\n\nUsual text ");
  shown += m.Push("Dless");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.matched(), "END");
  EXPECT_EQ(shown, "Hello world\n\nUsual text ");
  EXPECT_EQ(m.Push("more"), "");

  // A stop inside one push, the earliest of two wins; Flush releases the rest.
  StopStringMatcher two({"b", "cd"});
  EXPECT_EQ(two.Push("xxcdyyb"), "xx");
  EXPECT_EQ(two.matched(), "cd");
  StopStringMatcher tail({"abc"});
  EXPECT_EQ(tail.Push("zab"), "z");
  EXPECT_EQ(tail.Flush(), "ab");
  EXPECT_FALSE(tail.stopped());
  StopStringMatcher none({});
  EXPECT_EQ(none.Push("anything"), "anything");
}

}  // namespace
}  // namespace otaro::engine
