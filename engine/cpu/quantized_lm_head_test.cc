// The lm_head held as SEFP planes (LoadOptions::quantize_lm_head): at each
// precision the logits equal those of the same model whose float32 lm_head
// holds Q(lm_head, m) exactly, and rows stay batch-invariant across precisions.
#include <cmath>

#include "common/testing/shared_data.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/testing/test_backend.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace otaro::engine::cpu {
namespace {

const std::vector<Token> kPrompt = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315};
const std::vector<Token> kOther = {1, 385, 410, 18, 60, 7, 426};

std::unique_ptr<CpuBackend> Backend(const LlamaModel* model) {
  return engine::testing::MakeBackend(model);
}

// Logits of the last token of each prompt, all prompts in one step.
std::vector<std::vector<float>> LastLogits(CpuBackend* backend,
                                           const std::vector<std::vector<Token>>& prompts,
                                           const std::vector<int>& bits) {
  BatchStep step;
  std::vector<SequenceHandle> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto seq = backend->kv_cache().Allocate(static_cast<int64_t>(prompts[i].size()), 64);
    EXPECT_TRUE(seq.ok()) << seq.status();
    seqs.push_back(*seq);
    step.sequences.push_back({*seq, prompts[i], 0, bits[i], false});
  }
  Logits out;
  absl::Status status = backend->Forward(step, &out);
  EXPECT_TRUE(status.ok()) << status;
  std::vector<std::vector<float>> rows;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto row = out.Last(i);
    rows.emplace_back(row.begin(), row.end());
  }
  for (SequenceHandle s : seqs) EXPECT_TRUE(backend->kv_cache().Free(s).ok());
  return rows;
}

class QuantizedLmHeadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LoadOptions options;
    options.quantize_lm_head = true;
    model_ = engine::testing::LoadStories260K(options).release();
  }
  static void TearDownTestSuite() { delete model_; }
  static LlamaModel* model_;
};

LlamaModel* QuantizedLmHeadTest::model_ = nullptr;

TEST_F(QuantizedLmHeadTest, LogitsEqualAFloatHeadHoldingQ) {
  ASSERT_TRUE(model_->quantized_lm_head.has_value());
  // Bytes per token fall with the precision, lm_head included.
  EXPECT_LT(model_->LinearBytesRead(3), model_->LinearBytesRead(8) / 2);
  auto quantized = Backend(model_);
  for (int m : {8, 5, 3}) {
    // The same model, its lm_head replaced by float32 Q(lm_head, m).
    auto reference_model = engine::testing::LoadStories260K();
    const Linear& head = *model_->quantized_lm_head;
    std::vector<float> decoded(head.out_features * head.in_features);
    for (int64_t r = 0; r < head.out_features; ++r) {
      ASSERT_TRUE(head.packed
                      ->DecodeRow(r, m, model_->reconstruction, &decoded[r * head.in_features])
                      .ok());
    }
    reference_model->lm_head = decoded;  // untied: LmHead() is now Q(head, m)
    auto reference = Backend(reference_model.get());
    auto a = LastLogits(quantized.get(), {kPrompt}, {m})[0];
    auto b = LastLogits(reference.get(), {kPrompt}, {m})[0];
    float max_abs = 0, max_diff = 0;
    for (size_t j = 0; j < a.size(); ++j) {
      max_abs = std::max(max_abs, std::fabs(b[j]));
      max_diff = std::max(max_diff, std::fabs(a[j] - b[j]));
    }
    EXPECT_LT(max_diff, 1e-4f * max_abs) << "m=" << m;
  }
}

TEST_F(QuantizedLmHeadTest, RowsAreBatchInvariantAcrossPrecisions) {
  auto backend = Backend(model_);
  auto alone_a = LastLogits(backend.get(), {kPrompt}, {3})[0];
  auto alone_b = LastLogits(backend.get(), {kOther}, {8})[0];
  auto together = LastLogits(backend.get(), {kOther, kPrompt}, {8, 3});
  EXPECT_EQ(together[0], alone_b);
  EXPECT_EQ(together[1], alone_a);
}

TEST(QuantizedLmHeadOptionTest, NeedsAQuantizedModel) {
  LoadOptions options;
  options.quantize = false;
  options.quantize_lm_head = true;
  auto model = LoadModel(
      otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), options);
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace otaro::engine::cpu
