// The CUDA training model against the CPU one (trainer/model, itself checked
// against PyTorch autograd): on the real stories260K and on a synthetic qwen2
// model (q/k/v biases, untied lm_head, llama3 RoPE scaling), the loss, the
// logits and every parameter's gradient agree at fp and at m = 8, 4, 3 (and 4
// truncated); a 20-step SGD run follows the CPU run's losses; the device fake
// quantization equals sefp::FakeQuantize bit for bit; bad input is refused with
// the CPU model's errors.
//
// Needs a CUDA GPU: without one every test is SKIPPED with the reason (never
// passed). Built only where the CUDA toolkit is (CUDA_ONLY in BUILD).
#include "trainer/model/random_model_source.h"
#include "trainer/cuda/cuda_training_model.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "absl/strings/match.h"
#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "engine/model/tensor_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sefp/fake_quant.h"
#include "sefp/test_util.h"
#include "trainer/cuda/device_context.h"
#include "trainer/cuda/fake_quant_kernel.h"
#include "trainer/model/training_model.h"

namespace otaro::trainer {
namespace {

using ::testing::HasSubstr;

// Relative tolerances of the GPU against the CPU (float32 both; only the order
// of the sums differs).
constexpr double kLossTolerance = 1e-5;
constexpr double kLogitTolerance = 1e-4;     // of the largest |logit|
constexpr double kGradientTolerance = 1e-4;  // ||g_gpu - g_cpu|| / ||g_cpu|| per tensor

Precision AtBits(int m, sefp::Reconstruction mode = sefp::Reconstruction::kMidpoint) {
  return Precision{true, m, mode};
}

std::vector<std::pair<std::string, Precision>> Precisions() {
  return {{"fp", Precision{}},
          {"m8", AtBits(8)},
          {"m4", AtBits(4)},
          {"m3", AtBits(3)},
          {"m4-truncate", AtBits(4, sefp::Reconstruction::kTruncate)}};
}

// Why there is no usable device, or "" when there is one.
std::string NoDeviceReason() {
  auto context = cuda::DeviceContext::Create(0);
  return context.ok() ? "" : std::string(context.status().message());
}

#define SKIP_WITHOUT_GPU()                                                 \
  do {                                                                     \
    const std::string reason = NoDeviceReason();                           \
    if (!reason.empty()) GTEST_SKIP() << "no CUDA device: " << reason;     \
  } while (0)

std::unique_ptr<CudaTrainingModel> MakeCuda(const Parameters* params, int64_t max_batch,
                                            int64_t max_seq) {
  auto model = CudaTrainingModel::Create(params, max_batch, max_seq);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

Batch RandomBatch(int64_t batch_size, int64_t seq_len, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  Batch batch;
  batch.batch_size = batch_size;
  batch.seq_len = seq_len;
  for (int64_t i = 0; i < batch_size * seq_len; ++i) {
    batch.inputs.push_back(static_cast<int32_t>(rng() % vocab));
    batch.targets.push_back(rng() % 10 == 0 ? kIgnoreTarget : static_cast<int32_t>(rng() % vocab));
  }
  return batch;
}

double Norm(absl::Span<const float> v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

// Loss, logits and every tensor's gradient of the two models on one batch.
void ExpectSameAsCpu(const Parameters& params, const Batch& batch, const Precision& precision,
                     TrainingModel& cpu, CudaTrainingModel& gpu) {
  auto cpu_loss = cpu.Forward(batch, precision);
  auto gpu_loss = gpu.Forward(batch, precision);
  ASSERT_TRUE(cpu_loss.ok()) << cpu_loss.status();
  ASSERT_TRUE(gpu_loss.ok()) << gpu_loss.status();
  EXPECT_NEAR(*gpu_loss, *cpu_loss, kLossTolerance * std::fabs(*cpu_loss));

  absl::Span<const float> cpu_logits = cpu.logits(), gpu_logits = gpu.logits();
  ASSERT_EQ(gpu_logits.size(), cpu_logits.size());
  double max_abs = 0, max_diff = 0;
  for (size_t i = 0; i < cpu_logits.size(); ++i) {
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(cpu_logits[i])));
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(cpu_logits[i] - gpu_logits[i])));
  }
  EXPECT_GT(max_abs, 0);
  EXPECT_LE(max_diff, kLogitTolerance * max_abs);

