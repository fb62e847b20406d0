// The TrainingBackend contract (trainer/model/training_backend.h), one suite
// run over every training device: the CPU TrainingModel always, the CUDA model
// where the build has it and a GPU answers (SKIPPED with the reason
// otherwise). Each backend is made the way the tuning loop makes it
// (CreateTrainingBackend) on the real stories260K, and checked against the
// independent truth: loss and gradients from PyTorch autograd
// (tests/fixtures/trainer_gradients: float64, its own SEFP fake quantization)
// at fp, m = 8, 4, 3 and m = 4 truncate; then accumulation, evaluation, the
// masters seen afresh each forward, and the refusals of bad input.
//
// Device-specific checks stay beside each model: the CPU model's thread
// invariance and reference-forward logits (trainer/model/training_model_test),
// the CUDA model against the CPU one step by step
// (trainer/cuda/cuda_training_model_test).
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "engine/model/model_config.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "trainer/model/parameters.h"
#include "trainer/model/training_backend.h"
#include "trainer/training_device.h"

namespace otaro::trainer {
namespace {

// How closely a device must follow float64 PyTorch. The CPU figures are
// measured (worst seen: ~1e-6); the CUDA ones allow for atomic accumulation
// order and have never been checked on a GPU (none has been lent yet).
struct Tolerance {
  double loss;        // relative
  double norm_dot;    // relative, per tensor
  double entry;       // relative with the tensor's RMS as floor
  double accumulate;  // Backward twice at 0.5 vs once at 1, relative to max |g|
};

Tolerance ToleranceFor(TrainingDevice device) {
  if (device == TrainingDevice::kCuda) return {2e-5, 1e-4, 1e-3, 1e-5};
  return {2e-6, 2e-5, 2e-4, 1e-6};
}

nlohmann::json ReadFixture() {
  std::ifstream in("tests/fixtures/trainer_gradients/gradients.json");
  EXPECT_TRUE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

Precision AtBits(int m, sefp::Reconstruction mode = sefp::Reconstruction::kMidpoint) {
  return Precision{true, m, mode};
}

class TrainingBackendContractTest : public ::testing::TestWithParam<TrainingDevice> {
 protected:
  static void SetUpTestSuite() {
    engine::ModelConfig config;
    auto source = engine::OpenHfFolder(
        otaro::testing::SharedPath("data/models/stories260K-hf-converted"), &config);
    ASSERT_TRUE(source.ok()) << source.status();
    auto params = Parameters::FromSource(**source, config);
    ASSERT_TRUE(params.ok()) << params.status();
    params_ = new Parameters(std::move(*params));
    fixture_ = new nlohmann::json(ReadFixture());
  }
  static void TearDownTestSuite() {
    delete params_;
    delete fixture_;
  }

  void SetUp() override {
    const absl::Status usable = CheckTrainingDevice(GetParam());
    if (!usable.ok()) GTEST_SKIP() << usable.message();
  }

  // A backend as the tuning loop makes it: 2 rows of up to 32 positions.
  std::unique_ptr<TrainingBackend> Make(const Parameters* params) const {
    auto backend = CreateTrainingBackend(GetParam(), params, 2, 32, /*threads=*/2);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? std::move(*backend) : nullptr;
  }

  static Batch FixtureBatch() {
    const nlohmann::json& b = (*fixture_)["batch"];
    Batch batch;
    batch.batch_size = b["batch_size"];
    batch.seq_len = b["seq_len"];
    batch.inputs = b["inputs"].get<std::vector<int32_t>>();
    batch.targets = b["targets"].get<std::vector<int32_t>>();
    return batch;
  }

  static Parameters* params_;
  static nlohmann::json* fixture_;
};
Parameters* TrainingBackendContractTest::params_ = nullptr;
nlohmann::json* TrainingBackendContractTest::fixture_ = nullptr;

TEST_P(TrainingBackendContractTest, LossAndGradientsMatchPyTorchAutograd) {
  const Tolerance tol = ToleranceFor(GetParam());
  const std::vector<std::string> names = (*fixture_)["tensor_names"];
  ASSERT_EQ(names, engine::ExpectedTensorNames(params_->config()));
  for (const nlohmann::json& c : (*fixture_)["cases"]) {
    const std::string label = c["label"];
    SCOPED_TRACE("case " + label);
    Precision precision;
    precision.quantized = c["quantized"];
    precision.m = c["m"];
    precision.mode = c["mode"] == "truncate" ? sefp::Reconstruction::kTruncate
                                             : sefp::Reconstruction::kMidpoint;
    std::unique_ptr<TrainingBackend> backend = Make(params_);
    ASSERT_NE(backend, nullptr);
    auto loss = backend->Forward(FixtureBatch(), precision);
    ASSERT_TRUE(loss.ok()) << loss.status();
    std::vector<float> grads(params_->values().size(), 0.0f);
    ASSERT_TRUE(backend->Backward(1.0f, absl::MakeSpan(grads)).ok());
    const double want_loss = c["loss"];
    EXPECT_NEAR(*loss, want_loss, tol.loss * std::fabs(want_loss));

    double worst_norm = 0, worst_dot = 0, worst_entry = 0;
    for (size_t k = 0; k < names.size(); ++k) {
      const Parameters::Tensor& t = *params_->Find(names[k]);
      absl::Span<const float> g = TensorIn(absl::MakeConstSpan(grads), t);
      const nlohmann::json& want = c["grads"][names[k]];
      double norm = 0, dot = 0;
      for (int64_t i = 0; i < t.size; ++i) {
        norm += static_cast<double>(g[i]) * g[i];
        dot += g[i] * std::sin(0.37 * static_cast<double>(i) + static_cast<double>(k));
      }
      norm = std::sqrt(norm);
      const double want_norm = want["norm"], want_dot = want["dot"];
      const double norm_err = std::fabs(norm - want_norm) / want_norm;
      // The dot can be near 0 by cancellation: measure it against the norm.
      const double dot_err = std::fabs(dot - want_dot) / (std::fabs(want_dot) + want_norm);
      EXPECT_LT(norm_err, tol.norm_dot) << names[k];
      EXPECT_LT(dot_err, tol.norm_dot) << names[k];
      worst_norm = std::max(worst_norm, norm_err);
      worst_dot = std::max(worst_dot, dot_err);
      const double rms = want_norm / std::sqrt(static_cast<double>(t.size));
      const std::vector<int64_t> idx = (*fixture_)["sample_indices"][names[k]];
      for (size_t s = 0; s < idx.size(); ++s) {
        const double w = want["samples"][s];
        const double err = std::fabs(g[idx[s]] - w) / (std::fabs(w) + rms);
        EXPECT_LT(err, tol.entry) << names[k] << "[" << idx[s] << "] " << g[idx[s]] << " vs " << w;
        worst_entry = std::max(worst_entry, err);
      }
    }
    std::printf("%s case %s: loss %.7f (torch %.7f), worst relative error: norm %.2e, dot %.2e, "
                "entry %.2e\n",
                std::string(TrainingDeviceName(GetParam())).c_str(), label.c_str(), *loss,
                want_loss, worst_norm, worst_dot, worst_entry);
  }
}

TEST_P(TrainingBackendContractTest, BackwardAccumulatesAndEvalAgreesWithForward) {
  std::unique_ptr<TrainingBackend> backend = Make(params_);
  ASSERT_NE(backend, nullptr);
  const Batch batch = FixtureBatch();
  auto loss = backend->Forward(batch, AtBits(4));
  ASSERT_TRUE(loss.ok()) << loss.status();
  std::vector<float> once(params_->values().size(), 0.0f), twice(once.size(), 0.0f);
  ASSERT_TRUE(backend->Backward(1.0f, absl::MakeSpan(once)).ok());
  ASSERT_TRUE(backend->Backward(0.5f, absl::MakeSpan(twice)).ok());
  ASSERT_TRUE(backend->Backward(0.5f, absl::MakeSpan(twice)).ok());
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < once.size(); ++i) {
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(once[i])));
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(once[i] - twice[i])));
  }
  EXPECT_GT(max_abs, 0);
  EXPECT_LE(max_diff, ToleranceFor(GetParam()).accumulate * max_abs);

  auto nll = backend->EvalNll(batch, AtBits(4));
  ASSERT_TRUE(nll.ok()) << nll.status();
  EXPECT_EQ(nll->second, batch.ScoredTokens());
  EXPECT_NEAR(nll->first / nll->second, *loss, 1e-6 * *loss);
  EXPECT_EQ(backend->logits().size(),
            static_cast<size_t>(batch.batch_size * batch.seq_len * params_->config().vocab_size));
  // EvalNll does not leave a forward to differentiate.
  EXPECT_EQ(backend->Backward(1.0f, absl::MakeSpan(once)).code(),
            absl::StatusCode::kFailedPrecondition);

  // A smaller batch than the buffers, with nothing scored: loss 0, no gradient.
  Batch empty;
  empty.batch_size = 1;
  empty.seq_len = 5;
  empty.inputs = {1, 2, 3, 4, 5};
  empty.targets.assign(5, kIgnoreTarget);
  auto zero = backend->Forward(empty, Precision{});
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ(*zero, 0.0);
  std::vector<float> none(once.size(), 0.0f);
  ASSERT_TRUE(backend->Backward(1.0f, absl::MakeSpan(none)).ok());
  for (float v : none) ASSERT_EQ(v, 0.0f);

  const TrainingMemory mem = backend->Memory();
  EXPECT_GT(mem.activation_bytes, 0);
  EXPECT_EQ(mem.quantized_weight_bytes, params_->config().LinearParameterCount() * 4);
}

