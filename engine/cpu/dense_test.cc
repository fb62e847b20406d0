#include "engine/cpu/dense.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "sefp/kernels/gemm.h"

namespace otaro::engine::cpu {
namespace {

std::vector<float> Random(size_t n, std::mt19937* rng) {
  std::normal_distribution<float> d(0, 1);
  std::vector<float> v(n);
  for (float& x : v) x = d(*rng);
  return v;
}

TEST(DenseGemmTest, MatchesFloat64AndIsBatchThreadAndIsaInvariant) {
  std::mt19937 rng(7);
  sefp::ThreadPool pool2(2), pool3(3);
  for (int64_t n : {1, 5, 8, 13, 64}) {
    for (int64_t k : {1, 5, 8, 64, 172}) {
      const int64_t batch = 7;
      const std::vector<float> w = Random(n * k, &rng), x = Random(batch * k, &rng);
      std::vector<float> y(batch * n);
      DenseGemm(w.data(), n, k, x.data(), batch, y.data(), nullptr);
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t i = 0; i < n; ++i) {
          double ref = 0, scale = 0;
          for (int64_t j = 0; j < k; ++j) {
            ref += static_cast<double>(w[i * k + j]) * x[b * k + j];
            scale += std::abs(static_cast<double>(w[i * k + j]) * x[b * k + j]);
          }
          EXPECT_NEAR(y[b * n + i], ref, 1e-6 * scale + 1e-30) << n << "x" << k;
        }
        // Row b alone, and any sub-batch, give the same bits.
        std::vector<float> one(n);
        DenseGemm(w.data(), n, k, x.data() + b * k, 1, one.data(), &pool2);
        EXPECT_EQ(std::memcmp(one.data(), &y[b * n], n * sizeof(float)), 0) << n << "x" << k;
      }
      std::vector<float> y3(batch * n), sub(3 * n);
      DenseGemm(w.data(), n, k, x.data(), batch, y3.data(), &pool3);
      EXPECT_EQ(std::memcmp(y3.data(), y.data(), y.size() * sizeof(float)), 0);
      DenseGemm(w.data(), n, k, x.data() + 2 * k, 3, sub.data(), &pool2);
      EXPECT_EQ(std::memcmp(sub.data(), &y[2 * n], sub.size() * sizeof(float)), 0);
      std::vector<float> generic(batch * n);
      internal::DenseRowsGeneric(w.data(), 0, n, k, x.data(), batch, generic.data(), n);
      EXPECT_EQ(std::memcmp(generic.data(), y.data(), y.size() * sizeof(float)), 0);
      if (sefp::CpuSupports(sefp::Isa::kAvx2)) {
        std::vector<float> avx(batch * n);
        internal::DenseRowsAvx2(w.data(), 0, n, k, x.data(), batch, avx.data(), n);
        EXPECT_EQ(std::memcmp(avx.data(), y.data(), y.size() * sizeof(float)), 0);
      }
    }
  }
}

}  // namespace
}  // namespace otaro::engine::cpu
