// The CPU training model on the real stories260K, what is its own: the
// parameter layout, the STE identity, logits against the engine's float64
// reference forward with Q(W, m) weights, thread-count invariance. The
// TrainingBackend contract (PyTorch gradients, accumulation, refusals) is
// trainer/training_backend_contract_test, run over every device.
#include "trainer/model/random_model_source.h"
#include "trainer/model/training_model.h"

#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "common/testing/shared_data.h"
#include "engine/cpu/reference_forward.h"
#include "engine/model/loader.h"
#include "engine/model/tensor_source.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sefp/fake_quant.h"

namespace otaro::trainer {
namespace {

std::string StoriesHf() {
  return otaro::testing::SharedPath("data/models/stories260K-hf-converted");
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

Precision AtBits(int m, sefp::Reconstruction mode = sefp::Reconstruction::kMidpoint) {
  return Precision{true, m, mode};
}

class TrainingModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::ModelConfig config;
    auto source = engine::OpenHfFolder(StoriesHf(), &config);
    ASSERT_TRUE(source.ok()) << source.status();
    auto params = Parameters::FromSource(**source, config);
    ASSERT_TRUE(params.ok()) << params.status();
    params_ = new Parameters(std::move(*params));
    fixture_ = new nlohmann::json(ReadJson("tests/fixtures/trainer_gradients/gradients.json"));
  }
  static void TearDownTestSuite() {
    delete params_;
    delete fixture_;
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

  // Loss and gradients of the fixture batch at `precision` (fresh model).
  static std::vector<float> Gradients(const Parameters& params, const Precision& precision,
                                      double* loss, int threads = 2) {
    TrainingModel model(&params, 2, 32, threads);
    auto l = model.Forward(FixtureBatch(), precision);
    EXPECT_TRUE(l.ok()) << l.status();
    if (loss != nullptr) *loss = l.ok() ? *l : NAN;
    std::vector<float> grads(params.values().size(), 0.0f);
    absl::Status s = model.Backward(1.0f, absl::MakeSpan(grads));
    EXPECT_TRUE(s.ok()) << s;
    return grads;
  }

  static Parameters* params_;
  static nlohmann::json* fixture_;
};
Parameters* TrainingModelTest::params_ = nullptr;
nlohmann::json* TrainingModelTest::fixture_ = nullptr;

TEST_F(TrainingModelTest, ParametersFollowExpectedTensorNames) {
  const std::vector<std::string> names = engine::ExpectedTensorNames(params_->config());
  ASSERT_EQ(params_->tensors().size(), names.size());
  int64_t offset = 0, quantized = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    const Parameters::Tensor& t = params_->tensors()[i];
    EXPECT_EQ(t.name, names[i]);
    EXPECT_EQ(t.offset, offset);
    offset += t.size;
    if (t.quantized) quantized += t.size;
    EXPECT_EQ(t.quantized, absl::StrContains(t.name, "_proj.weight")) << t.name;
  }
  EXPECT_EQ(offset, static_cast<int64_t>(params_->values().size()));
  EXPECT_EQ(offset, params_->config().ParameterCount());
  EXPECT_EQ(quantized, params_->config().LinearParameterCount());
  EXPECT_TRUE(params_->Get("no.such.tensor").empty());
  EXPECT_EQ(params_->Find("no.such.tensor"), nullptr);
  EXPECT_EQ(params_->Get("model.norm.weight").size(), 64u);

