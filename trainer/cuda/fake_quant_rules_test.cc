// Runs without a GPU: the per-weight rules of sefp/fake_quant_rules.h composed
// the way the CUDA kernel composes them (fake_quant_kernel.cu: one warp per
// group, lane i holding weights i and i + 32, a max over the lanes of AbsBits,
// the first non-finite weight found by lane order, lo before hi), against
// sefp::FakeQuantize bit for bit. This target is compiled as C++17, the dialect
// nvcc compiles the header in, so the header's pre-C++20 bit casts are the ones
// under test (the library it is compared with is built as C++20).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "sefp/fake_quant.h"
#include "sefp/fake_quant_rules.h"
#include "sefp/test_util.h"

namespace otaro::trainer::cuda {
namespace {

namespace rules = sefp::rules;
using sefp::Reconstruction;
using sefp::testing::BitsOf;

static_assert(__cplusplus < 202002L, "this test must build as C++17 (see BUILD)");

constexpr uint64_t kNone = ~uint64_t{0};

// The kernel's steps for one tensor, one "warp" (loop over 32 lanes) per group.
// Returns the row-major index of the first non-finite weight, or kNone.
uint64_t KernelOnHost(const std::vector<float>& w, int64_t rows, int64_t cols, int m,
                      Reconstruction mode, std::vector<float>* out) {
  uint64_t first_bad = kNone;
  const int64_t groups_per_row = (cols + sefp::kGroupSize - 1) / sefp::kGroupSize;
  for (int64_t group = 0; group < rows * groups_per_row; ++group) {
    const int64_t row = group / groups_per_row;
    const int64_t c0 = (group % groups_per_row) * sefp::kGroupSize;
    const int64_t n = std::min<int64_t>(cols - c0, sefp::kGroupSize);
    const int64_t at = row * cols + c0;
    float lo[32], hi[32];
    uint32_t max_abs = 0;
    unsigned first = 64;
    for (int lane = 0; lane < 32; ++lane) {
      lo[lane] = lane < n ? w[at + lane] : 0.0f;
      hi[lane] = lane + 32 < n ? w[at + lane + 32] : 0.0f;
      const uint32_t lo_bits = rules::AbsBits(lo[lane]), hi_bits = rules::AbsBits(hi[lane]);
      max_abs = std::max({max_abs, lo_bits, hi_bits});
      const unsigned lo_bad = lo_bits >= rules::kNonFiniteBits ? lane : 64u;
      const unsigned hi_bad = hi_bits >= rules::kNonFiniteBits ? lane + 32u : 64u;
      first = std::min({first, lo_bad, hi_bad});
    }
    if (max_abs >= rules::kNonFiniteBits) {
      first_bad = std::min<uint64_t>(first_bad, at + first);
      continue;
    }
    const rules::FakeQuantScales scales =
        rules::ScalesForGroup(rules::GroupExponent(max_abs), m, mode);
    int32_t saturated = 0;
    for (int lane = 0; lane < 32; ++lane) {
      if (lane < n) (*out)[at + lane] = rules::FakeQuantizeWeight(lo[lane], scales, m, &saturated);
      if (lane + 32 < n) {
        (*out)[at + lane + 32] = rules::FakeQuantizeWeight(hi[lane], scales, m, &saturated);
      }
    }
  }
  return first_bad;
}

TEST(FakeQuantRulesTest, KernelCompositionMatchesFakeQuantizeBitForBit) {
  std::mt19937 rng(7);
  int64_t compared = 0;
  for (int64_t cols : {1, 31, 32, 33, 63, 64, 65, 100, 192, 257}) {
    const int64_t rows = 11;
    const std::vector<float> w = sefp::testing::MixedScaleWeights(rows, cols, &rng);
    for (int m = sefp::kMinBits; m <= sefp::kMasterBits; ++m) {
      for (Reconstruction mode : {Reconstruction::kMidpoint, Reconstruction::kTruncate}) {
        SCOPED_TRACE(::testing::Message() << "cols " << cols << " m " << m);
        std::vector<float> want(w.size()), got(w.size(), 7.0f);
        ASSERT_TRUE(sefp::FakeQuantize("w", w, rows, cols, m, mode, absl::MakeSpan(want)).ok());
        ASSERT_EQ(KernelOnHost(w, rows, cols, m, mode, &got), kNone);
        for (size_t i = 0; i < w.size(); ++i) {
          ASSERT_EQ(BitsOf(got[i]), BitsOf(want[i])) << "at " << i << ": " << w[i];
        }
        compared += static_cast<int64_t>(w.size());
      }
    }
  }
  EXPECT_GT(compared, 100000);
}

TEST(FakeQuantRulesTest, FirstNonFiniteWeightIsTheOneFakeQuantizeNames) {
  std::mt19937 rng(11);
  const int64_t rows = 5, cols = 150;
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> w = sefp::testing::MixedScaleWeights(rows, cols, &rng);
    // One to three non-finite weights anywhere, in any lane half.
    std::uniform_int_distribution<int64_t> pos(0, rows * cols - 1);
    const int count = 1 + trial % 3;
    int64_t first = rows * cols;
    for (int i = 0; i < count; ++i) {
      const int64_t p = pos(rng);
      w[p] = (trial + i) % 2 ? std::numeric_limits<float>::quiet_NaN()
                             : -std::numeric_limits<float>::infinity();
      first = std::min(first, p);
    }
    std::vector<float> out(w.size());
    const uint64_t bad = KernelOnHost(w, rows, cols, 4, Reconstruction::kMidpoint, &out);
    ASSERT_EQ(bad, static_cast<uint64_t>(first));
    const absl::Status want =
        sefp::FakeQuantize("w", w, rows, cols, 4, Reconstruction::kMidpoint, absl::MakeSpan(out));
    EXPECT_EQ(sefp::NonFiniteWeightError("w", w[bad], bad / cols, bad % cols), want);
  }
}

TEST(FakeQuantRulesTest, HeaderStepsAgreeWithTheirDefinitions) {
  // The C++17 bit casts round-trip and build exact powers of two.
  for (int k = -126; k <= 127; ++k) EXPECT_EQ(rules::PowerOfTwo(k), std::ldexp(1.0f, k)) << k;
  for (float f : {0.0f, -0.0f, 1.5f, -3e38f, std::numeric_limits<float>::denorm_min()}) {
    EXPECT_EQ(BitsOf(rules::BitsToFloat(rules::FloatBits(f))), BitsOf(f));
    EXPECT_EQ(rules::FloatBits(f), BitsOf(f));
  }
  // The exponent clamps as std::clamp would, and a zero group is marked.
  EXPECT_EQ(rules::GroupExponent(0), sefp::kZeroGroupExponent);
  EXPECT_EQ(rules::GroupExponent(rules::AbsBits(1e-30f)), sefp::kMinExponent);
  EXPECT_EQ(rules::GroupExponent(rules::AbsBits(3e38f)), sefp::kMaxExponent);
  EXPECT_EQ(rules::GroupExponent(rules::AbsBits(0.75f)), -1);
  // Saturation: the clamp to 255 comes before the conversion.
  int32_t saturated = 0;
  EXPECT_EQ(rules::QuantizeMagnitude(1e30f, 1.0f, &saturated), 255);
  EXPECT_EQ(rules::QuantizeMagnitude(255.9f, 1.0f, &saturated), 255);
  EXPECT_EQ(rules::QuantizeMagnitude(254.9f, 1.0f, &saturated), 254);
  EXPECT_EQ(saturated, 1);
}

}  // namespace
}  // namespace otaro::trainer::cuda
