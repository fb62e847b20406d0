// The lm_head held as SEFP planes (LoadOptions::lm_head): read at a fixed
// precision (the default E5M8) or at each request's; the tied embedding is then
// decoded from the same planes and no float32 table is kept; rows stay
// batch-invariant across precisions.
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

// stories260K (tied embeddings) with its lm_head read at each request's precision.
class QuantizedLmHeadTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    LoadOptions options;
    options.lm_head.kind = LmHeadPrecision::Kind::kRequest;
    model_ = engine::testing::LoadStories260K(options).release();
  }
  static void TearDownTestSuite() { delete model_; }
  static LlamaModel* model_;
};

LlamaModel* QuantizedLmHeadTest::model_ = nullptr;

// The same model with a float32 embedding decoded at E5M8 and a float32 lm_head
// holding Q(lm_head, m): what the SEFP model computes, up to the int8 rounding
// of the lm_head's input.
std::unique_ptr<LlamaModel> FloatHeadHolding(const LlamaModel& quantized, int m) {
  LoadOptions options;
  options.lm_head.kind = LmHeadPrecision::Kind::kFloat32;
  auto model = engine::testing::LoadStories260K(options);
  const Linear& head = *quantized.quantized_lm_head;
  auto decode = [&](int bits) {
    std::vector<float> table(head.out_features * head.in_features);
    for (int64_t r = 0; r < head.out_features; ++r) {
      EXPECT_TRUE(head.packed->DecodeRow(r, bits, quantized.reconstruction,
                                         &table[r * head.in_features]).ok());
    }
    return table;
  };
  model->embed = decode(quantized.resident_max_bits);
  model->lm_head = decode(m);  // untied now: LmHead() is Q(head, m)
  return model;
}

float MaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float d = 0;
  for (size_t j = 0; j < a.size(); ++j) d = std::max(d, std::fabs(a[j] - b[j]));
  return d;
}

TEST_F(QuantizedLmHeadTest, NoFloatTableStaysAndTheEmbeddingComesFromThePlanes) {
  ASSERT_TRUE(model_->config.tie_word_embeddings);
  ASSERT_TRUE(model_->quantized_lm_head.has_value());
  EXPECT_TRUE(model_->embed.empty());
  EXPECT_TRUE(model_->lm_head.empty());
  EXPECT_TRUE(model_->LmHead().empty());
  const int64_t h = model_->config.hidden_size;
  std::vector<float> row(h), want(h);
  for (int32_t token : {0, 1, 403, 511}) {
    ASSERT_TRUE(model_->Embed(token, row.data()).ok());
    ASSERT_TRUE(model_->quantized_lm_head->packed
                    ->DecodeRow(token, 8, model_->reconstruction, want.data())
                    .ok());
    EXPECT_EQ(row, want) << "token " << token;
  }
  EXPECT_FALSE(model_->Embed(512, row.data()).ok());
  // Bytes per token fall with the precision, lm_head included.
  EXPECT_LT(model_->LinearBytesRead(3), model_->LinearBytesRead(8) / 2);
}

TEST_F(QuantizedLmHeadTest, LogitsFollowTheRequestsPrecision) {
  auto quantized = Backend(model_);
  for (int m : {8, 5, 3}) {
    const auto got = LastLogits(quantized.get(), {kPrompt}, {m})[0];
    auto same_model = FloatHeadHolding(*model_, m);
    // The far precision's head: a backend that ignored m would be as close to it.
    auto far_model = FloatHeadHolding(*model_, m == 8 ? 3 : 8);
    const auto same = LastLogits(Backend(same_model.get()).get(), {kPrompt}, {m})[0];
    const auto far = LastLogits(Backend(far_model.get()).get(), {kPrompt}, {m})[0];
    float max_abs = 0;
    for (float v : same) max_abs = std::max(max_abs, std::fabs(v));
    const float d_same = MaxDiff(got, same), d_far = MaxDiff(got, far);
    std::printf("E5M%d lm_head: max |diff| vs float head holding Q(head, m) %.3g, vs the far "
                "precision's head %.3g (max |logit| %.3g)\n", m, d_same, d_far, max_abs);
    EXPECT_LT(d_same, 5e-3f * max_abs) << "m=" << m;
    EXPECT_LT(3 * d_same, d_far) << "m=" << m;
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

// The default: E5M8 whatever the request's precision.
TEST(FixedLmHeadTest, ReadAtItsOwnPrecisionForEveryRequest) {
  auto fixed = engine::testing::LoadStories260K();
  ASSERT_EQ(fixed->lm_head_precision.Name(), "E5M8");
  EXPECT_EQ(fixed->LmHeadBits(3), 8);
  LoadOptions options;
  options.lm_head.kind = LmHeadPrecision::Kind::kRequest;
  auto per_request = engine::testing::LoadStories260K(options);
  auto a = Backend(fixed.get()), b = Backend(per_request.get());
  // At m = 8 the two read the same planes the same way; at m = 3 they differ.
  EXPECT_EQ(LastLogits(a.get(), {kPrompt}, {8})[0], LastLogits(b.get(), {kPrompt}, {8})[0]);
  EXPECT_NE(LastLogits(a.get(), {kPrompt}, {3})[0], LastLogits(b.get(), {kPrompt}, {3})[0]);
}

TEST(LmHeadOptionTest, ParsesAndRefusesWhatCannotBeHeld) {
  for (const char* text : {"E5M8", "5", "e5m3", "request", "float32"}) {
    auto p = LmHeadPrecision::Parse(text);
    ASSERT_TRUE(p.ok()) << text;
    EXPECT_TRUE(LmHeadPrecision::Parse(p->Name()).ok());
  }
  EXPECT_EQ(LmHeadPrecision::Parse("E5M9").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LmHeadPrecision::Parse("bf16").status().code(), absl::StatusCode::kInvalidArgument);
  // A fixed-precision lm_head keeps its own planes when the linear layers keep
  // fewer; a per-request one keeps theirs.
  LoadOptions options;
  options.resident_max_bits = 5;
  auto model = LoadModel(
      otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->quantized_lm_head->packed->resident_max_bits(), 8);
  EXPECT_EQ((*model)->layers[0].q.packed->resident_max_bits(), 5);
  options.lm_head.kind = LmHeadPrecision::Kind::kRequest;
  model = LoadModel(
      otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->quantized_lm_head->packed->resident_max_bits(), 5);
  // A float32 reference model keeps a float32 lm_head whatever was asked.
  options = LoadOptions();
  options.quantize = false;
  auto dense = LoadModel(
      otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), options);
  ASSERT_TRUE(dense.ok());
  EXPECT_FALSE((*dense)->quantized_lm_head.has_value());
  EXPECT_FALSE((*dense)->embed.empty());
}

}  // namespace
}  // namespace otaro::engine::cpu
