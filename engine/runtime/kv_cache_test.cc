#include "engine/runtime/kv_cache.h"

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace otaro::engine {
namespace {

KvCacheShape Shape() {
  KvCacheShape s;
  s.num_layers = 2;
  s.num_kv_heads = 2;
  s.head_dim = 8;
  s.bytes_per_element = 4;
  s.max_context = 100;
  return s;  // 2 * 2 * 2 * 8 * 4 = 256 bytes per token
}

std::unique_ptr<KVCache> Make(int64_t blocks, int64_t block_size = 4) {
  KvCacheOptions o;
  o.block_size = block_size;
  o.budget_bytes = blocks * block_size * Shape().BytesPerToken() + 100;  // remainder unused
  auto kv = KVCache::Create(Shape(), o);
  EXPECT_TRUE(kv.ok()) << kv.status();
  return std::move(*kv);
}

TEST(KvCacheTest, SizesThePoolFromTheBudget) {
  auto kv = Make(10);
  EXPECT_EQ(kv->shape().BytesPerToken(), 256);
  EXPECT_EQ(kv->num_blocks(), 10);
  EXPECT_EQ(kv->capacity_tokens(), 40);
  EXPECT_EQ(kv->max_sequence_tokens(), 40);
  EXPECT_EQ(kv->BlocksFor(0), 0);
  EXPECT_EQ(kv->BlocksFor(4), 1);
  EXPECT_EQ(kv->BlocksFor(5), 2);
  KvCacheOptions tiny;
  tiny.block_size = 4;
  tiny.budget_bytes = 1000;  // < one block of 1024 bytes
  absl::Status s = KVCache::Create(Shape(), tiny).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(s.message(), "cannot hold one block")) << s;
}

TEST(KvCacheTest, AllocateExtendFreeAndBlockTables) {
  auto kv = Make(10);
  auto a = kv->Allocate(5, 12);  // 2 blocks
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*kv->BlockTable(*a), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(*kv->Capacity(*a), 8);
  EXPECT_EQ(*kv->Length(*a), 0);
  auto b = kv->Allocate(4, 4);  // exactly one block (boundary)
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*kv->BlockTable(*b), (std::vector<int32_t>{2}));
  EXPECT_TRUE(kv->Extend(*a, 8).ok());  // still fits its 2 blocks
  EXPECT_EQ(kv->free_blocks(), 7);
  EXPECT_TRUE(kv->Extend(*a, 9).ok());  // crosses into a third block
  EXPECT_EQ(*kv->BlockTable(*a), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_EQ(kv->Extend(*a, 13).code(), absl::StatusCode::kOutOfRange);  // past its max
  EXPECT_EQ(kv->Extend(*b, 5).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(kv->SetLength(*a, 9).ok());
  EXPECT_EQ(*kv->Length(*a), 9);
  EXPECT_EQ(kv->SetLength(*a, 13).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(kv->num_sequences(), 2);
  EXPECT_NEAR(kv->UsageRatio(), 0.4, 1e-12);
  ASSERT_TRUE(kv->Free(*a).ok());
  EXPECT_EQ(kv->Free(*a).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(kv->Length(*a).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(kv->free_blocks(), 9);
  // Freed blocks are reused, in the freed sequence's order.
  auto c = kv->Allocate(12, 12);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*kv->BlockTable(*c), (std::vector<int32_t>{0, 1, 3}));
  EXPECT_NE(*c, *a);  // handles are never reused
}

TEST(KvCacheTest, RefusesWhatCanNeverFitAndReportsWhatMustWait) {
  auto kv = Make(10);  // 40 tokens; context 100
  absl::Status never = kv->CheckFits(41);
  EXPECT_EQ(never.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(never.message(), "can never fit in the KV cache")) << never;
  EXPECT_EQ(kv->Allocate(1, 41).status().code(), absl::StatusCode::kInvalidArgument);
  auto big = Make(100);  // 400 tokens, but the context is 100
  absl::Status context = big->CheckFits(101);
  EXPECT_TRUE(absl::StrContains(context.message(), "context of 100")) << context;
  EXPECT_TRUE(big->CheckFits(100).ok());
  EXPECT_EQ(kv->CheckFits(0).code(), absl::StatusCode::kInvalidArgument);

  EXPECT_TRUE(kv->CanAdmit(40));
  EXPECT_FALSE(kv->CanAdmit(41));
  auto a = kv->Allocate(30, 40);  // 8 blocks
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(kv->CanAdmit(8));
  EXPECT_FALSE(kv->CanAdmit(9));
  // Fits in principle, not now: wait (ResourceExhausted), nothing allocated.
  auto b = kv->Allocate(12, 20);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(kv->free_blocks(), 2);
  EXPECT_EQ(kv->num_sequences(), 1);
  auto c = kv->Allocate(8, 20);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(kv->Extend(*c, 9).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(*kv->Capacity(*c), 8);  // unchanged by the failed Extend
  ASSERT_TRUE(kv->Free(*a).ok());
  EXPECT_TRUE(kv->Extend(*c, 20).ok());
}

TEST(KvCacheTest, StatsReadersRunBesideTheEngineThread) {
  auto kv = Make(64, 2);
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop) {
      const double r = kv->UsageRatio();
      EXPECT_GE(r, 0.0);
      EXPECT_LE(r, 1.0);
      EXPECT_LE(kv->used_blocks(), 64);
    }
  });
  for (int round = 0; round < 2000; ++round) {
    auto s = kv->Allocate(1 + round % 7, 20);
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE(kv->Extend(*s, 20).ok());
    ASSERT_TRUE(kv->Free(*s).ok());
  }
  stop = true;
  reader.join();
  EXPECT_EQ(kv->used_blocks(), 0);
}

}  // namespace
}  // namespace otaro::engine
