#include "trainer/optim/optimizer.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace otaro::trainer {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Optimizer> Make(const OptimizerOptions& options, int64_t n,
                                sefp::ThreadPool* pool = nullptr) {
  absl::StatusOr<std::unique_ptr<Optimizer>> opt = CreateOptimizer(options, n, pool);
  EXPECT_TRUE(opt.ok()) << opt.status();
  return *std::move(opt);
}

// --- by hand -----------------------------------------------------------------

TEST(SgdTest, PlainStepByHand) {
  std::unique_ptr<Optimizer> sgd = Make({}, 2);
  std::vector<float> p = {1.0f, -2.0f};
  const std::vector<float> g = {0.5f, -4.0f};
  ASSERT_TRUE(sgd->Step(absl::MakeSpan(p), g, 0.25).ok());
  // p - lr g = 1 - 0.125, -2 + 1
  EXPECT_EQ(p, (std::vector<float>{0.875f, -1.0f}));
  EXPECT_EQ(sgd->steps(), 1);
  EXPECT_TRUE(sgd->ExportState().buffers.empty());
}

TEST(SgdTest, MomentumAndWeightDecayByHand) {
  OptimizerOptions options;
  options.momentum = 0.5;
  options.weight_decay = 0.5;
  std::unique_ptr<Optimizer> sgd = Make(options, 1);
  std::vector<float> p = {2.0f};
  // Step 1: g' = 1 + 0.5*2 = 2; buf = 2; p = 2 - 0.5*2 = 1.
  ASSERT_TRUE(sgd->Step(absl::MakeSpan(p), std::vector<float>{1.0f}, 0.5).ok());
  EXPECT_FLOAT_EQ(p[0], 1.0f);
  // Step 2: g' = 1 + 0.5*1 = 1.5; buf = 0.5*2 + 1.5 = 2.5; p = 1 - 0.5*2.5 = -0.25.
  ASSERT_TRUE(sgd->Step(absl::MakeSpan(p), std::vector<float>{1.0f}, 0.5).ok());
  EXPECT_FLOAT_EQ(p[0], -0.25f);
  OptimizerState state = sgd->ExportState();
  ASSERT_EQ(state.buffers.size(), 1u);
  EXPECT_EQ(state.buffers[0].name, "momentum_buffer");
  EXPECT_FLOAT_EQ(state.buffers[0].values[0], 2.5f);
  EXPECT_EQ(state.counters.at("step"), 2);
}

// AdamW's first step moves each weight by lr * g / (|g| + eps') after the decay:
// m_hat = g and v_hat = g^2 exactly, whatever the betas.
TEST(AdamWTest, FirstStepIsSignTimesLr) {
  OptimizerOptions options;
  options.kind = OptimizerKind::kAdamW;
  options.weight_decay = 0.1;
  std::unique_ptr<Optimizer> adamw = Make(options, 3);
  std::vector<float> p = {1.0f, -1.0f, 0.5f};
  ASSERT_TRUE(adamw->Step(absl::MakeSpan(p), std::vector<float>{3.0f, -0.001f, 0.0f}, 0.01).ok());
  EXPECT_NEAR(p[0], 1.0 * (1 - 0.001) - 0.01, 1e-6);
  EXPECT_NEAR(p[1], -1.0 * (1 - 0.001) + 0.01 * 0.001 / (0.001 + 1e-8), 1e-6);
  EXPECT_NEAR(p[2], 0.5 * (1 - 0.001), 1e-7);  // zero gradient: decay only
}

// A double-precision transcription of AdamW (independent of the float code path).
TEST(AdamWTest, MatchesDoubleFormulaOverManySteps) {
  OptimizerOptions options;
  options.kind = OptimizerKind::kAdamW;
  options.beta1 = 0.8;
  options.beta2 = 0.99;
  options.eps = 1e-6;
  options.weight_decay = 0.05;
  const int n = 5;
  std::unique_ptr<Optimizer> adamw = Make(options, n);
  std::vector<float> p = {0.3f, -0.7f, 1.1f, 0.0f, -2.0f};
  std::vector<double> pd(p.begin(), p.end()), m(n, 0), v(n, 0);
  for (int t = 1; t <= 30; ++t) {
    const double lr = 1e-2 * (1 + 0.1 * (t % 4));
    std::vector<float> g(n);
    for (int i = 0; i < n; ++i) g[i] = static_cast<float>(std::sin(1.3 * t + i) * (i + 1));
    ASSERT_TRUE(adamw->Step(absl::MakeSpan(p), g, lr).ok());
    for (int i = 0; i < n; ++i) {
      pd[i] *= 1 - lr * options.weight_decay;
      m[i] = options.beta1 * m[i] + (1 - options.beta1) * g[i];
      v[i] = options.beta2 * v[i] + (1 - options.beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(options.beta1, t));
      const double v_hat = v[i] / (1 - std::pow(options.beta2, t));
      pd[i] -= lr * m_hat / (std::sqrt(v_hat) + options.eps);
    }
  }
  for (int i = 0; i < n; ++i) EXPECT_NEAR(p[i], pd[i], 2e-6) << i;
}

