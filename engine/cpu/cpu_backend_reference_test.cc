// The CPU backend against someone else's implementation: float32 logits of
// stories260K from Hugging Face transformers (tests/fixtures/
// make_reference_logits.py), with SEFP disabled, and greedy generations token
// for token (transformers' and the shared helper's).
#include <cmath>
#include <fstream>
#include <sstream>

#include "common/testing/shared_data.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/reference_forward.h"
#include "engine/model/loader.h"
#include "engine/runtime/generator.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace otaro::engine::cpu {
namespace {

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

class ReferenceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LoadOptions options;
    options.quantize = false;
    auto model = LoadModel(otaro::testing::SharedPath("data/models/stories260K-hf-converted"),
                           options);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model).release();
    fixture_ = new nlohmann::json(
        ReadJson("tests/fixtures/stories260K_reference/logits.json"));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete fixture_;
  }
  std::unique_ptr<CpuBackend> MakeBackend(int threads) {
    CpuBackendOptions options;
    options.num_threads = threads;
    options.kv_cache.budget_bytes = 8 << 20;
    auto backend = CpuBackend::Create(model_, options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return std::move(*backend);
  }
  // Logits at every position of `tokens`, in one prefill step.
  static Logits AllLogits(CpuBackend* backend, const std::vector<int>& tokens) {
    KVCache& kv = backend->kv_cache();
    auto seq = kv.Allocate(tokens.size(), tokens.size());
    EXPECT_TRUE(seq.ok()) << seq.status();
    BatchStep step;
    step.sequences.push_back({*seq, std::vector<Token>(tokens.begin(), tokens.end()), 0, 8, true});
    Logits out;
    absl::Status s = backend->Forward(step, &out);
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_TRUE(kv.Free(*seq).ok());
    return out;
  }

  static LlamaModel* model_;
  static nlohmann::json* fixture_;
};
LlamaModel* ReferenceTest::model_ = nullptr;
nlohmann::json* ReferenceTest::fixture_ = nullptr;

TEST_F(ReferenceTest, Float32LogitsMatchTransformers) {
  ASSERT_FALSE(model_->quantized);
  for (int threads : {1, 2}) {
    auto backend = MakeBackend(threads);
    for (const auto& prompt : (*fixture_)["prompts"]) {
      const std::vector<int> tokens = prompt["tokens"].get<std::vector<int>>();
      const Logits got = AllLogits(backend.get(), tokens);
      ASSERT_EQ(got.num_rows[0], static_cast<int64_t>(tokens.size()));
      double max_diff = 0, max_abs = 0;
      for (size_t t = 0; t < tokens.size(); ++t) {
        const std::vector<double> want = prompt["logits"][t].get<std::vector<double>>();
        ASSERT_EQ(want.size(), 512u);
        auto row = got.Row(0, t);
        int argmax_want = 0, argmax_got = 0;
        for (size_t i = 0; i < want.size(); ++i) {
          max_diff = std::max(max_diff, std::abs(row[i] - want[i]));
          max_abs = std::max(max_abs, std::abs(want[i]));
          if (want[i] > want[argmax_want]) argmax_want = i;
          if (row[i] > row[argmax_got]) argmax_got = i;
        }
        EXPECT_EQ(argmax_got, argmax_want) << prompt["name"] << " position " << t;
      }
      std::printf("transformers vs cpu backend (%d threads), %s (%zu tokens): max |logit diff| %.3g (max |logit| %.3g)\n",
                  threads, prompt["name"].get<std::string>().c_str(), tokens.size(), max_diff,
                  max_abs);
      EXPECT_LT(max_diff, 1e-4) << prompt["name"];
    }
  }
}

TEST_F(ReferenceTest, Float64ReferenceAgreesWithTransformers) {
  // The plain reference that the per-precision tests use is itself checked here.
  const std::vector<testing::DenseLayer> layers = testing::DenseLayersOf(*model_);
  const auto& prompt = (*fixture_)["prompts"][0];
  const std::vector<int> tokens = prompt["tokens"].get<std::vector<int>>();
  const std::vector<double> ref = testing::ReferenceForward(*model_, layers, tokens);
  double max_diff = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const std::vector<double> want = prompt["logits"][t].get<std::vector<double>>();
    for (size_t i = 0; i < want.size(); ++i) {
      max_diff = std::max(max_diff, std::abs(ref[t * 512 + i] - want[i]));
    }
  }
  std::printf("transformers vs float64 reference: max |logit diff| %.3g\n", max_diff);
  EXPECT_LT(max_diff, 1e-4);
}

TEST_F(ReferenceTest, GreedyFromBosMatchesTransformersAndHelper) {
  auto backend = MakeBackend(2);
  Generator generator(backend.get(), nullptr);
  GenerationRequest request;
  request.prompt = {1};
  request.max_tokens = 60;
  request.ignore_eos = true;  // transformers ran without an EOS stop
  auto result = generator.Generate(request);
  ASSERT_TRUE(result.ok()) << result.status();
  std::vector<int> got = {1};
  got.insert(got.end(), result->tokens.begin(), result->tokens.end());
  EXPECT_EQ(got, (*fixture_)["greedy_from_bos"].get<std::vector<int>>());
  const nlohmann::json helper = ReadJson(otaro::testing::SharedPath(
      "data/models/stories260K-hf-converted/REFERENCE_greedy_helper.json"));
  const auto want = helper["greedy_tokens_incl_prompt"].get<std::vector<int>>();
  ASSERT_LE(want.size(), got.size());
  EXPECT_EQ(std::vector<int>(got.begin(), got.begin() + want.size()), want);
  EXPECT_EQ(result->finish, FinishReason::kMaxTokens);
  EXPECT_EQ(backend->kv_cache().num_sequences(), 0);  // freed
}

}  // namespace
}  // namespace otaro::engine::cpu
