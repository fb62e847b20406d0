// KvSequenceGuard gives every block back however the scope ends, and a
// sequence freed early by its owner is no error for it.
#include "engine/runtime/kv_sequence_guard.h"

#include "gtest/gtest.h"

namespace otaro::engine {
namespace {

std::unique_ptr<KVCache> Cache() {
  KvCacheShape shape;
  shape.num_layers = 1;
  shape.num_kv_heads = 1;
  shape.head_dim = 4;
  shape.max_context = 64;
  KvCacheOptions options;
  options.block_size = 4;
  options.budget_bytes = 16 * options.block_size * shape.BytesPerToken();
  auto kv = KVCache::Create(shape, options);
  EXPECT_TRUE(kv.ok()) << kv.status();
  return std::move(*kv);
}

TEST(KvSequenceGuardTest, FreesWhatItHoldsOnScopeExit) {
  auto kv = Cache();
  const int64_t all = kv->free_blocks();
  auto outside = kv->Allocate(4, 4);
  ASSERT_TRUE(outside.ok());
  {
    KvSequenceGuard guard(*kv);
    ASSERT_TRUE(guard.Allocate(8, 8).ok());
    ASSERT_TRUE(guard.Allocate(0, 12).ok());
    auto added = kv->Allocate(5, 5);
    ASSERT_TRUE(added.ok());
    guard.Add(*added);
    EXPECT_EQ(kv->num_sequences(), 4);
  }
  // Only the sequence the guard never held is left.
  EXPECT_EQ(kv->num_sequences(), 1);
  EXPECT_EQ(kv->free_blocks(), all - 1);
  {
    KvSequenceGuard guard(*kv, *outside);
  }
  EXPECT_EQ(kv->num_sequences(), 0);
  EXPECT_EQ(kv->free_blocks(), all);
}

TEST(KvSequenceGuardTest, AFailedAllocationHoldsNothingAndEarlyFreesAreFine) {
  auto kv = Cache();
  KvSequenceGuard guard(*kv);
  // Past the model's context: refused, nothing held.
  EXPECT_FALSE(guard.Allocate(0, 1000).ok());
  auto seq = guard.Allocate(4, 4);
  ASSERT_TRUE(seq.ok());
  ASSERT_TRUE(kv->Free(*seq).ok());  // its owner was done with it first
  EXPECT_EQ(kv->num_sequences(), 0);
}

}  // namespace
}  // namespace otaro::engine