// --- against PyTorch (testdata/make_optim_reference.py) -----------------------

nlohmann::json LoadReference() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  const std::string path = absl::StrCat(srcdir ? srcdir : ".", "/", workspace ? workspace : "otaro",
                                        "/trainer/optim/testdata/optim_reference.json");
  std::ifstream in(path);
  EXPECT_TRUE(in) << "missing " << path;
  return nlohmann::json::parse(in);
}

TEST(OptimizerTest, MatchesPyTorchReference) {
  const nlohmann::json reference = LoadReference();
  ASSERT_EQ(reference["cases"].size(), 4u);
  for (const nlohmann::json& c : reference["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const nlohmann::json& o = c["options"];
    OptimizerOptions options;
    options.kind = *ParseOptimizerKind(o["kind"].get<std::string>());
    options.weight_decay = o["weight_decay"];
    if (options.kind == OptimizerKind::kSgd) {
      options.momentum = o["momentum"];
    } else {
      options.beta1 = o["beta1"];
      options.beta2 = o["beta2"];
      options.eps = o["eps"];
    }
    std::vector<float> p = c["params0"].get<std::vector<float>>();
    std::unique_ptr<Optimizer> opt = Make(options, static_cast<int64_t>(p.size()));
    int step = 0;
    for (const nlohmann::json& s : c["steps"]) {
      ++step;
      const std::vector<float> g = s["grad"].get<std::vector<float>>();
      ASSERT_TRUE(opt->Step(absl::MakeSpan(p), g, s["lr"].get<double>()).ok());
      const std::vector<float> want = s["params"].get<std::vector<float>>();
      for (size_t i = 0; i < p.size(); ++i) {
        EXPECT_NEAR(p[i], want[i], 1e-6 + 1e-6 * std::abs(want[i]))
            << "step " << step << " param " << i;
      }
    }
  }
}

// --- state, threads, validation ------------------------------------------------

std::vector<float> GradAt(int t, int64_t n) {
  std::vector<float> g(n);
  for (int64_t i = 0; i < n; ++i) g[i] = static_cast<float>(std::cos(0.37 * t + 0.011 * i));
  return g;
}

TEST(OptimizerTest, ExportImportResumesBitForBit) {
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdamW}) {
    SCOPED_TRACE(OptimizerKindName(kind));
    OptimizerOptions options;
    options.kind = kind;
    options.momentum = kind == OptimizerKind::kSgd ? 0.9 : 0.0;
    options.weight_decay = 0.01;
    const int64_t n = 100;
    std::vector<float> reference(n, 0.5f);
    std::unique_ptr<Optimizer> straight = Make(options, n);
    for (int t = 1; t <= 8; ++t) ASSERT_TRUE(straight->Step(absl::MakeSpan(reference), GradAt(t, n), 0.01).ok());

    std::vector<float> p(n, 0.5f);
    std::unique_ptr<Optimizer> first = Make(options, n);
    for (int t = 1; t <= 3; ++t) ASSERT_TRUE(first->Step(absl::MakeSpan(p), GradAt(t, n), 0.01).ok());
    // Copy out, as a checkpoint would, then import into a fresh optimizer.
    OptimizerState exported = first->ExportState();
    std::vector<std::vector<float>> copies;
    for (const auto& b : exported.buffers) copies.emplace_back(b.values.begin(), b.values.end());
    OptimizerState saved;
    saved.counters = exported.counters;
    for (size_t k = 0; k < copies.size(); ++k) saved.buffers.push_back({exported.buffers[k].name, copies[k]});
    first.reset();
    std::unique_ptr<Optimizer> resumed = Make(options, n);
    ASSERT_TRUE(resumed->ImportState(saved).ok());
    EXPECT_EQ(resumed->steps(), 3);
    for (int t = 4; t <= 8; ++t) ASSERT_TRUE(resumed->Step(absl::MakeSpan(p), GradAt(t, n), 0.01).ok());
    EXPECT_EQ(p, reference);
  }
}