  std::vector<float> cpu_grads(params.values().size(), 0.0f), gpu_grads(cpu_grads.size(), 0.0f);
  ASSERT_TRUE(cpu.Backward(1.0f, absl::MakeSpan(cpu_grads)).ok());
  absl::Status s = gpu.Backward(1.0f, absl::MakeSpan(gpu_grads));
  ASSERT_TRUE(s.ok()) << s;
  for (const Parameters::Tensor& t : params.tensors()) {
    absl::Span<const float> want = TensorIn(absl::MakeConstSpan(cpu_grads), t);
    absl::Span<const float> got = TensorIn(absl::MakeConstSpan(gpu_grads), t);
    std::vector<float> diff(t.size);
    for (int64_t i = 0; i < t.size; ++i) diff[i] = got[i] - want[i];
    const double want_norm = Norm(want);
    EXPECT_GT(want_norm, 0) << t.name;
    EXPECT_LE(Norm(diff), kGradientTolerance * want_norm) << t.name;
  }
}

class CudaTrainingModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::ModelConfig config;
    auto source = engine::OpenHfFolder(
        otaro::testing::SharedPath("data/models/stories260K-hf-converted"), &config);
    ASSERT_TRUE(source.ok()) << source.status();
    auto params = Parameters::FromSource(**source, config);
    ASSERT_TRUE(params.ok()) << params.status();
    params_ = new Parameters(std::move(*params));
  }
  static void TearDownTestSuite() { delete params_; }
  void SetUp() override { SKIP_WITHOUT_GPU(); }

  // The batch of the PyTorch gradient fixture (2 x 32, some targets ignored).
  static Batch FixtureBatch() {
    std::ifstream in("tests/fixtures/trainer_gradients/gradients.json");
    std::stringstream ss;
    ss << in.rdbuf();
    const nlohmann::json b = nlohmann::json::parse(ss.str())["batch"];
    Batch batch;
    batch.batch_size = b["batch_size"];
    batch.seq_len = b["seq_len"];
    batch.inputs = b["inputs"].get<std::vector<int32_t>>();
    batch.targets = b["targets"].get<std::vector<int32_t>>();
    return batch;
  }

  static Parameters* params_;
};
Parameters* CudaTrainingModelTest::params_ = nullptr;

TEST_F(CudaTrainingModelTest, FixtureBatchMatchesCpuAtEveryPrecision) {
  TrainingModel cpu(params_, 2, 32, 2);
  auto gpu = MakeCuda(params_, 2, 32);
  ASSERT_NE(gpu, nullptr);
  for (const auto& [label, precision] : Precisions()) {
    SCOPED_TRACE(label);
    ExpectSameAsCpu(*params_, FixtureBatch(), precision, cpu, *gpu);
  }
}

// 3 x 200: attention over many 32-wide key tiles, and 600 logit rows, i.e.
// more than one chunk of the logits gradient.
TEST_F(CudaTrainingModelTest, LongBatchMatchesCpuAtEveryPrecision) {
  TrainingModel cpu(params_, 3, 200, 2);
  auto gpu = MakeCuda(params_, 3, 200);
  ASSERT_NE(gpu, nullptr);
  const Batch batch = RandomBatch(3, 200, params_->config().vocab_size, 5);
  for (const auto& [label, precision] : Precisions()) {
    SCOPED_TRACE(label);
    ExpectSameAsCpu(*params_, batch, precision, cpu, *gpu);
  }
  // A smaller batch than the buffers.
  ExpectSameAsCpu(*params_, RandomBatch(1, 37, params_->config().vocab_size, 6), AtBits(4), cpu,
                  *gpu);
}