TEST_P(TrainingBackendContractTest, ForwardSeesTheMastersAsTheyAreNow) {
  Parameters changed = *params_;
  std::unique_ptr<TrainingBackend> backend = Make(&changed);
  ASSERT_NE(backend, nullptr);
  auto before = backend->Forward(FixtureBatch(), AtBits(3));
  ASSERT_TRUE(before.ok());
  for (float& v : changed.Get("model.layers.0.mlp.up_proj.weight")) v *= 1.5f;
  auto after = backend->Forward(FixtureBatch(), AtBits(3));
  ASSERT_TRUE(after.ok());
  EXPECT_NE(*before, *after);
  std::unique_ptr<TrainingBackend> fresh = Make(&changed);
  ASSERT_NE(fresh, nullptr);
  auto again = fresh->Forward(FixtureBatch(), AtBits(3));
  ASSERT_TRUE(again.ok());
  EXPECT_NEAR(*after, *again, 1e-6 * *after);
}

TEST_P(TrainingBackendContractTest, RefusesBadInputNamingIt) {
  std::unique_ptr<TrainingBackend> backend = Make(params_);
  ASSERT_NE(backend, nullptr);
  std::vector<float> grads(params_->values().size());
  EXPECT_EQ(backend->Backward(1.0f, absl::MakeSpan(grads)).code(),
            absl::StatusCode::kFailedPrecondition);

  auto expect_error = [&](const Batch& b, const Precision& p, absl::string_view needle) {
    auto r = backend->Forward(b, p);
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), needle)) << r.status();
  };
  Batch b = FixtureBatch();
  b.inputs[5] = 512;
  expect_error(b, Precision{}, "input token 512 at row 0, position 5");
  b = FixtureBatch();
  b.targets[40] = -2;
  expect_error(b, Precision{}, "target -2 at row 1, position 8");
  b = FixtureBatch();
  b.batch_size = 3;
  expect_error(b, Precision{}, "batch has 3 rows");
  b = FixtureBatch();
  b.seq_len = 64;
  b.batch_size = 1;
  expect_error(b, Precision{}, "64 positions");
  b = FixtureBatch();
  b.targets.pop_back();
  expect_error(b, Precision{}, "63 targets");
  for (int m : {1, 9}) {
    auto r = backend->Forward(FixtureBatch(), AtBits(m));
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(absl::StrContains(r.status().ToString(), std::to_string(m))) << r.status();
  }
  // A failed forward leaves nothing to differentiate.
  EXPECT_EQ(backend->Backward(1.0f, absl::MakeSpan(grads)).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(backend->Forward(FixtureBatch(), Precision{}).ok());
  std::vector<float> wrong(10);
  EXPECT_EQ(backend->Backward(1.0f, absl::MakeSpan(wrong)).code(),
            absl::StatusCode::kInvalidArgument);

  // A non-finite master is refused by the fake quantization, naming the tensor.
  Parameters broken = *params_;
  broken.Get("model.layers.1.self_attn.v_proj.weight")[7] = NAN;
  std::unique_ptr<TrainingBackend> on_broken = Make(&broken);
  ASSERT_NE(on_broken, nullptr);
  auto nan = on_broken->Forward(FixtureBatch(), AtBits(8));
  ASSERT_FALSE(nan.ok());
  EXPECT_TRUE(absl::StrContains(nan.status().message(), "model.layers.1.self_attn.v_proj.weight"))
      << nan.status();
}

INSTANTIATE_TEST_SUITE_P(EveryDevice, TrainingBackendContractTest,
                         ::testing::Values(TrainingDevice::kCpu, TrainingDevice::kCuda),
                         [](const ::testing::TestParamInfo<TrainingDevice>& info) {
                           return std::string(TrainingDeviceName(info.param));
                         });

}  // namespace
}  // namespace otaro::trainer
