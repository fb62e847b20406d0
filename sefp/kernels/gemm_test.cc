#include "sefp/kernels/gemm.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sefp/format.h"
#include "sefp/kernels/thread_pool.h"
#include "sefp/layout.h"
#include "sefp/test_util.h"

namespace otaro::sefp {
namespace {

using ::testing::HasSubstr;

constexpr Reconstruction kModes[] = {Reconstruction::kMidpoint, Reconstruction::kTruncate};
constexpr GemmKernel kKernels[] = {GemmKernel::kDigitLookup, GemmKernel::kDecodedTiles};

// The ISAs this machine can run (scalar always; AVX2 when the CPU has it).
std::vector<Isa> Isas() {
  std::vector<Isa> isas = {Isa::kScalar};
  if (CpuSupportsAvx2Fma()) isas.push_back(Isa::kAvx2);
  return isas;
}

std::vector<float> RandomInputs(int64_t n, std::mt19937* rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(*rng);
  return x;
}

// Natural scale of the kernel's rounding error for output (b, n): every group adds
// +-x_i terms scaled by 2^e, so the error is bounded by eps * sum_g 2^e sum |x_i|.
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

TEST(GemmTest, GoldenGemvAtEveryPrecision) {
  const testing::Golden golden = testing::LoadGolden();
  const auto& g = golden.gemv;
  ASSERT_EQ(g.rows, 4);
  ASSERT_EQ(g.cols, 172);
  auto t = EncodeTensor("golden_gemv", g.w, g.rows, g.cols);
  ASSERT_TRUE(t.ok()) << t.status();
  auto w = PackedMatrix::Pack(*t);
  ASSERT_TRUE(w.ok());
  for (Isa isa : Isas()) {
    for (int m = 2; m <= 8; ++m) {
      std::vector<float> y(g.rows);
      ASSERT_TRUE(Gemv(*w, m, g.x, absl::MakeSpan(y), {Reconstruction::kMidpoint, isa}).ok());
      const std::vector<double>& want = g.y_midpoint.at(m);
      std::vector<double> ref(g.rows);
      ASSERT_TRUE(ReferenceGemm(*t, m, Reconstruction::kMidpoint, g.x, 1, absl::MakeSpan(ref)).ok());
      for (int64_t n = 0; n < g.rows; ++n) {
        EXPECT_NEAR(y[n], want[n], 1e-5 * std::fabs(want[n])) << IsaName(isa) << " m=" << m << " row " << n;
        EXPECT_NEAR(ref[n], want[n], 1e-12 * std::fabs(want[n])) << "reference m=" << m;
      }
    }
  }
}

struct Shape {
  int64_t rows, cols;
};

// Odd shapes: N not a multiple of the 8-row block; K a multiple of 64 but not of
// the 16-group slice (and one short-group K for the padding path).
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
      for (int64_t batch : {1, 3, 8}) {
        const std::vector<float> x = RandomInputs(batch * s.cols, &rng);
        const std::vector<double> err_scale = ErrorScale(*t, x, batch);
        for (Reconstruction mode : kModes) {
          for (int m = 2; m <= 8; ++m) {
            std::vector<double> ref(batch * s.rows);
            ASSERT_TRUE(ReferenceGemm(*t, m, mode, x, batch, absl::MakeSpan(ref)).ok());
            for (GemmKernel kernel : kKernels) {
              std::vector<std::vector<float>> results;
              for (Isa isa : Isas()) {
                SCOPED_TRACE(::testing::Message()
                             << s.rows << "x" << s.cols << " batch " << batch << " "
                             << ReconstructionName(mode) << " m=" << m << " " << IsaName(isa) << " "
                             << GemmKernelName(kernel));
                std::vector<float> y(batch * s.rows, std::nanf(""));
                ASSERT_TRUE(
                    Gemm(*w, m, x, batch, absl::MakeSpan(y), {mode, isa, nullptr, kernel}).ok());
                for (size_t i = 0; i < y.size(); ++i) {
                  ASSERT_NEAR(y[i], ref[i], 1e-5 * err_scale[i] + 1e-30) << "output " << i;
                }
                results.push_back(std::move(y));
              }
              // The scalar fallback and AVX2 do the same operations in the same order.
              for (size_t i = 1; i < results.size(); ++i) {
                ASSERT_TRUE(BitEqual(results[0], results[i])) << GemmKernelName(kernel);
              }
            }
          }
        }
      }
    }
  }
}

