#include "sefp/format.h"

#include <cmath>
#include <limits>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sefp/fake_quant.h"
#include "sefp/layout.h"
#include "sefp/test_util.h"

namespace otaro::sefp {
namespace {

using ::testing::HasSubstr;
using testing::BitsOf;

constexpr Reconstruction kModes[] = {Reconstruction::kMidpoint, Reconstruction::kTruncate};

TEST(GoldenTest, ConstantsMatchTheSpec) {
  const testing::Golden g = testing::LoadGolden();
  EXPECT_EQ(g.group_size, kGroupSize);
  EXPECT_EQ(g.master_bits, kMasterBits);
  EXPECT_EQ(g.min_exponent, kMinExponent);
  EXPECT_EQ(g.max_exponent, kMaxExponent);
  EXPECT_EQ(g.zero_group_exponent, kZeroGroupExponent);
  EXPECT_EQ(g.groups.size(), 10u);
  EXPECT_EQ(g.groups.back().input.size(), 44u);  // the short last group
}

// Every golden group, through every path that applies the rules: EncodeGroup +
// DecodeWeight, EncodeTensor + DecodeAll, FakeQuantize, and the packed layout.
TEST(GoldenTest, GroupsEncodeAndDecodeBitExact) {
  const testing::Golden golden = testing::LoadGolden();
  int checked = 0;
  for (size_t gi = 0; gi < golden.groups.size(); ++gi) {
    const auto& g = golden.groups[gi];
    SCOPED_TRACE(::testing::Message() << "golden group " << gi);
    const int n = static_cast<int>(g.input.size());
    uint8_t sign[kGroupSize], q8[kGroupSize];
    int64_t saturated = 0;
    const int8_t e = EncodeGroup(g.input.data(), n, sign, q8, &saturated);
    ASSERT_EQ(e, g.exponent);
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(sign[i], g.sign[i]) << "weight " << i;
      ASSERT_EQ(q8[i], g.q8[i]) << "weight " << i;
    }
    absl::StatusOr<SefpTensor> t = EncodeTensor("golden", g.input, 1, n);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->saturated, saturated);
    absl::StatusOr<PackedMatrix> packed = PackedMatrix::Pack(*t);
    ASSERT_TRUE(packed.ok()) << packed.status();
    for (Reconstruction mode : kModes) {
      const auto& by_m = g.dequant.at(std::string(ReconstructionName(mode)));
      ASSERT_EQ(by_m.size(), 7u);
      for (int m = 2; m <= 8; ++m) {
        const std::vector<uint32_t>& want = by_m.at(m);
        ASSERT_EQ(want.size(), static_cast<size_t>(n));
        std::vector<float> fq(n), from_planes(n);
        ASSERT_TRUE(FakeQuantize("golden", g.input, 1, n, m, mode, absl::MakeSpan(fq)).ok());
        ASSERT_TRUE(packed->DecodeRow(0, m, mode, from_planes.data()).ok());
        absl::StatusOr<std::vector<float>> all = t->DecodeAll(m, mode);
        ASSERT_TRUE(all.ok());
        for (int i = 0; i < n; ++i) {
          SCOPED_TRACE(::testing::Message() << ReconstructionName(mode) << " m=" << m << " weight " << i);
          ASSERT_EQ(BitsOf(DecodeWeight(e, sign[i], q8[i], m, mode)), want[i]);
          ASSERT_EQ(BitsOf((*all)[i]), want[i]);
          ASSERT_EQ(BitsOf(fq[i]), want[i]);
          ASSERT_EQ(BitsOf(from_planes[i]), want[i]);
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, (9 * 64 + 44) * 7 * 2);
}

TEST(FormatTest, ParsePrecision) {
  EXPECT_EQ(*ParsePrecision("4"), 4);
  EXPECT_EQ(*ParsePrecision("E5M3"), 3);
  EXPECT_EQ(*ParsePrecision("e5m8"), 8);
  EXPECT_EQ(*ParsePrecision(" 2 "), 2);
  for (const char* bad : {"", "1", "9", "E5M", "E5M9", "E4M3", "x", "-3", "+3", "4.0"}) {
    EXPECT_FALSE(ParsePrecision(bad).ok()) << bad;
  }
  EXPECT_EQ(*ParseReconstruction("truncate"), Reconstruction::kTruncate);
  EXPECT_FALSE(ParseReconstruction("nearest").ok());
}

TEST(FormatTest, RefusesNonFiniteNamingTheTensor) {
  std::vector<float> w(128, 0.5f);
  w[70] = std::numeric_limits<float>::quiet_NaN();
  auto t = EncodeTensor("model.layers.3.mlp.up_proj.weight", w, 2, 64);
  ASSERT_FALSE(t.ok());
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("model.layers.3.mlp.up_proj.weight"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("NaN"));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("[1, 6]"));
  w[70] = -std::numeric_limits<float>::infinity();
  std::vector<float> out(128);
  absl::Status s = FakeQuantize("q_proj", w, 2, 64, 4, Reconstruction::kMidpoint, absl::MakeSpan(out));
  EXPECT_THAT(std::string(s.message()), HasSubstr("q_proj"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("Inf"));
}

TEST(FormatTest, SaturationIsCountedOnlyWhenTheExponentIsClamped) {
  // max |w| = 2^17 -> floor(log2) = 17, clamped to 15: step8 = 2^8, q = |w| / 256.
  std::vector<float> w(64, 1.0f);
  w[0] = 131072.0f;   // q 512 -> 255
  w[1] = -65536.0f;   // q 256 -> 255
  w[2] = 65535.0f;    // q 255.99 -> 255, not saturated
  w[3] = 300.0f;      // q 1
  auto t = EncodeTensor("sat", w, 1, 64);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->exponents[0], kMaxExponent);
  EXPECT_EQ(t->saturated, 2);
  EXPECT_EQ(t->q8(0, 0), 255);
  EXPECT_EQ(t->q8(0, 1), 255);
  EXPECT_EQ(t->q8(0, 2), 255);
  EXPECT_EQ(t->q8(0, 3), 1);
  EXPECT_EQ(t->sign(0, 1), 1);
  FakeQuantStats stats;
  std::vector<float> out(64);
  ASSERT_TRUE(FakeQuantize("sat", w, 1, 64, 8, Reconstruction::kMidpoint, absl::MakeSpan(out), &stats).ok());
  EXPECT_EQ(stats.saturated, 2);
  EXPECT_EQ(out[0], 255.5f * 256.0f);
  // Just below the clamp nothing saturates, even at the top of the range.
  std::vector<float> v(64, 65535.0f);
  auto u = EncodeTensor("nosat", v, 1, 64);
  EXPECT_EQ(u->exponents[0], 15);
  EXPECT_EQ(u->saturated, 0);
}

TEST(FormatTest, ZeroGroupsAndSignedZeros) {
  std::vector<float> w(128, 0.0f);
  w[3] = -0.0f;
  w[64] = -0.0f;  // second group: -0.0 next to a real weight
  w[65] = 1.0f;
  auto t = EncodeTensor("z", w, 1, 128);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->exponents[0], kZeroGroupExponent);
  EXPECT_EQ(t->exponents[1], 0);
  for (Reconstruction mode : kModes) {
    for (int m = 2; m <= 8; ++m) {
      EXPECT_EQ(BitsOf(t->Decode(0, 0, m, mode)), 0x00000000u);
      EXPECT_EQ(BitsOf(t->Decode(0, 3, m, mode)), 0x80000000u);
    }
  }
  // -0.0 in a non-zero group: q = 0, sign 1: -0.0 in truncate, -step/2 in midpoint.
  EXPECT_EQ(BitsOf(t->Decode(0, 64, 4, Reconstruction::kTruncate)), 0x80000000u);
  EXPECT_EQ(t->Decode(0, 64, 4, Reconstruction::kMidpoint), -std::ldexp(0.5f, 0 + 1 - 4));
}

TEST(FormatTest, TinyWeightsClampAtTheSmallestExponent) {
  std::vector<float> w(64, 0.0f);
  w[0] = std::ldexp(1.0f, -20);
  w[1] = std::numeric_limits<float>::denorm_min();
  w[2] = std::ldexp(1.5f, -17);
  auto t = EncodeTensor("tiny", w, 1, 64);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->exponents[0], kMinExponent);  // floor(log2) = -17 clamped to -16
  EXPECT_EQ(t->q8(0, 0), 8);                 // 2^-20 / 2^-23
  EXPECT_EQ(t->q8(0, 1), 0);
  EXPECT_EQ(t->q8(0, 2), 96);                // 1.5 * 2^-17 / 2^-23 = 96
  EXPECT_EQ(t->saturated, 0);
}

