// Every StepOps build performs the same operations: the AVX2 and AVX-512 builds
// (where the CPU has them) equal the generic build bit for bit; Exp is within
// 2 ulp of e^x; attention matches a float64 softmax.
#include "engine/cpu/step_ops.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace otaro::engine::cpu {
namespace {

std::vector<float> Random(size_t n, float scale, std::mt19937* rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(*rng);
  return v;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

TEST(StepOpsTest, ExpIsWithinTwoUlp) {
  for (float x = -87.0f; x < 88.0f; x += 0.0137f) {
    const double want = std::exp(static_cast<double>(x));
    const float got = Exp(x);
    const double ulp = std::ldexp(1.0, std::ilogb(want) - 23);
    ASSERT_LE(std::fabs(got - want), 2 * ulp) << "x = " << x;
  }
  EXPECT_EQ(Exp(-200.0f), Exp(-87.3f));  // clamped, tiny but finite
  EXPECT_TRUE(std::isfinite(Exp(1000.0f)));
}

struct Case {
  int64_t d, n, block_size;
};

std::vector<float> RunAttention(const StepOps& ops, const std::vector<float>& q,
                                const std::vector<std::vector<float>>& keys,
                                const std::vector<std::vector<float>>& values, const Case& c) {
  std::vector<const float*> k, v;
  for (const auto& b : keys) k.push_back(b.data());
  for (const auto& b : values) v.push_back(b.data());
  std::vector<float> scores(c.n), out(c.d);
  ops.attend({q.data(), c.d, c.n, c.block_size, k.data(), v.data(), 0.125f, scores.data(), out.data()});
  return out;
}

TEST(StepOpsTest, EveryBuildAgreesAndAttentionIsASoftmax) {
  std::mt19937 rng(4);
  for (const Case& c : {Case{64, 1, 16}, Case{64, 37, 16}, Case{64, 130, 16}, Case{32, 9, 4},
                        Case{48, 5, 1}, Case{128, 77, 32},
                        Case{72, 200, 16}, Case{80, 70, 64}}) {
    const std::vector<float> q = Random(c.d, 1.0f, &rng);
    const int64_t blocks = (c.n + c.block_size - 1) / c.block_size;
    std::vector<std::vector<float>> keys, values;
    for (int64_t b = 0; b < blocks; ++b) {
      keys.push_back(Random(c.d * c.block_size, 1.0f, &rng));
      values.push_back(Random(c.d * c.block_size, 1.0f, &rng));
    }
    const std::vector<float> generic = RunAttention(StepOpsFor(sefp::Isa::kScalar), q, keys, values, c);
    for (sefp::Isa isa : {sefp::Isa::kAvx2, sefp::Isa::kAvx512}) {
      if (!sefp::CpuSupports(isa)) continue;
      EXPECT_TRUE(BitEqual(generic, RunAttention(StepOpsFor(isa), q, keys, values, c)))
          << sefp::IsaName(isa) << " n=" << c.n;
    }
    // float64 softmax over the same layout.
    std::vector<double> s(c.n), want(c.d, 0.0);
    double max = -INFINITY, sum = 0;
    for (int64_t j = 0; j < c.n; ++j) {
      const std::vector<float>& kt = keys[j / c.block_size];
      double dot = 0;
      for (int64_t t = 0; t < c.d; ++t) dot += double{q[t]} * kt[t * c.block_size + j % c.block_size];
      s[j] = dot * 0.125;
      max = std::max(max, s[j]);
    }
    for (double& v : s) sum += (v = std::exp(v - max));
    for (int64_t j = 0; j < c.n; ++j) {
      const float* v = values[j / c.block_size].data() + (j % c.block_size) * c.d;
      for (int64_t t = 0; t < c.d; ++t) want[t] += s[j] / sum * v[t];
    }
    for (int64_t t = 0; t < c.d; ++t) EXPECT_NEAR(generic[t], want[t], 1e-5) << "n=" << c.n;
  }
}

TEST(StepOpsTest, GroupedHeadsGiveEachHeadsOwnBits) {
  // GQA: the query heads sharing a KV head attend in one call; each head's
  // output is the same bits as attending alone, on every build.
  std::mt19937 rng(5);
  for (const Case& c : {Case{64, 130, 16}, Case{64, 7, 16}, Case{80, 45, 32}}) {
    const int64_t blocks = (c.n + c.block_size - 1) / c.block_size;
    std::vector<std::vector<float>> keys, values;
    for (int64_t b = 0; b < blocks; ++b) {
      keys.push_back(Random(c.d * c.block_size, 1.0f, &rng));
      values.push_back(Random(c.d * c.block_size, 1.0f, &rng));
    }
    std::vector<const float*> k, v;
    for (const auto& b : keys) k.push_back(b.data());
    for (const auto& b : values) v.push_back(b.data());
    for (int64_t heads : {2, 3, 4, 7}) {
      const std::vector<float> q = Random(heads * c.d, 1.0f, &rng);
      for (sefp::Isa isa : {sefp::Isa::kScalar, sefp::Isa::kAvx2, sefp::Isa::kAvx512}) {
        if (!sefp::CpuSupports(isa)) continue;
        const StepOps& ops = StepOpsFor(isa);
        std::vector<float> scores(heads * c.n), grouped(heads * c.d);
        ops.attend({q.data(), c.d, c.n, c.block_size, k.data(), v.data(), 0.125f, scores.data(),
                    grouped.data(), heads});
        for (int64_t g = 0; g < heads; ++g) {
          const std::vector<float> qg(q.begin() + g * c.d, q.begin() + (g + 1) * c.d);
          const std::vector<float> alone = RunAttention(ops, qg, keys, values, c);
          const std::vector<float> mine(grouped.begin() + g * c.d, grouped.begin() + (g + 1) * c.d);
          EXPECT_TRUE(BitEqual(alone, mine))
              << sefp::IsaName(isa) << " head " << g << " of " << heads << ", n=" << c.n;
        }
      }
    }
  }
}

TEST(StepOpsTest, ElementwiseOpsAgreeAcrossBuilds) {
  std::mt19937 rng(6);
  const int64_t n = 1536 + 7;
  const std::vector<float> x = Random(n, 3.0f, &rng), w = Random(n, 1.0f, &rng);
  const std::vector<float> up = Random(n, 1.0f, &rng);
  auto run = [&](const StepOps& ops) {
    std::vector<float> norm(n), gate = x, acc = w;
    ops.rms_norm(x.data(), w.data(), n, 1e-5, norm.data());
    ops.swiglu(gate.data(), up.data(), n);
    ops.add(acc.data(), x.data(), n);
    norm.insert(norm.end(), gate.begin(), gate.end());
    norm.insert(norm.end(), acc.begin(), acc.end());
    return norm;
  };
  const std::vector<float> generic = run(StepOpsFor(sefp::Isa::kScalar));
  for (int64_t i = 0; i < n; ++i) {
    const double g = x[i];
    EXPECT_NEAR(generic[n + i], g / (1 + std::exp(-g)) * up[i], 1e-5 * (1 + std::fabs(g)));
  }
  for (sefp::Isa isa : {sefp::Isa::kAvx2, sefp::Isa::kAvx512}) {
    if (!sefp::CpuSupports(isa)) continue;
    EXPECT_TRUE(BitEqual(generic, run(StepOpsFor(isa)))) << sefp::IsaName(isa);
  }
}

}  // namespace
}  // namespace otaro::engine::cpu
