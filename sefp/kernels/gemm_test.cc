#include "sefp/kernels/gemm.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sefp/format.h"
#include "sefp/kernels/activations.h"
#include "sefp/kernels/internal.h"
#include "sefp/kernels/thread_pool.h"
#include "sefp/layout.h"
#include "sefp/test_util.h"

namespace otaro::sefp {
namespace {

using ::testing::HasSubstr;

constexpr Reconstruction kModes[] = {Reconstruction::kMidpoint, Reconstruction::kTruncate};
constexpr Isa kSimdIsas[] = {Isa::kAvx2, Isa::kAvx512};

// The ISAs this machine can run (scalar always).
std::vector<Isa> Isas() {
  std::vector<Isa> isas = {Isa::kScalar};
  for (Isa isa : kSimdIsas) {
    if (CpuSupports(isa)) isas.push_back(isa);
  }
  return isas;
}

// The AVX-512 kernel's accumulation forms (internal.h) run on any AVX-512
// CPU; the CPU picks one per precision, the tests run every one.
std::vector<internal::Avx512Accumulate> AccumulateForms(Isa isa) {
  if (isa != Isa::kAvx512) return {internal::Avx512Accumulate::kFma};  // not read there
  return {internal::Avx512Accumulate::kFma, internal::Avx512Accumulate::kWeightScaleInBias,
          internal::Avx512Accumulate::kWidePairs};
}

const char* AccumulateName(internal::Avx512Accumulate form) {
  switch (form) {
    case internal::Avx512Accumulate::kFma: return "fma";
    case internal::Avx512Accumulate::kWeightScaleInBias: return "weight scale in bias";
    case internal::Avx512Accumulate::kWidePairs: return "16-bit pairs";
  }
  return "?";
}

// Forces one form for its scope.
class ForcedAccumulate {
 public:
  explicit ForcedAccumulate(internal::Avx512Accumulate form) {
    internal::ForceAvx512AccumulateForTesting(form);
  }
  ~ForcedAccumulate() { internal::ClearForcedAvx512AccumulateForTesting(); }
};

std::vector<float> RandomInputs(int64_t n, std::mt19937* rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(*rng);
  return x;
}

// x as the kernels multiply it: every row quantized and dequantized.
std::vector<float> AsQuantized(const std::vector<float>& x, int64_t batch, int64_t cols) {
  QuantizedActivations q;
  q.Quantize(x, batch, cols);
  std::vector<float> out;
  for (int64_t b = 0; b < batch; ++b) {
    const std::vector<float> row = q.Dequantize(b);
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

// Natural scale of the kernel's float rounding for output (b, n): each group adds
// integer products scaled by 2^e, so the error is bounded by eps * sum_g 2^e sum |x_i|.
std::vector<double> ErrorScale(const SefpTensor& t, const std::vector<float>& x, int64_t batch) {
  std::vector<double> s(static_cast<size_t>(batch * t.rows), 0.0);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t n = 0; n < t.rows; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < t.cols; ++k) {
        const int e = t.exponent(n, k);
        if (e != kZeroGroupExponent) acc += std::ldexp(1.0, e) * std::fabs(x[b * t.cols + k]);
      }
      s[b * t.rows + n] = acc;
    }
  }
  return s;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// amax / 127 with the 2 lowest significand bits cleared (activations.h).
float CutScale(float scale) {
  uint32_t bits;
  std::memcpy(&bits, &scale, sizeof(bits));
  bits &= ~uint32_t{3};
  std::memcpy(&scale, &bits, sizeof(bits));
  return scale;
}

// Which form each precision and batch get when no test forces one
// (internal.h): on AMD the bias form for every m; elsewhere the FMA form but
// at m = 7 (the bias form) and at m = 8 from 16 rows (16-bit pairs).
TEST(GemmTest, AccumulateFormPerPrecision) {
  using internal::Avx512Accumulate;
  const bool amd = __builtin_cpu_is("amd");
  for (int m = 2; m <= 8; ++m) {
    for (int64_t batch : {3, 15, 16, 256}) {
      Avx512Accumulate want = Avx512Accumulate::kFma;
      if (amd || m == 7) {
        want = Avx512Accumulate::kWeightScaleInBias;
      } else if (m == 8 && batch >= 16) {
        want = Avx512Accumulate::kWidePairs;
      }
      EXPECT_EQ(internal::Avx512AccumulateFor(m, batch), want) << "m " << m << " batch " << batch;
    }
  }
  // Forced, the 16-bit pairs mean the FMA form where d fits a byte.
  ForcedAccumulate forced(Avx512Accumulate::kWidePairs);
  EXPECT_EQ(internal::Avx512AccumulateFor(6, 64), Avx512Accumulate::kFma);
  EXPECT_EQ(internal::Avx512AccumulateFor(7, 3), Avx512Accumulate::kWidePairs);
}

TEST(ActivationsTest, QuantizationRule) {
  // Blocks of 4 inputs, each with scale amax / 127 (cut to 22 significant bits)
  // and q = round_half_even(x * 127 / amax).
  std::vector<float> x(70, 0.0f);
  x[0] = 2.54f;
  x[1] = -2.54f;
  x[2] = 0.01f;   // 0.5 after scaling: ties to even -> 0
  x[3] = 0.03f;   // 1.5 -> 2
  x[4] = -1.0f;   // block 1: -127, scale 1/127
  x[5] = 0.25f;
  x[64] = 3.0f;   // second, short group (6 inputs): block 16 = inputs 64..67
  x[65] = -1.5f;
  x[69] = 0.5f;   // block 17: inputs 68, 69 and two padding zeros
  QuantizedActivations q;
  q.Quantize(x, 1, 70);
  ASSERT_EQ(q.groups(), 2);
  const float inv = 127.0f / 2.54f;
  EXPECT_EQ(q.scales(0)[0], CutScale(2.54f / 127.0f));
  EXPECT_EQ(q.values(0)[0], 127);
  EXPECT_EQ(q.values(0)[1], -127);
  EXPECT_EQ(q.values(0)[2], static_cast<int8_t>(std::nearbyint(0.01f * inv)));
  EXPECT_EQ(q.values(0)[2], 0);
  EXPECT_EQ(q.values(0)[3], 2);
  EXPECT_EQ(q.scales(0)[1], CutScale(1.0f / 127.0f));
  EXPECT_EQ(q.values(0)[4], -127);
  EXPECT_EQ(q.values(0)[5], static_cast<int8_t>(std::nearbyint(0.25f * 127.0f)));
  EXPECT_EQ(q.scales(0)[2], 0.0f);  // an all-zero block
  EXPECT_EQ(q.scales(0)[16], CutScale(3.0f / 127.0f));
  EXPECT_EQ(q.values(0)[64], 127);
  EXPECT_EQ(q.values(0)[65], static_cast<int8_t>(std::nearbyint(-1.5f * 127.0f / 3.0f)));
  EXPECT_EQ(q.scales(0)[17], CutScale(0.5f / 127.0f));
  EXPECT_EQ(q.values(0)[69], 127);
  for (int i = 70; i < 128; ++i) EXPECT_EQ(q.values(0)[i], 0) << "padding " << i;
  // Lane offsets: -128 x the sum of each lane's 4 values.
  for (int l = 0; l < 2 * kLanesPerGroup; ++l) {
    const int8_t* v = q.values(0) + 4 * l;
    EXPECT_EQ(q.offsets(0)[l], -128 * (v[0] + v[1] + v[2] + v[3])) << "lane " << l;
    // The AVX-512 kernel's conversion constants, and why they are exact: the
    // biased int32 is the float kFloatBias + I, and the fma gives I * scale.
    EXPECT_EQ(q.float_offsets(0)[l], q.offsets(0)[l] + kFloatBiasBits);
    const float bias_scale = q.float_bias_scales(0)[l];
    EXPECT_EQ(bias_scale, -kFloatBias * q.scales(0)[l]);
    EXPECT_EQ(double{bias_scale}, -double{kFloatBias} * q.scales(0)[l]) << "inexact, lane " << l;
    for (int32_t i : {-(1 << 22) + 1, -260096, -1, 0, 1, 12345, 260096, (1 << 22) - 1}) {
      const int32_t biased = kFloatBiasBits + i;
      float as_float;
      std::memcpy(&as_float, &biased, sizeof(as_float));
      EXPECT_EQ(as_float, kFloatBias + static_cast<float>(i));
      EXPECT_EQ(std::fma(as_float, q.scales(0)[l], bias_scale), static_cast<float>(i) * q.scales(0)[l])
          << "I = " << i << ", lane " << l;
    }
  }
  // Each element is within half a step of x.
  const std::vector<float> back = q.Dequantize(0);
  for (int i = 0; i < 70; ++i) {
    EXPECT_LE(std::fabs(back[i] - x[i]), 0.5f * q.scales(0)[i / 4] * (1 + 1e-6f)) << i;
  }
}

TEST(ActivationsTest, ZeroAndNonFiniteBlocks) {
  std::vector<float> x(128, 0.0f);
  x[70] = std::numeric_limits<float>::infinity();  // block 17 (inputs 68..71)
  x[71] = 1.0f;
  x[72] = 1.0f;                                     // block 18: finite
  QuantizedActivations q;
  q.Quantize(x, 1, 128);
  EXPECT_EQ(q.scales(0)[0], 0.0f);
  EXPECT_TRUE(std::isnan(q.scales(0)[17]));
  EXPECT_EQ(q.scales(0)[18], CutScale(1.0f / 127.0f));
  for (int i = 68; i < 72; ++i) EXPECT_EQ(q.values(0)[i], 0);
  EXPECT_EQ(q.values(0)[72], 127);
}

TEST(ActivationsTest, ScalesNearTheFloatLimitCountAsDiverged) {
  // A block whose scale would reach 2^93 is NaN like a non-finite one (its
  // -kFloatBias * scale must stay finite); just below it is an ordinary block.
  for (bool simd : {false, true}) {
    std::vector<float> x(64, 1.0f);
    x[0] = 127.0f * 0x1p93f;  // block 0: scale 2^93
    x[4] = 127.0f * 0x1p92f;  // block 1: scale 2^92
    QuantizedActivations q;
    q.Quantize(x, 1, 64, simd);
    EXPECT_TRUE(std::isnan(q.scales(0)[0])) << simd;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(q.values(0)[i], 0) << simd;
    EXPECT_EQ(q.offsets(0)[0], 0);
    EXPECT_EQ(q.scales(0)[1], 0x1p92f) << simd;
    EXPECT_EQ(q.values(0)[4], 127) << simd;
    EXPECT_TRUE(std::isfinite(q.float_bias_scales(0)[1]));
  }
}

TEST(ActivationsTest, ScalesBelowTheMinimumCountAsZero) {
  // A block whose scale would be below kMinScale is all zero (every kernel
  // product must stay a normal float); at kMinScale it is an ordinary block.
  for (bool simd : {false, true}) {
    std::vector<float> x(64, 1.0f);
    for (int i = 0; i < 4; ++i) x[i] = 100.0f * 0x1p-102f;  // block 0: scale ~0.79 * 2^-102
    x[4] = 127.0f * 0x1p-102f;                              // block 1: scale 2^-102
    x[5] = x[6] = x[7] = 0.0f;
    QuantizedActivations q;
    q.Quantize(x, 1, 64, simd);
    EXPECT_EQ(q.scales(0)[0], 0.0f) << simd;
    for (int i = 0; i < 4; ++i) EXPECT_EQ(q.values(0)[i], 0) << simd;
    EXPECT_EQ(q.offsets(0)[0], 0);
    EXPECT_EQ(q.scales(0)[1], kMinScale) << simd;
    EXPECT_EQ(q.values(0)[4], 127) << simd;
  }
}

// The AVX-512 quantizer (where the CPU has it) against the portable code: the
// same bits, zero and non-finite blocks, ties and the clamp included.
TEST(ActivationsTest, EveryPathGivesTheSameBits) {
  std::mt19937 rng(8);
  const int64_t rows = 7, cols = 64 * 9 + 20;
  std::vector<float> x = RandomInputs(rows * cols, &rng);
  for (size_t i = 0; i < x.size(); i += 37) x[i] = 0.0f;
  for (int i = 0; i < 8; ++i) x[64 + i] = 0.0f;                     // an all-zero block
  x[200] = std::numeric_limits<float>::infinity();
  x[333] = std::numeric_limits<float>::quiet_NaN();
  for (int i = 0; i < 4; ++i) x[400 + i] = 0.5f * static_cast<float>(i + 1);  // ties
  x[1000] = 1e-30f;  // a tiny block
  x[1001] = -3e-31f;
  QuantizedActivations simd, portable;
  simd.Quantize(x, rows, cols, /*simd=*/true);
  portable.Quantize(x, rows, cols, /*simd=*/false);
  const int64_t g = simd.groups();
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(std::memcmp(simd.values(r), portable.values(r), g * 64), 0) << "row " << r;
    EXPECT_EQ(std::memcmp(simd.scales(r), portable.scales(r), g * 64), 0) << "row " << r;
    EXPECT_EQ(std::memcmp(simd.offsets(r), portable.offsets(r), g * 64), 0) << "row " << r;
  }
}

TEST(ActivationsTest, RowsAreIndependent) {
  std::mt19937 rng(3);
  const std::vector<float> x = RandomInputs(5 * 200, &rng);
  QuantizedActivations all, one;
  all.Quantize(x, 5, 200);
  for (int64_t r = 0; r < 5; ++r) {
    one.Quantize(absl::MakeConstSpan(x).subspan(r * 200, 200), 1, 200);
    EXPECT_EQ(std::memcmp(one.values(0), all.values(r), 256), 0);
    EXPECT_EQ(std::memcmp(one.scales(0), all.scales(r), 4 * 4 * kLanesPerGroup), 0);
  }
}

// The golden GEMV (float x): the kernels multiply the quantized x exactly, so
// they differ from the golden y by at most sum |Q| |x - x'| plus float rounding.
TEST(GemmTest, GoldenGemvAtEveryPrecision) {
  const testing::Golden golden = testing::LoadGolden();
  const auto& g = golden.gemv;
  ASSERT_EQ(g.rows, 4);
  ASSERT_EQ(g.cols, 172);
  auto t = EncodeTensor("golden_gemv", g.w, g.rows, g.cols);
  ASSERT_TRUE(t.ok()) << t.status();
  auto w = PackedMatrix::Pack(*t);
  ASSERT_TRUE(w.ok());
  const std::vector<float> xq = AsQuantized(g.x, 1, g.cols);
  for (Isa isa : Isas()) {
    for (int m = 2; m <= 8; ++m) {
      std::vector<float> y(g.rows);
      ASSERT_TRUE(Gemv(*w, m, g.x, absl::MakeSpan(y), {Reconstruction::kMidpoint, isa}).ok());
      const std::vector<double>& want = g.y_midpoint.at(m);
      std::vector<double> ref(g.rows);
      ASSERT_TRUE(ReferenceGemm(*t, m, Reconstruction::kMidpoint, g.x, 1, absl::MakeSpan(ref)).ok());
      std::vector<float> q(g.cols);
      for (int64_t n = 0; n < g.rows; ++n) {
        EXPECT_NEAR(ref[n], want[n], 1e-12 * std::fabs(want[n])) << "reference m=" << m;
        double bound = 0, scale = 0;
        for (int64_t k = 0; k < g.cols; ++k) {
          const double qk = t->Decode(n, k, m, Reconstruction::kMidpoint);
          bound += std::fabs(qk) * std::fabs(static_cast<double>(g.x[k]) - xq[k]);
          scale += std::fabs(qk * xq[k]);
        }
        EXPECT_NEAR(y[n], want[n], bound + 1e-5 * scale) << IsaName(isa) << " m=" << m << " row " << n;
      }
    }
  }
}

struct Shape {
  int64_t rows, cols;
};

// Odd shapes: N not a multiple of the 8-row block; K a multiple of 64 (and one
// short-group K for the padding path).
constexpr Shape kShapes[] = {{1, 64}, {8, 128}, {13, 192}, {37, 320}, {100, 1088}, {61, 2112}, {9, 172}};

TEST(GemmTest, EveryIsaMatchesTheReferenceAtEveryPrecision) {
  std::mt19937 rng(42);
  for (const Shape& s : kShapes) {
    for (float scale : {0.02f, 3.0f}) {
      std::vector<float> wf = testing::RandomWeights(s.rows, s.cols, scale, &rng);
      auto t = EncodeTensor("w", wf, s.rows, s.cols);
      ASSERT_TRUE(t.ok());
      auto w = PackedMatrix::Pack(*t);
      ASSERT_TRUE(w.ok());
      // Batch sizes that hit every register tile and remainder of the SIMD paths.
      for (int64_t batch : {1, 2, 3, 5, 8}) {
        const std::vector<float> x = RandomInputs(batch * s.cols, &rng);
        const std::vector<float> xq = AsQuantized(x, batch, s.cols);
        const std::vector<double> err_scale = ErrorScale(*t, xq, batch);
        for (Reconstruction mode : kModes) {
          for (int m = 2; m <= 8; ++m) {
            std::vector<double> ref(batch * s.rows);
            ASSERT_TRUE(ReferenceGemm(*t, m, mode, xq, batch, absl::MakeSpan(ref)).ok());
            std::vector<std::vector<float>> results;
            std::vector<std::string> names;
            for (Isa isa : Isas()) {
              for (internal::Avx512Accumulate form : AccumulateForms(isa)) {
                ForcedAccumulate forced(form);
                names.push_back(absl::StrCat(IsaName(isa), " (", AccumulateName(form), ")"));
                SCOPED_TRACE(::testing::Message()
                             << s.rows << "x" << s.cols << " batch " << batch << " "
                             << ReconstructionName(mode) << " m=" << m << " " << names.back());
                std::vector<float> y(batch * s.rows, std::nanf(""));
                ASSERT_TRUE(Gemm(*w, m, x, batch, absl::MakeSpan(y), {mode, isa, nullptr}).ok());
                for (size_t i = 0; i < y.size(); ++i) {
                  ASSERT_NEAR(y[i], ref[i], 1e-5 * err_scale[i] + 1e-30) << "output " << i;
                }
                results.push_back(std::move(y));
              }
            }
            // Every path performs the same float operations in the same order.
            for (size_t i = 1; i < results.size(); ++i) {
              ASSERT_TRUE(BitEqual(results[0], results[i])) << names[i];
            }
          }
        }
      }
    }
  }
}

// Every SIMD path, named, so a machine without it says so in the test log.
class IsaPathTest : public ::testing::TestWithParam<Isa> {};

TEST_P(IsaPathTest, BitEqualToTheScalarPathOnMixedScales) {
  const Isa isa = GetParam();
  if (!CpuSupports(isa)) {
    GTEST_SKIP() << "this CPU lacks " << IsaName(isa) << ": that kernel path is not tested here";
  }
  std::mt19937 rng(17);
  const int64_t rows = 29, cols = 448;
  // Every exponent regime (subnormal to saturated) and zero groups.
  auto t = EncodeTensor("w", testing::MixedScaleWeights(rows, cols, &rng), rows, cols);
  ASSERT_TRUE(t.ok());
  auto w = PackedMatrix::Pack(*t);
  ASSERT_TRUE(w.ok());
  std::uniform_int_distribution<int> exponent(-110, 90);
  for (int64_t batch : {1, 2, 3, 4, 7, 9}) {
    std::vector<float> x = RandomInputs(batch * cols, &rng);
    // Input blocks of every magnitude the quantizer keeps, and some it flushes
    // (below kMinScale) or calls diverged (2^93): products at the float range's
    // ends, where a power of two commutes with rounding only if they stay normal.
    for (int64_t i = 0; i < batch * cols; i += kLaneInputs) {
      const float f = std::ldexp(1.0f, exponent(rng));
      for (int j = 0; j < kLaneInputs; ++j) x[i + j] *= f;
    }
    for (Reconstruction mode : kModes) {
      for (int m = 2; m <= 8; ++m) {
        std::vector<float> scalar(batch * rows);
        ASSERT_TRUE(Gemm(*w, m, x, batch, absl::MakeSpan(scalar), {mode, Isa::kScalar}).ok());
        for (internal::Avx512Accumulate form : AccumulateForms(isa)) {
          ForcedAccumulate forced(form);
          std::vector<float> simd(batch * rows);
          ASSERT_TRUE(Gemm(*w, m, x, batch, absl::MakeSpan(simd), {mode, isa}).ok());
          EXPECT_TRUE(BitEqual(scalar, simd))
              << IsaName(isa) << " (" << AccumulateName(form) << ") batch " << batch << " m=" << m
              << " " << ReconstructionName(mode);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(SimdPaths, IsaPathTest, ::testing::ValuesIn(kSimdIsas),
                         [](const ::testing::TestParamInfo<Isa>& info) {
                           return info.param == Isa::kAvx2 ? "avx2" : "avx512";
                         });

TEST(GemmTest, BatchInvariantAndGemvEqualsGemm) {
  std::mt19937 rng(5);
  // batch 13: three 4-row tiles plus a remainder.
  const int64_t rows = 45, cols = 384, batch = 13;
  auto t = EncodeTensor("w", testing::RandomWeights(rows, cols, 0.05f, &rng), rows, cols);
  auto w = PackedMatrix::Pack(*t);
  ASSERT_TRUE(w.ok());
  const std::vector<float> x = RandomInputs(batch * cols, &rng);
  for (Isa isa : Isas()) {
    const GemmOptions opts{Reconstruction::kMidpoint, isa, nullptr};
    for (int m : {3, 7, 8}) {
      std::vector<float> y(batch * rows);
      ASSERT_TRUE(Gemm(*w, m, x, batch, absl::MakeSpan(y), opts).ok());
      for (int64_t b = 0; b < batch; ++b) {
        // Alone (Gemv), and in a different batch with other companions.
        std::vector<float> xb(x.begin() + b * cols, x.begin() + (b + 1) * cols);
        std::vector<float> alone(rows);
        ASSERT_TRUE(Gemv(*w, m, xb, absl::MakeSpan(alone), opts).ok());
        std::vector<float> other = RandomInputs(6 * cols, &rng);
        std::copy(xb.begin(), xb.end(), other.begin() + 5 * cols);
        std::vector<float> y6(6 * rows);
        ASSERT_TRUE(Gemm(*w, m, other, 6, absl::MakeSpan(y6), opts).ok());
        std::vector<float> from_batch(y.begin() + b * rows, y.begin() + (b + 1) * rows);
        std::vector<float> from_other(y6.begin() + 5 * rows, y6.end());
        EXPECT_TRUE(BitEqual(from_batch, alone)) << "row " << b << " m=" << m << " " << IsaName(isa);
        EXPECT_TRUE(BitEqual(from_batch, from_other)) << "row " << b << " m=" << m << " " << IsaName(isa);
      }
    }
  }
}

TEST(GemmTest, SameBitsForEveryThreadCount) {
  std::mt19937 rng(9);
  const int64_t rows = 203, cols = 1536, batch = 2;
  auto t = EncodeTensor("w", testing::RandomWeights(rows, cols, 0.05f, &rng), rows, cols);
  auto w = PackedMatrix::Pack(*t);
  const std::vector<float> x = RandomInputs(batch * cols, &rng);
  for (Isa isa : Isas()) {
    std::vector<float> single(batch * rows);
    ASSERT_TRUE(Gemm(*w, 5, x, batch, absl::MakeSpan(single), {Reconstruction::kTruncate, isa, nullptr}).ok());
    for (int threads : {2, 3, 4, 7}) {
      ThreadPool pool(threads);
      for (int rep = 0; rep < 3; ++rep) {
        std::vector<float> y(batch * rows);
        ASSERT_TRUE(Gemm(*w, 5, x, batch, absl::MakeSpan(y), {Reconstruction::kTruncate, isa, &pool}).ok());
        EXPECT_TRUE(BitEqual(single, y)) << threads << " threads, " << IsaName(isa);
      }
    }
  }
}

// A one-hot input of 127 quantizes to q = 127 with scale exactly 1, so output n
// is exactly 127 Q(w[n, k], m): every decoded weight, zero groups and short
// groups included, can be compared with DecodeWeight's value.
TEST(GemmTest, OneHotInputsReadBackEveryDecodedWeight) {
  std::mt19937 rng(21);
  const int64_t rows = 11, cols = 150;
  std::vector<float> wf = testing::RandomWeights(rows, cols, 0.3f, &rng);
  for (int64_t k = 0; k < 64; ++k) wf[2 * cols + k] = 0.0f;  // a zero group in row 2
  auto t = EncodeTensor("w", wf, rows, cols);
  ASSERT_TRUE(t.ok());
  auto w = PackedMatrix::Pack(*t);
  ASSERT_TRUE(w.ok());
  std::vector<float> x(cols * cols, 0.0f);
  for (int64_t k = 0; k < cols; ++k) x[k * cols + k] = 127.0f;
  for (Isa isa : Isas()) {
    for (Reconstruction mode : kModes) {
      for (int m = 2; m <= 8; ++m) {
        std::vector<float> want(cols);
        std::vector<float> y(cols * rows);
        ASSERT_TRUE(Gemm(*w, m, x, cols, absl::MakeSpan(y), {mode, isa, nullptr}).ok());
        for (int64_t n = 0; n < rows; ++n) {
          ASSERT_TRUE(w->DecodeRow(n, m, mode, want.data()).ok());
          for (int64_t k = 0; k < cols; ++k) {
            // +0 + (+-0) sums to +0, so compare values (both are exact).
            ASSERT_EQ(y[k * rows + n], 127.0f * want[k] + 0.0f)
                << "row " << n << " col " << k << " m=" << m << " " << IsaName(isa);
          }
        }
      }
    }
  }
}

TEST(GemmTest, NonFiniteActivationsGiveNaN) {
  std::mt19937 rng(2);
  const int64_t rows = 16, cols = 128, batch = 4;  // 4 rows: the formed path too
  std::vector<float> wf = testing::RandomWeights(rows, cols, 0.05f, &rng);
  for (int64_t k = 64; k < cols; ++k) wf[3 * cols + k] = 0.0f;  // row 3, group 1: a zero group
  auto t = EncodeTensor("w", wf, rows, cols);
  auto w = PackedMatrix::Pack(*t);
  std::vector<float> x = RandomInputs(batch * cols, &rng);
  x[cols + 100] = std::numeric_limits<float>::quiet_NaN();  // row 1 only, in group 1
  for (Isa isa : Isas()) {
    for (internal::Avx512Accumulate form : AccumulateForms(isa)) {
      ForcedAccumulate forced(form);
      std::vector<float> y(batch * rows);
      ASSERT_TRUE(
          Gemm(*w, 4, x, batch, absl::MakeSpan(y), {Reconstruction::kMidpoint, isa}).ok());
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t n = 0; n < rows; ++n) {
          // Even where W's group is all zero: its scale 0 times NaN is NaN.
          EXPECT_EQ(std::isnan(y[b * rows + n]), b == 1)
              << IsaName(isa) << " (" << AccumulateName(form) << ") row " << b << " output " << n;
        }
      }
    }
  }
}

TEST(GemmTest, ResidentPlanesAndErrors) {
  std::mt19937 rng(11);
  const int64_t rows = 16, cols = 256;
  auto t = EncodeTensor("w", testing::RandomWeights(rows, cols, 0.05f, &rng), rows, cols);
  auto full = PackedMatrix::Pack(*t, 8);
  auto low = PackedMatrix::Pack(*t, 4);
  const std::vector<float> x = RandomInputs(cols, &rng);
  for (int m = 2; m <= 4; ++m) {
    std::vector<float> a(rows), b(rows);
    ASSERT_TRUE(Gemv(*full, m, x, absl::MakeSpan(a)).ok());
    ASSERT_TRUE(Gemv(*low, m, x, absl::MakeSpan(b)).ok());
    EXPECT_TRUE(BitEqual(a, b));
  }
  std::vector<float> y(rows, 7.0f);
  absl::Status s = Gemv(*low, 5, x, absl::MakeSpan(y));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("resident_max_bits = 4"));
  EXPECT_EQ(y[0], 7.0f);  // untouched on error
  EXPECT_FALSE(Gemv(*full, 9, x, absl::MakeSpan(y)).ok());
  EXPECT_THAT(std::string(Gemv(*full, 4, absl::MakeSpan(x).subspan(1), absl::MakeSpan(y)).message()),
              HasSubstr("shape mismatch"));
  EXPECT_FALSE(Gemm(*full, 4, x, 2, absl::MakeSpan(y)).ok());
  QuantizedActivations q;
  q.Quantize(x, 1, cols);
  EXPECT_THAT(std::string(Gemm(*full, 4, q, 1, 1, absl::MakeSpan(y)).message()),
              HasSubstr("shape mismatch"));
}

TEST(IsaTest, NamesParseAndMissingIsasAreRefused) {
  for (Isa isa : {Isa::kAuto, Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    auto parsed = ParseIsa(IsaName(isa));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, isa);
  }
  EXPECT_THAT(std::string(ParseIsa("sse9").status().message()), HasSubstr("avx512"));
  auto resolved = ResolveIsa(Isa::kAuto);
  ASSERT_TRUE(resolved.ok());
  EXPECT_NE(*resolved, Isa::kAuto);
  EXPECT_TRUE(CpuSupports(*resolved));
  for (Isa isa : kSimdIsas) {
    if (!CpuSupports(isa)) {
      EXPECT_EQ(ResolveIsa(isa).status().code(), absl::StatusCode::kFailedPrecondition);
    }
  }
}

TEST(ThreadPoolTest, CoversTheRangeExactlyOnce) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 17, 1000}) {
      std::vector<int> hits(static_cast<size_t>(n), 0);
      pool.ParallelFor(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ++hits[i];
      });
      for (int h : hits) ASSERT_EQ(h, 1);
    }
  }
}

}  // namespace
}  // namespace otaro::sefp
