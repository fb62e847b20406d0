// Batcher: seeded shuffles that are a function of (seed, epoch) only, exact
// resume from a saved position, and in-order evaluation batches.
#include "trainer/data/batcher.h"

#include <set>

#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace otaro::trainer::data {
namespace {

// TinyStories sample packed with stories260K's tokenizer, seq_len 16.
const TokenizedDataset& Data() {
  static const TokenizedDataset* data = [] {
    auto tok = engine::LoadModelTokenizer(
        testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"));
    EXPECT_TRUE(tok.ok()) << tok.status();
    DataOptions options;
    options.seq_len = 16;
    options.text_tail = TailPolicy::kPad;
    auto loaded = LoadDataset(
        testing::SharedPath("data/corpora/tinystories-sample/tinystories_sample.txt"), **tok,
        options);
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return new TokenizedDataset(loaded->data);
  }();
  return *data;
}

std::vector<int32_t> RowInputs(const TokenizedDataset& data, int64_t row) {
  std::vector<int32_t> inputs(data.seq_len()), targets(data.seq_len());
  data.FillRow(row, inputs.data(), targets.data());
  return inputs;
}

void ExpectSameBatch(const Batch& a, const Batch& b) {
  EXPECT_EQ(a.batch_size, b.batch_size);
  EXPECT_EQ(a.seq_len, b.seq_len);
  EXPECT_EQ(a.inputs, b.inputs);
  EXPECT_EQ(a.targets, b.targets);
}

TEST(BatcherTest, EachEpochIsAPermutationCutIntoBatches) {
  const TokenizedDataset& data = Data();
  ASSERT_GT(data.rows(), 30);
  constexpr int64_t B = 4;
  auto batcher = Batcher::Create(data, B, /*seed=*/7);
  ASSERT_TRUE(batcher.ok()) << batcher.status();
  EXPECT_EQ(batcher->batches_per_epoch(), data.rows() / B);
  EXPECT_EQ(batcher->seq_len(), 16);

  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    const std::vector<int64_t> order = batcher->EpochOrder(epoch);
    EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(),
              static_cast<size_t>(data.rows()));
    for (int64_t i = 0; i < batcher->batches_per_epoch(); ++i) {
      EXPECT_EQ(batcher->position(), (BatchPosition{epoch, i}));
      const Batch batch = batcher->Next();
      ASSERT_EQ(batch.batch_size, B);
      ASSERT_EQ(batch.inputs.size(), static_cast<size_t>(B * 16));
      for (int64_t b = 0; b < B; ++b) {
        EXPECT_EQ(std::vector<int32_t>(batch.inputs.begin() + b * 16,
                                       batch.inputs.begin() + (b + 1) * 16),
                  RowInputs(data, order[i * B + b]));
      }
    }
  }
  EXPECT_EQ(batcher->epoch(), 2);
  EXPECT_NE(batcher->EpochOrder(0), batcher->EpochOrder(1));
}

TEST(BatcherTest, SameSeedSameBatchesOtherSeedOtherOrder) {
  auto a = Batcher::Create(Data(), 3, 42);
  auto b = Batcher::Create(Data(), 3, 42);
  auto c = Batcher::Create(Data(), 3, 43);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  const int64_t n = 2 * a->batches_per_epoch() + 5;
  for (int64_t i = 0; i < n; ++i) ExpectSameBatch(a->Next(), b->Next());
  EXPECT_NE(a->EpochOrder(0), c->EpochOrder(0));
  // The order does not depend on what was asked for before.
  auto fresh = Batcher::Create(Data(), 3, 42);
  EXPECT_EQ(fresh->EpochOrder(5), a->EpochOrder(5));
}

TEST(BatcherTest, ResumingFromASavedPositionGivesTheSameNextBatches) {
  auto original = Batcher::Create(Data(), 4, 99);
  ASSERT_TRUE(original.ok());
  const int64_t steps = original->batches_per_epoch() + 3;  // into the second epoch
  for (int64_t i = 0; i < steps; ++i) original->Next();
  const BatchPosition saved = original->position();
  EXPECT_EQ(saved, (BatchPosition{1, 3}));

  auto resumed = Batcher::Create(Data(), 4, 99);
  ASSERT_TRUE(resumed.ok());
  ASSERT_TRUE(resumed->Seek(saved).ok());
  for (int64_t i = 0; i < original->batches_per_epoch() + 2; ++i) {
    ExpectSameBatch(original->Next(), resumed->Next());
    EXPECT_EQ(original->position(), resumed->position());
  }
}

TEST(BatcherTest, BadArgumentsAreErrors) {
  EXPECT_FALSE(Batcher::Create(Data(), 0, 1).ok());
  auto too_big = Batcher::Create(Data(), Data().rows() + 1, 1);
  ASSERT_FALSE(too_big.ok());
  EXPECT_NE(too_big.status().message().find("fewer than one batch"), std::string::npos);
  auto batcher = Batcher::Create(Data(), 4, 1);
  EXPECT_EQ(batcher->Seek({0, batcher->batches_per_epoch()}).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_FALSE(batcher->Seek({-1, 0}).ok());
  EXPECT_TRUE(batcher->Seek({3, batcher->batches_per_epoch() - 1}).ok());
}

TEST(EvalBatchTest, RowsInOrderWithPaddingRowsAtTheEnd) {
  const TokenizedDataset& data = Data();
  constexpr int64_t B = 5;
  const int64_t count = EvalBatchCount(data, B);
  EXPECT_EQ(count, (data.rows() + B - 1) / B);
  int64_t scored = 0;
  for (int64_t i = 0; i < count; ++i) {
    const Batch batch = EvalBatch(data, B, i);
    ASSERT_EQ(batch.batch_size, B);
    scored += batch.ScoredTokens();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t row = i * B + b;
      const std::vector<int32_t> inputs(batch.inputs.begin() + b * 16,
                                        batch.inputs.begin() + (b + 1) * 16);
      if (row < data.rows()) {
        EXPECT_EQ(inputs, RowInputs(data, row));
      } else {
        for (int64_t t = 0; t < 16; ++t) EXPECT_EQ(batch.targets[b * 16 + t], kIgnoreTarget);
      }
    }
  }
  // Every token's prediction is evaluated once (the tail row is padded).
  int64_t expected = 0;
  for (int64_t r = 0; r < data.rows(); ++r) expected += data.RowTokens(r).size() - 1;
  EXPECT_EQ(scored, expected);
}

}  // namespace
}  // namespace otaro::trainer::data