TEST(GemmTest, BatchInvariantAndGemvEqualsGemm) {
  std::mt19937 rng(5);
  // batch 13: two full 6-row tiles of the decoded kernel plus a remainder.
  const int64_t rows = 45, cols = 384, batch = 13;
  auto t = EncodeTensor("w", testing::RandomWeights(rows, cols, 0.05f, &rng), rows, cols);
  auto w = PackedMatrix::Pack(*t);
  ASSERT_TRUE(w.ok());
  const std::vector<float> x = RandomInputs(batch * cols, &rng);
  for (GemmKernel kernel : kKernels) {
    for (Isa isa : Isas()) {
      const GemmOptions opts{Reconstruction::kMidpoint, isa, nullptr, kernel};
      for (int m : {3, 8}) {
        std::vector<float> y(batch * rows);
        ASSERT_TRUE(Gemm(*w, m, x, batch, absl::MakeSpan(y), opts).ok());
        for (int64_t b = 0; b < batch; ++b) {
          // Alone (Gemv), and in a different batch with other companions.
          std::vector<float> xb(x.begin() + b * cols, x.begin() + (b + 1) * cols);
          std::vector<float> alone(rows);
          ASSERT_TRUE(Gemv(*w, m, xb, absl::MakeSpan(alone), opts).ok());
          std::vector<float> other = RandomInputs(3 * cols, &rng);
          std::copy(xb.begin(), xb.end(), other.begin() + cols);
          std::vector<float> y3(3 * rows);
          ASSERT_TRUE(Gemm(*w, m, other, 3, absl::MakeSpan(y3), opts).ok());
          std::vector<float> from_batch(y.begin() + b * rows, y.begin() + (b + 1) * rows);
          std::vector<float> from_other(y3.begin() + rows, y3.begin() + 2 * rows);
          EXPECT_TRUE(BitEqual(from_batch, alone)) << "row " << b << " m=" << m << " " << GemmKernelName(kernel);
          EXPECT_TRUE(BitEqual(from_batch, from_other)) << "row " << b << " m=" << m << " " << GemmKernelName(kernel);
        }
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
  for (GemmKernel kernel : kKernels) {
    for (Isa isa : Isas()) {
      std::vector<float> single(batch * rows);
      ASSERT_TRUE(Gemm(*w, 5, x, batch, absl::MakeSpan(single),
                       {Reconstruction::kTruncate, isa, nullptr, kernel})
                      .ok());
      for (int threads : {2, 3, 4, 7}) {
        ThreadPool pool(threads);
        for (int rep = 0; rep < 3; ++rep) {
          std::vector<float> y(batch * rows);
          ASSERT_TRUE(Gemm(*w, 5, x, batch, absl::MakeSpan(y),
                           {Reconstruction::kTruncate, isa, &pool, kernel})
                          .ok());
          EXPECT_TRUE(BitEqual(single, y))
              << threads << " threads, " << IsaName(isa) << " " << GemmKernelName(kernel);
        }
      }
    }
  }
}

// The decoded kernel materializes Q(W, m): a one-hot input reads back one
// weight's decoded value exactly (0 * Q adds +-0), so every decoded weight can be
// compared with DecodeWeight's bits, zero groups and short groups included.
TEST(GemmTest, DecodedTilesHoldExactlyTheDecodedWeights) {
  std::mt19937 rng(21);
  const int64_t rows = 11, cols = 150;
  std::vector<float> wf = testing::RandomWeights(rows, cols, 0.3f, &rng);
  for (int64_t k = 0; k < 64; ++k) wf[2 * cols + k] = 0.0f;  // a zero group in row 2
  auto t = EncodeTensor("w", wf, rows, cols);
  ASSERT_TRUE(t.ok());
  auto w = PackedMatrix::Pack(*t);
  ASSERT_TRUE(w.ok());
  for (Isa isa : Isas()) {
    for (Reconstruction mode : kModes) {
      for (int m = 2; m <= 8; ++m) {
        std::vector<float> want(cols);
        std::vector<float> x(cols * cols, 0.0f);
        for (int64_t k = 0; k < cols; ++k) x[k * cols + k] = 1.0f;
        std::vector<float> y(cols * rows);
        ASSERT_TRUE(Gemm(*w, m, x, cols, absl::MakeSpan(y),
                         {mode, isa, nullptr, GemmKernel::kDecodedTiles})
                        .ok());
        for (int64_t n = 0; n < rows; ++n) {
          ASSERT_TRUE(w->DecodeRow(n, m, mode, want.data()).ok());
          for (int64_t k = 0; k < cols; ++k) {
            // +0 + (+-0) sums to +0, so compare values (both are exact).
            ASSERT_EQ(y[k * rows + n], want[k] + 0.0f)
                << "row " << n << " col " << k << " m=" << m << " " << IsaName(isa);
          }
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