TEST_F(CudaTrainingModelTest, TwentySgdStepsFollowTheCpuRun) {
  Parameters cpu_params = *params_, gpu_params = *params_;
  TrainingModel cpu(&cpu_params, 4, 64, 2);
  auto gpu = MakeCuda(&gpu_params, 4, 64);
  ASSERT_NE(gpu, nullptr);
  const int bits[] = {0, 8, 4, 3};
  const float lr = 0.05f;
  std::vector<float> cpu_grads(cpu_params.values().size()), gpu_grads(cpu_grads.size());
  for (int step = 0; step < 20; ++step) {
    SCOPED_TRACE(step);
    const Batch batch = RandomBatch(4, 64, params_->config().vocab_size, 100 + step);
    const Precision precision = bits[step % 4] == 0 ? Precision{} : AtBits(bits[step % 4]);
    std::fill(cpu_grads.begin(), cpu_grads.end(), 0.0f);
    std::fill(gpu_grads.begin(), gpu_grads.end(), 0.0f);
    auto cpu_loss = cpu.Forward(batch, precision);
    auto gpu_loss = gpu->Forward(batch, precision);
    ASSERT_TRUE(cpu_loss.ok() && gpu_loss.ok());
    EXPECT_NEAR(*gpu_loss, *cpu_loss, 1e-3);
    ASSERT_TRUE(cpu.Backward(1.0f, absl::MakeSpan(cpu_grads)).ok());
    ASSERT_TRUE(gpu->Backward(1.0f, absl::MakeSpan(gpu_grads)).ok());
    for (size_t i = 0; i < cpu_grads.size(); ++i) {
      cpu_params.values()[i] -= lr * cpu_grads[i];
      gpu_params.values()[i] -= lr * gpu_grads[i];
    }
  }
  // The runs moved, and moved together.
  double moved = 0, apart = 0;
  for (size_t i = 0; i < cpu_grads.size(); ++i) {
    moved = std::max(moved, static_cast<double>(std::fabs(cpu_params.values()[i] -
                                                          params_->values()[i])));
    apart = std::max(apart, static_cast<double>(std::fabs(cpu_params.values()[i] -
                                                          gpu_params.values()[i])));
  }
  // (Loose: a master that crosses a SEFP rounding boundary on one side only
  // changes its Q(W, m) by a whole step; a wrong gradient would be far off.)
  EXPECT_GT(moved, 1e-3);
  EXPECT_LE(apart, 0.1 * moved);
}

// Accumulation, evaluation, fresh masters and refusals are the
// TrainingBackend contract (trainer/training_backend_contract_test, run on
// this model where a GPU answers); what is the device's own stays here.
TEST_F(CudaTrainingModelTest, MemoryCountsWhatTheDeviceHolds) {
  auto gpu = MakeCuda(params_, 2, 32);
  ASSERT_NE(gpu, nullptr);
  ASSERT_TRUE(gpu->Forward(FixtureBatch(), AtBits(4)).ok());
  const TrainingMemory mem = gpu->Memory();
  EXPECT_EQ(mem.parameter_bytes, static_cast<int64_t>(params_->values().size() * 4));
  auto in_use = gpu->DeviceBytesInUse();
  ASSERT_TRUE(in_use.ok()) << in_use.status();
  EXPECT_GE(*in_use, mem.Total());
}

