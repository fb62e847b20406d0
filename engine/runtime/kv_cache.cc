#include "engine/runtime/kv_cache.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"

namespace otaro::engine {

absl::StatusOr<std::unique_ptr<KVCache>> KVCache::Create(const KvCacheShape& shape,
                                                         const KvCacheOptions& options) {
  if (shape.num_layers <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.bytes_per_element <= 0 || shape.max_context <= 0) {
    return absl::InvalidArgumentError("KV cache: the model shape has a non-positive dimension");
  }
  if (options.block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache: block_size must be positive, got ", options.block_size));
  }
  const int64_t block_bytes = shape.BytesPerToken() * options.block_size;
  const int64_t blocks = options.budget_bytes / block_bytes;
  if (blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache: a budget of ", options.budget_bytes, " bytes cannot hold one block of ",
        options.block_size, " tokens (", block_bytes, " bytes)"));
  }
  // Block ids are int32 in the tables (and on a device later).
  if (blocks > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError("KV cache: too many blocks for int32 block ids");
  }
  return std::unique_ptr<KVCache>(new KVCache(shape, options.block_size, blocks));
}

KVCache::KVCache(const KvCacheShape& shape, int64_t block_size, int64_t num_blocks)
    : shape_(shape), block_size_(block_size), num_blocks_(num_blocks) {
  free_.reserve(num_blocks);
  // Pop order is 0, 1, 2, ...: the first sequence gets contiguous low blocks.
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

int64_t KVCache::max_sequence_tokens() const {
  return std::min(capacity_tokens(), shape_.max_context);
}

absl::Status KVCache::CheckFits(int64_t max_total_tokens) const {
  if (max_total_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("a sequence needs at least one token, got ", max_total_tokens));
  }
  if (max_total_tokens > shape_.max_context) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt + max_tokens = ", max_total_tokens, " tokens exceeds the model's context of ",
        shape_.max_context, " tokens"));
  }
  if (max_total_tokens > capacity_tokens()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt + max_tokens = ", max_total_tokens, " tokens can never fit in the KV cache (",
        capacity_tokens(), " tokens: ", num_blocks_, " blocks of ", block_size_, ")"));
  }
  return absl::OkStatus();
}

bool KVCache::CanAdmit(int64_t tokens) const {
  MutexLock lock(&mu_);
  return BlocksFor(tokens) <= static_cast<int64_t>(free_.size());
}

absl::StatusOr<SequenceHandle> KVCache::Allocate(int64_t initial_tokens,
                                                 int64_t max_total_tokens) {
  if (absl::Status fits = CheckFits(max_total_tokens); !fits.ok()) return fits;
  if (initial_tokens < 0 || initial_tokens > max_total_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache: initial tokens ", initial_tokens,
                                                   " outside [0, ", max_total_tokens, "]"));
  }
  MutexLock lock(&mu_);
  Sequence s;
  s.max_total = max_total_tokens;
  if (absl::Status grown = GrowLocked(&s, initial_tokens); !grown.ok()) return grown;
  const SequenceHandle handle = next_handle_++;
  sequences_.emplace(handle, std::move(s));
  return handle;
}

absl::Status KVCache::GrowLocked(Sequence* s, int64_t total_tokens) {
  if (total_tokens > s->max_total) {
    return absl::OutOfRangeError(absl::StrCat("KV cache: sequence would grow to ", total_tokens,
                                              " tokens, past its maximum of ", s->max_total));
  }
  const int64_t need = BlocksFor(total_tokens) - static_cast<int64_t>(s->blocks.size());
  if (need <= 0) return absl::OkStatus();
  if (need > static_cast<int64_t>(free_.size())) {
    return absl::ResourceExhaustedError(absl::StrCat("KV cache full: need ", need,
                                                     " more blocks, ", free_.size(), " free"));
  }
  for (int64_t i = 0; i < need; ++i) {
    s->blocks.push_back(free_.back());
    free_.pop_back();
  }
  return absl::OkStatus();
}

absl::StatusOr<KVCache::Sequence*> KVCache::Find(SequenceHandle seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("KV cache: no sequence ", seq));
  }
  return &it->second;
}

absl::StatusOr<const KVCache::Sequence*> KVCache::Find(SequenceHandle seq) const {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("KV cache: no sequence ", seq));
  }
  return &it->second;
}

absl::Status KVCache::Extend(SequenceHandle seq, int64_t total_tokens) {
  MutexLock lock(&mu_);
  absl::StatusOr<Sequence*> s = Find(seq);
  if (!s.ok()) return s.status();
  return GrowLocked(*s, total_tokens);
}

absl::Status KVCache::Free(SequenceHandle seq) {
  MutexLock lock(&mu_);
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) {
    return absl::NotFoundError(absl::StrCat("KV cache: no sequence ", seq));
  }
  // Return in reverse so a freed sequence's blocks are reused in their order.
  for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b) {
    free_.push_back(*b);
  }
  sequences_.erase(it);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> KVCache::Length(SequenceHandle seq) const {
  MutexLock lock(&mu_);
  absl::StatusOr<const Sequence*> s = Find(seq);
  if (!s.ok()) return s.status();
  return (*s)->length;
}

absl::StatusOr<int64_t> KVCache::Capacity(SequenceHandle seq) const {
  MutexLock lock(&mu_);
  absl::StatusOr<const Sequence*> s = Find(seq);
  if (!s.ok()) return s.status();
  return static_cast<int64_t>((*s)->blocks.size()) * block_size_;
}

absl::Status KVCache::SetLength(SequenceHandle seq, int64_t length) {
  MutexLock lock(&mu_);
  absl::StatusOr<Sequence*> s = Find(seq);
  if (!s.ok()) return s.status();
  const int64_t cap = static_cast<int64_t>((*s)->blocks.size()) * block_size_;
  if (length < 0 || length > cap) {
    return absl::OutOfRangeError(absl::StrCat("KV cache: length ", length,
                                              " outside the sequence's ", cap, " slots"));
  }
  (*s)->length = length;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> KVCache::BlockTable(SequenceHandle seq) const {
  MutexLock lock(&mu_);
  absl::StatusOr<const Sequence*> s = Find(seq);
  if (!s.ok()) return s.status();
  return (*s)->blocks;
}

int64_t KVCache::free_blocks() const {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(free_.size());
}

int64_t KVCache::num_sequences() const {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(sequences_.size());
}

double KVCache::UsageRatio() const {
  return static_cast<double>(used_blocks()) / static_cast<double>(num_blocks_);
}

}  // namespace otaro::engine