// (The fp16/bf16 converters themselves are tested in common/float16_test.)
TEST(FormatTest, HalfPrecisionInputs) {
  std::vector<uint16_t> h = {0x3c00, 0x3800, 0x7c00};
  auto bad = EncodeTensorFp16("emb", h, 1, 3);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("emb"));
  h[2] = 0xbc00;
  auto ok = EncodeTensorFp16("emb", h, 1, 3);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->Decode(0, 2, 8, Reconstruction::kTruncate), -1.0f);
  std::vector<uint16_t> b = {0x3f80, 0xbf00};
  auto okb = EncodeTensorBf16("x", b, 1, 2);
  ASSERT_TRUE(okb.ok());
  EXPECT_EQ(okb->Decode(0, 1, 8, Reconstruction::kTruncate), -0.5f);
}

// Across scales, shapes with a short last group: the error bound, nesting (the
// stored planes at m reproduce Q(w, m) bit for bit, with only m planes resident),
// and fake quantization equal to decode-of-encode.
TEST(FormatTest, ErrorBoundAndNestingOnRandomTensors) {
  std::mt19937 rng(1234);
  for (float scale : {1e-6f, 1e-3f, 0.02f, 1.0f, 300.0f}) {
    for (int64_t cols : {64, 172, 200}) {
      const int64_t rows = 13;
      SCOPED_TRACE(::testing::Message() << "scale " << scale << " cols " << cols);
      std::vector<float> w = testing::RandomWeights(rows, cols, scale, &rng);
      auto t = EncodeTensor("rand", w, rows, cols);
      ASSERT_TRUE(t.ok());
      ASSERT_TRUE(t->Validate("rand").ok());
      EXPECT_EQ(t->saturated, 0);
      for (int m = 2; m <= 8; ++m) {
        auto packed = PackedMatrix::Pack(*t, m);  // only the planes m needs
        ASSERT_TRUE(packed.ok());
        for (Reconstruction mode : kModes) {
          auto q = t->DecodeAll(m, mode);
          std::vector<float> fq(w.size());
          ASSERT_TRUE(FakeQuantize("rand", w, rows, cols, m, mode, absl::MakeSpan(fq)).ok());
          std::vector<float> row(cols);
          for (int64_t r = 0; r < rows; ++r) {
            ASSERT_TRUE(packed->DecodeRow(r, m, mode, row.data()).ok());
            for (int64_t c = 0; c < cols; ++c) {
              const float wv = w[r * cols + c];
              const float qv = (*q)[r * cols + c];
              ASSERT_EQ(BitsOf(row[c]), BitsOf(qv)) << r << "," << c;
              ASSERT_EQ(BitsOf(fq[r * cols + c]), BitsOf(qv)) << r << "," << c;
              ASSERT_EQ(std::signbit(qv), std::signbit(wv)) << r << "," << c;
              const int e = t->exponent(r, c);
              if (e == kZeroGroupExponent) {
                ASSERT_EQ(qv, 0.0f);
                continue;
              }
              const double err = std::fabs(static_cast<double>(qv) - wv);
              if (mode == Reconstruction::kMidpoint) {
                ASSERT_LE(err, std::ldexp(1.0, e - m)) << r << "," << c;
              } else {
                ASSERT_LT(err, std::ldexp(1.0, e + 1 - m)) << r << "," << c;
                ASSERT_LE(std::fabs(qv), std::fabs(wv));
              }
            }
          }
        }
      }
    }
  }
}

