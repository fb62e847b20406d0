// A paged KV cache's bookkeeping: a pool of fixed-size blocks (block_size
// token slots each) sized from a byte budget, and per-sequence block tables.
//
// This class decides WHICH block holds which token; the K/V values themselves
// live wherever the backend keeps them (host memory for the CPU backend,
// device memory for a CUDA one), indexed by block id: slot s of a sequence is
// block table[s / block_size], offset s % block_size. Keeping the allocator
// apart from the storage lets the scheduler admit, grow and free sequences the
// same way whatever backend runs.
//
// Thread safety: every method takes an internal mutex, so one engine thread
// can mutate while stats readers (metrics, /health) call the const methods.
#ifndef OTARO_ENGINE_RUNTIME_KV_CACHE_H_
#define OTARO_ENGINE_RUNTIME_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"

namespace otaro::engine {

// What one cached token costs, for sizing the pool from a byte budget.
struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t bytes_per_element = 4;  // float32 K and V for now
  // Longest sequence the model supports (prompt + generated): max_position.
  int64_t max_context = 0;

  // K and V, every layer and kv head.
  int64_t BytesPerToken() const {
    return 2 * num_layers * num_kv_heads * head_dim * bytes_per_element;
  }
};

struct KvCacheOptions {
  int64_t block_size = 16;  // tokens per block
  int64_t budget_bytes = 256ll << 20;
};

using SequenceHandle = int64_t;

class KVCache {
 public:
  // Refuses a budget that cannot hold even one block.
  static absl::StatusOr<std::unique_ptr<KVCache>> Create(const KvCacheShape& shape,
                                                        const KvCacheOptions& options);

  const KvCacheShape& shape() const { return shape_; }
  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t BytesPerBlock() const { return shape_.BytesPerToken() * block_size_; }
  // Tokens the whole pool holds, and the most one sequence may ever hold
  // (min of the pool and the model's context).
  int64_t capacity_tokens() const { return num_blocks_ * block_size_; }
  int64_t max_sequence_tokens() const;
  int64_t BlocksFor(int64_t tokens) const { return (tokens + block_size_ - 1) / block_size_; }

  // OK iff a sequence of `max_total_tokens` (prompt + max new tokens) could
  // ever be served, even with the cache empty; else InvalidArgument saying
  // which limit it exceeds. Requests that fail this must be refused, not queued.
  absl::Status CheckFits(int64_t max_total_tokens) const;
  // Whether `tokens` more slots can be allocated right now.
  bool CanAdmit(int64_t tokens) const;

  // A new sequence with room for `initial_tokens`. `max_total_tokens` is what
  // it may grow to (checked with CheckFits). ResourceExhausted when the free
  // blocks do not suffice now (the caller waits and retries).
  absl::StatusOr<SequenceHandle> Allocate(int64_t initial_tokens, int64_t max_total_tokens);
  // Grows the sequence's room to `total_tokens` slots (no-op if it has them).
  // ResourceExhausted when the pool is out of blocks, OutOfRange past its max.
  absl::Status Extend(SequenceHandle seq, int64_t total_tokens);
  // Returns the sequence's blocks to the pool. NotFound for an unknown handle.
  absl::Status Free(SequenceHandle seq);

  // Tokens whose K/V have been written (the backend advances it), and slots
  // allocated.
  absl::StatusOr<int64_t> Length(SequenceHandle seq) const;
  absl::StatusOr<int64_t> Capacity(SequenceHandle seq) const;
  // Records that positions [0, length) now hold valid K/V (the backend calls
  // it after writing a step; a smaller value rewinds). At most the allocated slots.
  absl::Status SetLength(SequenceHandle seq, int64_t length);
  // A copy of the block table (ids of the sequence's blocks, in order).
  absl::StatusOr<std::vector<int32_t>> BlockTable(SequenceHandle seq) const;

  // Stats.
  int64_t free_blocks() const;
  int64_t used_blocks() const { return num_blocks_ - free_blocks(); }
  int64_t num_sequences() const;
  double UsageRatio() const;

 private:
  struct Sequence {
    std::vector<int32_t> blocks;
    int64_t length = 0;
    int64_t max_total = 0;
  };
  KVCache(const KvCacheShape& shape, int64_t block_size, int64_t num_blocks);
  absl::StatusOr<Sequence*> Find(SequenceHandle seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<const Sequence*> Find(SequenceHandle seq) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status GrowLocked(Sequence* s, int64_t total_tokens) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const KvCacheShape shape_;
  const int64_t block_size_;
  const int64_t num_blocks_;
  mutable Mutex mu_;  // common/mutex.h: visible to TSan, checked by clang
  std::vector<int32_t> free_ ABSL_GUARDED_BY(mu_);  // stack of free block ids
  std::unordered_map<SequenceHandle, Sequence> sequences_ ABSL_GUARDED_BY(mu_);
  SequenceHandle next_handle_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_RUNTIME_KV_CACHE_H_