TEST_F(CudaTrainingModelTest, RefusesBadInputWithTheCpuModelsErrors) {
  EXPECT_EQ(CudaTrainingModel::Create(nullptr, 2, 32).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CudaTrainingModel::Create(params_, 0, 32).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CudaTrainingModel::Create(params_, 2, 32, /*device=*/1000).status().code(),
            absl::StatusCode::kFailedPrecondition);

  auto gpu = MakeCuda(params_, 2, 32);
  ASSERT_NE(gpu, nullptr);
  TrainingModel cpu(params_, 2, 32, 1);
  std::vector<float> grads(params_->values().size());
  EXPECT_EQ(gpu->Backward(1.0f, absl::MakeSpan(grads)).code(),
            absl::StatusCode::kFailedPrecondition);

  std::vector<Batch> bad(4, FixtureBatch());
  bad[0].inputs[5] = static_cast<int32_t>(params_->config().vocab_size);
  bad[1].targets[7] = -2;
  bad[2].batch_size = 3;
  bad[3].inputs.pop_back();
  for (const Batch& batch : bad) {
    auto got = gpu->Forward(batch, Precision{});
    auto want = cpu.Forward(batch, Precision{});
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status(), want.status());
  }
  ASSERT_TRUE(gpu->Forward(FixtureBatch(), Precision{}).ok());
  std::vector<float> short_grads(10);
  EXPECT_EQ(gpu->Backward(1.0f, absl::MakeSpan(short_grads)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gpu->Forward(FixtureBatch(), AtBits(9)).status().code(),
            absl::StatusCode::kInvalidArgument);

  // A NaN in a quantized weight: named like sefp::FakeQuantize names it.
  Parameters broken = *params_;
  const Parameters::Tensor* t = broken.Find("model.layers.3.self_attn.v_proj.weight");
  ASSERT_NE(t, nullptr);
  const int64_t row = 5, col = 17;
  TensorIn(broken.values(), *t)[row * t->shape[1] + col] = std::nanf("");
  auto broken_gpu = MakeCuda(&broken, 2, 32);
  ASSERT_NE(broken_gpu, nullptr);
  auto refused = broken_gpu->Forward(FixtureBatch(), AtBits(4));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status(), sefp::NonFiniteWeightError(t->name, std::nanf(""), row, col));
}

// The device kernel alone, against the CPU fake quantization: every exponent
// regime, ragged groups, every m and both modes, in place too, bit for bit.
TEST(CudaFakeQuantizeTest, MatchesSefpFakeQuantizeBitForBit) {
  SKIP_WITHOUT_GPU();
  auto context = cuda::DeviceContext::Create(0);
  ASSERT_TRUE(context.ok()) << context.status();
  cuda::DeviceContext& ctx = **context;
  std::mt19937 rng(99);
  for (int64_t cols : {1, 5, 31, 33, 63, 64, 65, 172, 257, 1536}) {
    const int64_t rows = 13;
    const std::vector<float> w = sefp::testing::MixedScaleWeights(rows, cols, &rng);
    const size_t bytes = w.size() * sizeof(float);
    auto in = ctx.Allocate(bytes, "w");
    auto out = ctx.Allocate(bytes, "out");
    auto flag = ctx.Allocate(sizeof(unsigned long long), "flag");
    ASSERT_TRUE(in.ok() && out.ok() && flag.ok());
    for (int m = sefp::kMinBits; m <= sefp::kMasterBits; ++m) {
      for (sefp::Reconstruction mode :
           {sefp::Reconstruction::kMidpoint, sefp::Reconstruction::kTruncate}) {
        SCOPED_TRACE(::testing::Message() << "cols " << cols << " m " << m);
        std::vector<float> want(w.size()), got(w.size());
        ASSERT_TRUE(sefp::FakeQuantize("w", w, rows, cols, m, mode, absl::MakeSpan(want)).ok());
        for (bool in_place : {false, true}) {
          ASSERT_TRUE(ctx.CopyToDevice(in->as<void>(), w.data(), bytes, "w").ok());
          ASSERT_TRUE(ctx.Fill(flag->as<void>(), 0xff, sizeof(unsigned long long), "flag").ok());
          float* dst = in_place ? in->as<float>() : out->as<float>();
          ASSERT_TRUE(cuda::LaunchFakeQuantize(ctx.stream(), in->as<float>(), rows, cols, m, mode,
                                               dst, flag->as<unsigned long long>())
                          .ok());
          unsigned long long first_bad = 0;
          ASSERT_TRUE(ctx.CopyToHost(&first_bad, flag->as<void>(), sizeof first_bad, "flag").ok());
          ASSERT_TRUE(ctx.CopyToHost(got.data(), dst, bytes, "out").ok());
          EXPECT_EQ(first_bad, cuda::kNoNonFinite);
          for (size_t i = 0; i < w.size(); ++i) {
            ASSERT_EQ(sefp::testing::BitsOf(got[i]), sefp::testing::BitsOf(want[i]))
                << "at " << i << " (" << w[i] << "), in place " << in_place;
          }
        }
      }
    }
  }
}

