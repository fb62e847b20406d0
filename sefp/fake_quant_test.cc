// FakeQuantize (the fused, per-group fast path) against the per-element reference
// EncodeGroup + DecodeWeight, bit for bit, and both against a literal transcription
// of SEFP.md in double precision (frexp / ldexp), on tensors that mix every scale
// the format meets: subnormals, zeros and -0.0, all-zero groups, ordinary weights,
// and huge values that saturate at the clamped exponent; ragged last groups; every
// m and both reconstruction modes; with and without a thread pool, and in place.
#include "sefp/fake_quant.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sefp/format.h"
#include "sefp/kernels/thread_pool.h"
#include "sefp/test_util.h"

namespace otaro::sefp {
namespace {

using ::testing::HasSubstr;
using testing::BitsOf;
using testing::MixedScaleWeights;

constexpr Reconstruction kModes[] = {Reconstruction::kMidpoint, Reconstruction::kTruncate};

struct Quantized {
  std::vector<float> q;
  FakeQuantStats stats;
};

// The per-element reference: EncodeGroup, then DecodeWeight of each weight.
Quantized Reference(const std::vector<float>& w, int64_t rows, int64_t cols, int m,
                    Reconstruction mode) {
  Quantized r;
  r.q.resize(w.size());
  uint8_t sign[kGroupSize], q8[kGroupSize];
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t c0 = 0; c0 < cols; c0 += kGroupSize) {
      const int n = static_cast<int>(std::min<int64_t>(kGroupSize, cols - c0));
      const int8_t e = EncodeGroup(&w[row * cols + c0], n, sign, q8, &r.stats.saturated);
      if (e == kZeroGroupExponent) ++r.stats.zero_groups;
      for (int i = 0; i < n; ++i) r.q[row * cols + c0 + i] = DecodeWeight(e, sign[i], q8[i], m, mode);
    }
  }
  return r;
}

// SEFP.md read literally, in double (every step below is exact in double).
std::vector<float> Spec(const float* w, int n, int m, Reconstruction mode) {
  double a = 0;
  for (int i = 0; i < n; ++i) a = std::max(a, std::fabs(static_cast<double>(w[i])));
  std::vector<float> q(n);
  for (int i = 0; i < n; ++i) {
    double magnitude = 0;
    if (a != 0) {
      int x = 0;
      std::frexp(a, &x);
      const int e = std::clamp(x - 1, kMinExponent, kMaxExponent);
      const double q8 = std::min(std::floor(std::fabs(static_cast<double>(w[i])) / std::ldexp(1.0, e - 7)), 255.0);
      const double qm = std::floor(q8 / std::ldexp(1.0, 8 - m));
      magnitude = (qm + (mode == Reconstruction::kMidpoint ? 0.5 : 0.0)) * std::ldexp(1.0, e + 1 - m);
    }
    q[i] = static_cast<float>(std::signbit(w[i]) ? -magnitude : magnitude);
  }
  return q;
}

void ExpectBitExact(const std::vector<float>& got, const std::vector<float>& want, int64_t cols) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(BitsOf(got[i]), BitsOf(want[i]))
        << "at [" << i / cols << ", " << i % cols << "]: " << got[i] << " vs " << want[i];
  }
}

TEST(FakeQuantizeTest, MatchesPerElementReferenceAndSpecBitExact) {
  std::mt19937 rng(2024);
  ThreadPool pool2(2), pool3(3);
  int64_t saturated = 0, zero_groups = 0, compared = 0;
  for (int64_t cols : {1, 5, 63, 64, 65, 172, 200, 257, 1536}) {
    const int64_t rows = cols >= 1000 ? 9 : 23;
    const std::vector<float> w = MixedScaleWeights(rows, cols, &rng);
    for (int m = kMinBits; m <= kMasterBits; ++m) {
      for (Reconstruction mode : kModes) {
        SCOPED_TRACE(::testing::Message() << "cols " << cols << " m " << m << " "
                                          << ReconstructionName(mode));
        const Quantized ref = Reference(w, rows, cols, m, mode);
        // The reference itself against the spec's words.
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c0 = 0; c0 < cols; c0 += kGroupSize) {
            const int n = static_cast<int>(std::min<int64_t>(kGroupSize, cols - c0));
            const std::vector<float> spec = Spec(&w[r * cols + c0], n, m, mode);
            for (int i = 0; i < n; ++i) {
              ASSERT_EQ(BitsOf(ref.q[r * cols + c0 + i]), BitsOf(spec[i])) << r << "," << c0 + i;
            }
          }
        }
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
          std::vector<float> out(w.size(), 7.0f);
          FakeQuantStats stats;
          ASSERT_TRUE(FakeQuantize("w", w, rows, cols, m, mode, absl::MakeSpan(out), &stats, pool).ok());
          ExpectBitExact(out, ref.q, cols);
          EXPECT_EQ(stats.saturated, ref.stats.saturated);
          EXPECT_EQ(stats.zero_groups, ref.stats.zero_groups);
          // In place (out aliases w).
          std::vector<float> inplace = w;
          ASSERT_TRUE(FakeQuantize("w", inplace, rows, cols, m, mode, absl::MakeSpan(inplace),
                                   nullptr, pool).ok());
          ExpectBitExact(inplace, ref.q, cols);
          compared += 2 * static_cast<int64_t>(w.size());
        }
        saturated += ref.stats.saturated;
        zero_groups += ref.stats.zero_groups;
      }
    }
  }
  // The mix really reached the special cases.
  EXPECT_GT(saturated, 0);
  EXPECT_GT(zero_groups, 0);
  EXPECT_GT(compared, 1000000);
}

