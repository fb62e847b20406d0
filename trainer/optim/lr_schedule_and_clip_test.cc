#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/optim/grad_clip.h"
#include "trainer/optim/lr_schedule.h"

namespace otaro::trainer {
namespace {

using ::testing::HasSubstr;

TEST(LrScheduleTest, ConstantWithAndWithoutWarmup) {
  LrSchedule constant;  // 1e-5, the paper's
  for (int64_t t : {1, 2, 500, 1000, 5000}) EXPECT_DOUBLE_EQ(LearningRate(constant, t, 1000), 1e-5);
  LrSchedule warm{LrScheduleKind::kConstant, 0.1, 4, 0.0};
  EXPECT_DOUBLE_EQ(LearningRate(warm, 1, 100), 0.025);
  EXPECT_DOUBLE_EQ(LearningRate(warm, 2, 100), 0.05);
  EXPECT_DOUBLE_EQ(LearningRate(warm, 4, 100), 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(warm, 5, 100), 0.1);
  EXPECT_DOUBLE_EQ(LearningRate(warm, 0, 100), 0.025);  // step < 1 reads as 1
}

// lr 1.0, min_lr 0.1, warmup 10, total 110 (100 decay steps):
//   t=5   warmup: 0.5
//   t=10  end of warmup: 1.0
//   t=60  halfway (p=0.5): 0.1 + 0.9 * (1 + cos(pi/2)) / 2 = 0.55
//   t=35  p=0.25: 0.1 + 0.9 * (1 + cos(pi/4)) / 2 = 0.1 + 0.45 * 1.7071068 = 0.868198
//   t=110 end: 0.1; beyond stays 0.1
TEST(LrScheduleTest, CosineValues) {
  const LrSchedule cosine{LrScheduleKind::kCosine, 1.0, 10, 0.1};
  ASSERT_TRUE(ValidateLrSchedule(cosine, 110).ok());
  EXPECT_DOUBLE_EQ(LearningRate(cosine, 5, 110), 0.5);
  EXPECT_DOUBLE_EQ(LearningRate(cosine, 10, 110), 1.0);
  EXPECT_NEAR(LearningRate(cosine, 11, 110), 0.1 + 0.45 * (1 + std::cos(std::numbers::pi / 100)),
              1e-15);
  EXPECT_NEAR(LearningRate(cosine, 60, 110), 0.55, 1e-12);
  EXPECT_NEAR(LearningRate(cosine, 35, 110), 0.868198, 1e-6);
  EXPECT_NEAR(LearningRate(cosine, 110, 110), 0.1, 1e-12);
  EXPECT_NEAR(LearningRate(cosine, 500, 110), 0.1, 1e-12);
  // Monotone non-increasing after warmup.
  for (int64_t t = 11; t <= 110; ++t) {
    EXPECT_LE(LearningRate(cosine, t, 110), LearningRate(cosine, t - 1, 110)) << t;
  }
  // No warmup: starts at lr; warmup over the whole run: never decays.
  const LrSchedule plain{LrScheduleKind::kCosine, 2.0, 0, 0.0};
  EXPECT_NEAR(LearningRate(plain, 1, 1000), 2.0, 1e-4);
  EXPECT_NEAR(LearningRate(plain, 500, 1000), 1.0, 1e-12);
  const LrSchedule all_warmup{LrScheduleKind::kCosine, 2.0, 8, 0.0};
  EXPECT_DOUBLE_EQ(LearningRate(all_warmup, 8, 8), 2.0);
}

TEST(LrScheduleTest, Validation) {
  EXPECT_TRUE(ValidateLrSchedule({}, 1).ok());
  EXPECT_THAT(ValidateLrSchedule({LrScheduleKind::kConstant, 0.0, 0, 0}, 10).message(),
              HasSubstr("learning rate"));
  EXPECT_FALSE(ValidateLrSchedule({LrScheduleKind::kConstant, std::nan(""), 0, 0}, 10).ok());
  EXPECT_THAT(ValidateLrSchedule({}, 0).message(), HasSubstr("total_steps"));
  EXPECT_THAT(ValidateLrSchedule({LrScheduleKind::kCosine, 1.0, 11, 0}, 10).message(),
              HasSubstr("warmup_steps must be in 0..10"));
  EXPECT_FALSE(ValidateLrSchedule({LrScheduleKind::kCosine, 1.0, -1, 0}, 10).ok());
  EXPECT_THAT(ValidateLrSchedule({LrScheduleKind::kCosine, 1.0, 0, 2.0}, 10).message(),
              HasSubstr("min_lr"));
  EXPECT_FALSE(ValidateLrSchedule({LrScheduleKind::kCosine, 1.0, 0, -0.5}, 10).ok());
  EXPECT_EQ(*ParseLrScheduleKind("Cosine"), LrScheduleKind::kCosine);
  EXPECT_EQ(*ParseLrScheduleKind("constant"), LrScheduleKind::kConstant);
  EXPECT_THAT(ParseLrScheduleKind("linear").status().message(),
              HasSubstr("valid: constant, cosine"));
}

TEST(GradClipTest, NormAndClipByHand) {
  std::vector<float> g = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(GradNorm(g), 5.0);
  // Under the limit: untouched.
  EXPECT_DOUBLE_EQ(ClipGradNorm(absl::MakeSpan(g), 10.0), 5.0);
  EXPECT_EQ(g, (std::vector<float>{3.0f, 4.0f}));
  // Over: scaled by 1 / (5 + 1e-6).
  EXPECT_DOUBLE_EQ(ClipGradNorm(absl::MakeSpan(g), 1.0), 5.0);
  EXPECT_NEAR(g[0], 0.6, 1e-6);
  EXPECT_NEAR(g[1], 0.8, 1e-6);
  EXPECT_NEAR(GradNorm(g), 1.0, 1e-6);
  // Off (0 or negative): norm reported, gradient untouched.
  std::vector<float> h = {30.0f, 40.0f};
  EXPECT_DOUBLE_EQ(ClipGradNorm(absl::MakeSpan(h), 0.0), 50.0);
  EXPECT_DOUBLE_EQ(ClipGradNorm(absl::MakeSpan(h), -1.0), 50.0);
  EXPECT_EQ(h, (std::vector<float>{30.0f, 40.0f}));
  EXPECT_DOUBLE_EQ(GradNorm({}), 0.0);
}

TEST(GradClipTest, NonFiniteNormIsReportedAndNothingIsScaled) {
  std::vector<float> g = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
  const double norm = ClipGradNorm(absl::MakeSpan(g), 1.0);
  EXPECT_TRUE(std::isnan(norm));
  EXPECT_EQ(g[0], 1.0f);
  EXPECT_EQ(g[2], 2.0f);
  EXPECT_THAT(CheckGradNorm(norm).message(), HasSubstr("NaN or Inf"));
  std::vector<float> inf = {1.0f, -std::numeric_limits<float>::infinity()};
  EXPECT_TRUE(std::isinf(GradNorm(inf)));
  EXPECT_FALSE(CheckGradNorm(GradNorm(inf)).ok());
  EXPECT_TRUE(CheckGradNorm(3.0).ok());
  // Large finite floats do not overflow: summed in double.
  std::vector<float> big(4, 3e38f);
  EXPECT_NEAR(GradNorm(big), 6e38, 1e32);
}

TEST(GradClipTest, LongVectorMatchesDoubleSumAndIsThreadCountIndependent) {
  const int64_t n = 1000003;
  std::vector<float> g(n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    g[i] = static_cast<float>(std::sin(0.001 * i) * 1e-3);
    sum += static_cast<double>(g[i]) * g[i];
  }
  const double serial = GradNorm(g);
  EXPECT_NEAR(serial, std::sqrt(sum), 1e-12 * std::sqrt(sum) + 1e-15);
  for (int threads : {2, 3, 7}) {
    sefp::ThreadPool pool(threads);
    EXPECT_EQ(GradNorm(g, &pool), serial) << threads;  // bit-identical
    std::vector<float> a = g, b = g;
    const double max_norm = serial / 4;
    EXPECT_EQ(ClipGradNorm(absl::MakeSpan(a), max_norm), serial);
    EXPECT_EQ(ClipGradNorm(absl::MakeSpan(b), max_norm, &pool), serial);
    EXPECT_EQ(a, b);
    // PyTorch's factor max_norm / (norm + 1e-6) lands just under max_norm.
    EXPECT_NEAR(GradNorm(b), max_norm * serial / (serial + 1e-6), 1e-7 * max_norm);
  }
}

}  // namespace
}  // namespace otaro::trainer