  Parameters zeros = Parameters::ZerosLike(*params_);
  EXPECT_EQ(zeros.values().size(), params_->values().size());
  for (float v : zeros.values()) ASSERT_EQ(v, 0.0f);
}

TEST_F(TrainingModelTest, AsTensorSourceServesTheParameters) {
  std::unique_ptr<engine::TensorSource> source = AsTensorSource(*params_);
  EXPECT_TRUE(engine::CheckTensors(*source, params_->config()).ok());
  auto w = source->ReadFloat32("model.layers.2.mlp.down_proj.weight");
  ASSERT_TRUE(w.ok()) << w.status();
  absl::Span<const float> want = params_->Get("model.layers.2.mlp.down_proj.weight");
  EXPECT_TRUE(std::equal(w->begin(), w->end(), want.begin(), want.end()));
  EXPECT_EQ(source->StorageType("model.norm.weight"), "F32");
  EXPECT_EQ(source->ReadFloat32("nope").status().code(), absl::StatusCode::kNotFound);
  // A round trip through Parameters::FromSource gives the same values.
  auto again = Parameters::FromSource(*source, params_->config());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(std::equal(again->values().begin(), again->values().end(),
                         params_->values().begin(), params_->values().end()));
}

// Q(W, m) of every quantized linear of `params`, in place.
Parameters QuantizedCopy(const Parameters& params, int m, sefp::Reconstruction mode) {
  Parameters q = params;
  for (const Parameters::Tensor& t : q.tensors()) {
    if (!t.quantized) continue;
    absl::Span<float> w = TensorIn(q.values(), t);
    absl::Status s = sefp::FakeQuantize(t.name, w, t.shape[0], t.shape[1], m, mode, w);
    EXPECT_TRUE(s.ok()) << s;
  }
  return q;
}

TEST_F(TrainingModelTest, StraightThroughGradientIsTheGradientAtQuantizedWeights) {
  for (int m : {8, 3}) {
    double loss_q = 0, loss_fp = 0;
    const std::vector<float> at_m = Gradients(*params_, AtBits(m), &loss_q);
    const Parameters qw = QuantizedCopy(*params_, m, sefp::Reconstruction::kMidpoint);
    const std::vector<float> fp_at_q = Gradients(qw, Precision{}, &loss_fp);
    EXPECT_EQ(loss_q, loss_fp) << m;
    double max_abs = 0, max_diff = 0;
    for (size_t i = 0; i < at_m.size(); ++i) {
      max_abs = std::max(max_abs, static_cast<double>(std::fabs(fp_at_q[i])));
      max_diff = std::max(max_diff, static_cast<double>(std::fabs(at_m[i] - fp_at_q[i])));
    }
    EXPECT_LE(max_diff, 1e-6 * max_abs) << "m=" << m;
    // And quantization matters: the fp gradient at W differs.
    const std::vector<float> fp = Gradients(*params_, Precision{}, nullptr);
    double fp_diff = 0;
    for (size_t i = 0; i < fp.size(); ++i) {
      fp_diff = std::max(fp_diff, static_cast<double>(std::fabs(fp[i] - at_m[i])));
    }
    EXPECT_GT(fp_diff, 1e-4 * max_abs) << "m=" << m;
  }
}

TEST_F(TrainingModelTest, LogitsMatchEngineReferenceForward) {
  engine::LoadOptions options;
  options.quantize = false;
  auto dense = engine::LoadModel(StoriesHf(), options);
  ASSERT_TRUE(dense.ok()) << dense.status();
  const Batch batch = FixtureBatch();
  for (int m : {0, 8, 3}) {  // 0: unquantized
    std::vector<engine::cpu::testing::DenseLayer> layers((*dense)->layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      const engine::LlamaLayer& L = (*dense)->layers[l];
      const engine::Linear* lin[7] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
      for (int i = 0; i < 7; ++i) {
        layers[l].w[i] = lin[i]->dense;
        if (m == 0) continue;
        ASSERT_TRUE(sefp::FakeQuantize("w", lin[i]->dense, lin[i]->out_features,
                                       lin[i]->in_features, m, sefp::Reconstruction::kMidpoint,
                                       absl::MakeSpan(layers[l].w[i]))
                        .ok());
      }
    }
    TrainingModel model(params_, 2, 32, 2);
    const Precision precision = m == 0 ? Precision{} : AtBits(m);
    ASSERT_TRUE(model.Forward(batch, precision).ok());
    const int64_t V = params_->config().vocab_size, T = batch.seq_len;
    ASSERT_EQ(model.logits().size(), static_cast<size_t>(batch.batch_size * T * V));
    double worst = 0;
    for (int64_t b = 0; b < batch.batch_size; ++b) {
      const std::vector<int> tokens(batch.inputs.begin() + b * T, batch.inputs.begin() + (b + 1) * T);
      const std::vector<double> ref = engine::cpu::testing::ReferenceForward(**dense, layers, tokens);
      for (int64_t i = 0; i < T * V; ++i) {
        const double err = std::fabs(model.logits()[b * T * V + i] - ref[i]) / (1 + std::fabs(ref[i]));
        worst = std::max(worst, err);
      }
    }
    EXPECT_LT(worst, 1e-4) << "m=" << m;
    std::printf("m=%d: worst relative logit error vs engine reference %.2e\n", m, worst);
  }
}

// The contract's refusals are in trainer/training_backend_contract_test; these
// are the CPU model's own constructor arguments.
TEST_F(TrainingModelTest, RefusesBadConstructorArgumentsAtTheFirstForward) {
  TrainingModel bad(params_, 0, 32, 2);
  EXPECT_TRUE(absl::StrContains(bad.Forward(FixtureBatch(), Precision{}).status().message(),
                                "max_batch"));
  TrainingModel no_params(nullptr, 1, 1, 1);
  EXPECT_FALSE(no_params.Forward(FixtureBatch(), Precision{}).ok());
}

TEST_F(TrainingModelTest, ThreadCountDoesNotChangeTheResult) {
  double l1 = 0, l2 = 0;
  const std::vector<float> g1 = Gradients(*params_, AtBits(4), &l1, 1);
  const std::vector<float> g3 = Gradients(*params_, AtBits(4), &l2, 3);
  EXPECT_NEAR(l1, l2, 1e-6 * l1);
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < g1.size(); ++i) {
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(g1[i])));
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(g1[i] - g3[i])));
  }
  EXPECT_LE(max_diff, 1e-5 * max_abs);
}