// The three-argument form (no stats, no pool) the trainer's older call sites use.
TEST(FakeQuantizeTest, DefaultArgumentsStillWork) {
  std::mt19937 rng(5);
  const std::vector<float> w = testing::RandomWeights(4, 130, 0.02f, &rng);
  std::vector<float> out(w.size());
  ASSERT_TRUE(FakeQuantize("w", w, 4, 130, 3, Reconstruction::kMidpoint, absl::MakeSpan(out)).ok());
  ExpectBitExact(out, Reference(w, 4, 130, 3, Reconstruction::kMidpoint).q, 130);
}

TEST(FakeQuantizeTest, SignedZerosAndSubnormalsExactly) {
  std::vector<float> w(64, 0.0f);
  w[1] = -0.0f;
  std::vector<float> out(64);
  FakeQuantStats stats;
  ASSERT_TRUE(FakeQuantize("z", w, 1, 64, 4, Reconstruction::kMidpoint, absl::MakeSpan(out), &stats).ok());
  EXPECT_EQ(stats.zero_groups, 1);
  EXPECT_EQ(BitsOf(out[0]), 0x00000000u);  // a zero group never gets the midpoint offset
  EXPECT_EQ(BitsOf(out[1]), 0x80000000u);
  // A group of subnormals: e clamps to -16, so every one of them is below the first step.
  for (int i = 0; i < 64; ++i) w[i] = (i % 2 ? -1 : 1) * std::numeric_limits<float>::denorm_min() * (i + 1);
  ASSERT_TRUE(FakeQuantize("s", w, 1, 64, 8, Reconstruction::kTruncate, absl::MakeSpan(out), &stats).ok());
  EXPECT_EQ(stats.zero_groups, 0);
  EXPECT_EQ(BitsOf(out[0]), 0x00000000u);
  EXPECT_EQ(BitsOf(out[1]), 0x80000000u);
  ASSERT_TRUE(FakeQuantize("s", w, 1, 64, 8, Reconstruction::kMidpoint, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out[0], std::ldexp(0.5f, kMinExponent + 1 - 8));
  EXPECT_EQ(out[1], -std::ldexp(0.5f, kMinExponent + 1 - 8));
}

TEST(FakeQuantizeTest, HugeValuesSaturate) {
  std::vector<float> w(70, 1.0f);
  w[0] = std::numeric_limits<float>::max();
  w[1] = -1e30f;
  w[2] = 65535.0f;  // q 255.99: clamped by floor, not counted
  w[66] = 131072.0f;
  std::vector<float> out(70);
  FakeQuantStats stats;
  ASSERT_TRUE(FakeQuantize("h", w, 1, 70, 8, Reconstruction::kMidpoint, absl::MakeSpan(out), &stats).ok());
  EXPECT_EQ(stats.saturated, 3);
  EXPECT_EQ(out[0], 255.5f * 256.0f);
  EXPECT_EQ(out[1], -255.5f * 256.0f);
  EXPECT_EQ(out[2], 255.5f * 256.0f);
  EXPECT_EQ(out[66], 255.5f * 256.0f);
}

// The error names the first non-finite weight in row-major order, also when a
// later row's thread meets its own bad weight first.
TEST(FakeQuantizeTest, RefusesNonFiniteNamingTheFirstPosition) {
  const int64_t rows = 40, cols = 100;
  std::vector<float> w(rows * cols, 0.25f);
  w[37 * cols + 3] = std::numeric_limits<float>::quiet_NaN();
  w[21 * cols + 70] = -std::numeric_limits<float>::infinity();
  w[21 * cols + 90] = std::numeric_limits<float>::quiet_NaN();
  ThreadPool pool(3);
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    std::vector<float> out(w.size());
    FakeQuantStats stats;
    stats.saturated = 99;
    absl::Status s = FakeQuantize("model.layers.0.mlp.down_proj.weight", w, rows, cols, 4,
                                  Reconstruction::kMidpoint, absl::MakeSpan(out), &stats, p);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr("model.layers.0.mlp.down_proj.weight"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("Inf"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("[21, 70]"));
    EXPECT_EQ(stats.saturated, 99);  // untouched on error
    // In place too: the offending weight is still there to be named.
    std::vector<float> inplace = w;
    s = FakeQuantize("w", inplace, rows, cols, 4, Reconstruction::kMidpoint,
                     absl::MakeSpan(inplace), nullptr, p);
    EXPECT_THAT(std::string(s.message()), HasSubstr("[21, 70]"));
  }
}

TEST(FakeQuantizeTest, RefusesBadShapesAndPrecisions) {
  std::vector<float> w(12, 1.0f), out(12);
  EXPECT_FALSE(FakeQuantize("w", w, 3, 5, 4, Reconstruction::kMidpoint, absl::MakeSpan(out)).ok());
  std::vector<float> short_out(11);
  absl::Status s = FakeQuantize("w", w, 3, 4, 4, Reconstruction::kMidpoint, absl::MakeSpan(short_out));
  EXPECT_THAT(std::string(s.message()), HasSubstr("'w'"));
  EXPECT_FALSE(FakeQuantize("w", w, -3, -4, 4, Reconstruction::kMidpoint, absl::MakeSpan(out)).ok());
  EXPECT_FALSE(FakeQuantize("w", w, 3, 4, 1, Reconstruction::kMidpoint, absl::MakeSpan(out)).ok());
  EXPECT_FALSE(FakeQuantize("w", w, 3, 4, 9, Reconstruction::kMidpoint, absl::MakeSpan(out)).ok());
  std::vector<float> none;
  EXPECT_TRUE(FakeQuantize("w", none, 0, 0, 4, Reconstruction::kMidpoint, absl::MakeSpan(none)).ok());
}

}  // namespace
}  // namespace otaro::sefp
