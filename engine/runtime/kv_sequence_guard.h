// Frees KV sequences when a scope is left, however it is left (an early error
// return included), so a failed evaluation or generation never leaks cache
// blocks that the next request would then wait for.
#ifndef OTARO_ENGINE_RUNTIME_KV_SEQUENCE_GUARD_H_
#define OTARO_ENGINE_RUNTIME_KV_SEQUENCE_GUARD_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/kv_cache.h"

namespace otaro::engine {

class KvSequenceGuard {
 public:
  explicit KvSequenceGuard(KVCache& kv) : kv_(kv) {}
  // Holds `seq` from the start.
  KvSequenceGuard(KVCache& kv, SequenceHandle seq) : kv_(kv) { Add(seq); }
  ~KvSequenceGuard() {
    // Nothing to report from a destructor: a handle that is already gone is
    // exactly the state this guard wants.
    for (SequenceHandle seq : sequences_) kv_.Free(seq).IgnoreError();
  }
  KvSequenceGuard(const KvSequenceGuard&) = delete;
  KvSequenceGuard& operator=(const KvSequenceGuard&) = delete;

  // Frees `seq` with the others.
  void Add(SequenceHandle seq) { sequences_.push_back(seq); }

  // KVCache::Allocate, and the new sequence is held.
  absl::StatusOr<SequenceHandle> Allocate(int64_t initial_tokens, int64_t max_total_tokens) {
    absl::StatusOr<SequenceHandle> seq = kv_.Allocate(initial_tokens, max_total_tokens);
    if (seq.ok()) Add(*seq);
    return seq;
  }

 private:
  KVCache& kv_;
  std::vector<SequenceHandle> sequences_;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_RUNTIME_KV_SEQUENCE_GUARD_H_