// Every tensor's gradient against a central difference of the loss along a
// random direction in that tensor only (float32 model: a loose tolerance, but
// a wrong or missing term is off by far more).
TEST(TrainingModelSyntheticTest, Qwen2UntiedScaledRopeGradientsMatchDirectionalDifferences) {
  engine::ModelConfig c;
  c.architecture = "qwen2";
  c.vocab_size = 40;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position = 64;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  // llama3 scaling; wavelengths 6.3 (kept), 63 (interpolated), 628 and 6283 (scaled).
  c.rope_scaling = {8.0, 1.0, 8.0, 256};
  c.attention_bias = true;
  c.tie_word_embeddings = false;
  RandomModelSource source(c, 7);
  auto made = Parameters::FromSource(source, c);
  ASSERT_TRUE(made.ok()) << made.status();
  Parameters params = std::move(*made);
  ASSERT_NE(params.Find("lm_head.weight"), nullptr);
  ASSERT_NE(params.Find("model.layers.1.self_attn.k_proj.bias"), nullptr);

  Batch batch;
  batch.batch_size = 2;
  batch.seq_len = 9;
  std::mt19937 rng(3);
  for (int i = 0; i < 18; ++i) {
    batch.inputs.push_back(static_cast<int32_t>(rng() % 40));
    batch.targets.push_back(i % 5 == 0 ? kIgnoreTarget : static_cast<int32_t>(rng() % 40));
  }
  TrainingModel model(&params, 2, 9, 2);
  ASSERT_TRUE(model.Forward(batch, Precision{}).ok());
  std::vector<float> grads(params.values().size(), 0.0f);
  ASSERT_TRUE(model.Backward(1.0f, absl::MakeSpan(grads)).ok());

  std::normal_distribution<float> dist(0.0f, 1.0f);
  const std::vector<float> base(params.values().begin(), params.values().end());
  for (const Parameters::Tensor& t : params.tensors()) {
    std::vector<float> dir(t.size);
    for (float& d : dir) d = dist(rng);
    double analytic = 0;
    for (int64_t i = 0; i < t.size; ++i) analytic += dir[i] * grads[t.offset + i];
    const float h = 2e-3f;
    double loss[2];
    for (int side = 0; side < 2; ++side) {
      absl::Span<float> w = TensorIn(params.values(), t);
      for (int64_t i = 0; i < t.size; ++i) {
        w[i] = base[t.offset + i] + (side == 0 ? h : -h) * dir[i];
      }
      auto nll = model.EvalNll(batch, Precision{});
      ASSERT_TRUE(nll.ok()) << nll.status();
      loss[side] = nll->first / nll->second;
      std::copy(base.begin() + t.offset, base.begin() + t.offset + t.size, w.begin());
    }
    const double fd = (loss[0] - loss[1]) / (2.0 * h);
    EXPECT_NEAR(analytic, fd, 1e-2 * std::fabs(fd) + 2e-4) << t.name;
  }
}

}  // namespace
}  // namespace otaro::trainer