TEST(LayoutTest, ResidentMaxBitsRefusesHigherPrecisions) {
  std::mt19937 rng(7);
  std::vector<float> w = testing::RandomWeights(20, 128, 0.1f, &rng);
  auto t = EncodeTensor("w", w, 20, 128);
  ASSERT_TRUE(t.ok());
  auto p4 = PackedMatrix::Pack(*t, 4);
  ASSERT_TRUE(p4.ok());
  EXPECT_TRUE(p4->CheckPrecision(4).ok());
  EXPECT_TRUE(p4->CheckPrecision(2).ok());
  absl::Status s = p4->CheckPrecision(5);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("resident_max_bits = 4"));
  std::vector<float> row(128);
  EXPECT_FALSE(p4->DecodeRow(0, 5, Reconstruction::kMidpoint, row.data()).ok());
  EXPECT_FALSE(p4->CheckPrecision(1).ok());
  EXPECT_FALSE(PackedMatrix::Pack(*t, 9).ok());
  EXPECT_FALSE(PackedMatrix::Pack(*t, 1).ok());
  // Bytes read scale as (m + 1) / 8 + 1/64 per weight (20 rows pad to 24).
  auto p8 = PackedMatrix::Pack(*t, 8);
  const double weights = 24.0 * 128;
  for (int m = 2; m <= 8; ++m) {
    EXPECT_DOUBLE_EQ(p8->BytesRead(m) / weights, (m + 1) / 8.0 + 1.0 / 64);
  }
  EXPECT_EQ(p4->BytesResident(), p8->BytesRead(4));
}

}  // namespace
}  // namespace otaro::sefp