TEST(CudaFakeQuantizeTest, ReportsTheFirstNonFiniteWeight) {
  SKIP_WITHOUT_GPU();
  auto context = cuda::DeviceContext::Create(0);
  ASSERT_TRUE(context.ok()) << context.status();
  cuda::DeviceContext& ctx = **context;
  std::mt19937 rng(5);
  const int64_t rows = 7, cols = 150;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> w = sefp::testing::MixedScaleWeights(rows, cols, &rng);
    std::uniform_int_distribution<int64_t> pos(0, rows * cols - 1);
    int64_t first = rows * cols;
    for (int i = 0; i <= trial % 3; ++i) {
      const int64_t p = pos(rng);
      w[p] = i % 2 ? std::numeric_limits<float>::infinity() : std::nanf("");
      first = std::min(first, p);
    }
    const size_t bytes = w.size() * sizeof(float);
    auto in = ctx.Allocate(bytes, "w");
    auto flag = ctx.Allocate(sizeof(unsigned long long), "flag");
    ASSERT_TRUE(in.ok() && flag.ok());
    ASSERT_TRUE(ctx.CopyToDevice(in->as<void>(), w.data(), bytes, "w").ok());
    ASSERT_TRUE(ctx.Fill(flag->as<void>(), 0xff, sizeof(unsigned long long), "flag").ok());
    ASSERT_TRUE(cuda::LaunchFakeQuantize(ctx.stream(), in->as<float>(), rows, cols, 4,
                                         sefp::Reconstruction::kMidpoint, in->as<float>(),
                                         flag->as<unsigned long long>())
                    .ok());
    unsigned long long first_bad = 0;
    ASSERT_TRUE(ctx.CopyToHost(&first_bad, flag->as<void>(), sizeof first_bad, "flag").ok());
    EXPECT_EQ(first_bad, static_cast<unsigned long long>(first));
  }
}

TEST(CudaTrainingModelSyntheticTest, Qwen2UntiedScaledRopeMatchesCpu) {
  SKIP_WITHOUT_GPU();
  engine::ModelConfig c;
  c.architecture = "qwen2";
  c.vocab_size = 300;
  c.hidden_size = 128;
  c.intermediate_size = 200;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.max_position = 128;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000;
  c.rope_scaling = {8.0, 1.0, 8.0, 256};
  c.attention_bias = true;
  c.tie_word_embeddings = false;
  RandomModelSource source(c, 7);
  auto made = Parameters::FromSource(source, c);
  ASSERT_TRUE(made.ok()) << made.status();
  const Parameters params = std::move(*made);
  ASSERT_NE(params.Find("lm_head.weight"), nullptr);
  ASSERT_NE(params.Find("model.layers.1.self_attn.k_proj.bias"), nullptr);

  TrainingModel cpu(&params, 2, 70, 2);
  auto gpu = MakeCuda(&params, 2, 70);
  ASSERT_NE(gpu, nullptr);
  const Batch batch = RandomBatch(2, 70, c.vocab_size, 3);
  for (const auto& [label, precision] : Precisions()) {
    SCOPED_TRACE(label);
    ExpectSameAsCpu(params, batch, precision, cpu, *gpu);
  }
}

}  // namespace
}  // namespace otaro::trainer