TEST(OptimizerTest, ImportRefusesWrongState) {
  OptimizerOptions options;
  options.kind = OptimizerKind::kAdamW;
  std::unique_ptr<Optimizer> adamw = Make(options, 4);
  const std::vector<float> four(4, 1.0f), three(3, 1.0f);
  OptimizerState good{{{"exp_avg", four}, {"exp_avg_sq", four}}, {{"step", 2}}};
  OptimizerState missing{{{"exp_avg", four}}, {{"step", 2}}};
  OptimizerState wrong_size{{{"exp_avg", four}, {"exp_avg_sq", three}}, {{"step", 2}}};
  OptimizerState unknown{{{"exp_avg", four}, {"exp_avg_sq", four}, {"momentum_buffer", four}},
                         {{"step", 2}}};
  OptimizerState no_step{{{"exp_avg", four}, {"exp_avg_sq", four}}, {}};
  EXPECT_THAT(adamw->ImportState(missing).message(), HasSubstr("missing buffer 'exp_avg_sq'"));
  EXPECT_THAT(adamw->ImportState(wrong_size).message(), HasSubstr("has 3 values, expected 4"));
  EXPECT_THAT(adamw->ImportState(unknown).message(), HasSubstr("unexpected buffer 'momentum_buffer'"));
  EXPECT_THAT(adamw->ImportState(no_step).message(), HasSubstr("'step'"));
  EXPECT_EQ(adamw->steps(), 0);
  ASSERT_TRUE(adamw->ImportState(good).ok());
  EXPECT_EQ(adamw->steps(), 2);
  // A plain SGD state (no buffers) does not fit AdamW.
  std::unique_ptr<Optimizer> sgd = Make({}, 4);
  EXPECT_FALSE(adamw->ImportState(sgd->ExportState()).ok());
}

TEST(OptimizerTest, ThreadPoolGivesIdenticalResults) {
  const int64_t n = 300001;  // above the parallel threshold, odd length
  sefp::ThreadPool pool(3);
  for (OptimizerKind kind : {OptimizerKind::kSgd, OptimizerKind::kAdamW}) {
    OptimizerOptions options;
    options.kind = kind;
    options.momentum = kind == OptimizerKind::kSgd ? 0.9 : 0.0;
    std::vector<float> serial(n, 0.25f), threaded(n, 0.25f);
    std::unique_ptr<Optimizer> a = Make(options, n);
    std::unique_ptr<Optimizer> b = Make(options, n, &pool);
    for (int t = 1; t <= 3; ++t) {
      const std::vector<float> g = GradAt(t, n);
      ASSERT_TRUE(a->Step(absl::MakeSpan(serial), g, 0.1).ok());
      ASSERT_TRUE(b->Step(absl::MakeSpan(threaded), g, 0.1).ok());
    }
    EXPECT_EQ(serial, threaded) << OptimizerKindName(kind);
  }
}

TEST(OptimizerTest, StepRefusesBadInputWithoutChangingAnything) {
  std::unique_ptr<Optimizer> sgd = Make({}, 2);
  std::vector<float> p = {1, 2};
  EXPECT_THAT(sgd->Step(absl::MakeSpan(p), std::vector<float>{1}, 0.1).message(),
              HasSubstr("expected 2"));
  EXPECT_FALSE(sgd->Step(absl::MakeSpan(p), std::vector<float>{1, 1}, -1).ok());
  EXPECT_FALSE(sgd->Step(absl::MakeSpan(p), std::vector<float>{1, 1}, std::nan("")).ok());
  EXPECT_EQ(p, (std::vector<float>{1, 2}));
  EXPECT_EQ(sgd->steps(), 0);
}

TEST(OptimizerTest, OptionsAndParsing) {
  EXPECT_EQ(*ParseOptimizerKind(" AdamW "), OptimizerKind::kAdamW);
  EXPECT_EQ(*ParseOptimizerKind("sgd"), OptimizerKind::kSgd);
  EXPECT_THAT(ParseOptimizerKind("adam").status().message(), HasSubstr("valid: sgd, adamw"));
  for (auto mutate : std::vector<void (*)(OptimizerOptions&)>{
           [](OptimizerOptions& o) { o.weight_decay = -0.1; },
           [](OptimizerOptions& o) { o.momentum = 1.0; },
           [](OptimizerOptions& o) { o.beta1 = 1.0; },
           [](OptimizerOptions& o) { o.beta2 = -0.1; },
           [](OptimizerOptions& o) { o.eps = 0; },
           [](OptimizerOptions& o) { o.weight_decay = std::nan(""); },
       }) {
    OptimizerOptions options;
    mutate(options);
    EXPECT_FALSE(CreateOptimizer(options, 1).ok());
  }
  EXPECT_FALSE(CreateOptimizer({}, -1).ok());
  EXPECT_EQ((*CreateOptimizer({}, 0))->name(), "sgd");
}

}  // namespace
}  // namespace otaro::trainer
