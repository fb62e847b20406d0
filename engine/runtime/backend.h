// The interface between the scheduler / generator and whatever computes the
// model: the CPU backend now, a CUDA backend next. A backend owns the model's
// weights in its own form and the K/V storage behind a KVCache (the cache's
// block tables are device independent; see kv_cache.h).
//
// One call = one step of continuous batching: every sequence in the batch
// contributes its new tokens (a prefill chunk, or one decode token) at its own
// precision; the backend groups rows by precision for the linear layers.
// Backends guarantee batch invariance: a sequence's logits depend only on its
// own tokens, its cached K/V and its precisions, never on what else is in the
// step, so a seeded request gives the same tokens under any load.
#ifndef OTARO_ENGINE_RUNTIME_BACKEND_H_
#define OTARO_ENGINE_RUNTIME_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/model/model_config.h"
#include "engine/runtime/kv_cache.h"

namespace otaro::engine {

using Token = int32_t;

// One sequence's part of a step.
struct SequenceStep {
  SequenceHandle seq = 0;  // its KV cache sequence (block table)
  // The new tokens; their positions are start_position .. start_position + n - 1.
  std::vector<Token> tokens;
  // Must equal the tokens already cached (KVCache::Length) or be less (the
  // cache is rewound: positions from here on are overwritten). The slots up to
  // start_position + n must be allocated (KVCache::Extend) beforehand.
  int64_t start_position = 0;
  // SEFP mantissa bits for this step's linear layers (2..8). Ignored by
  // unquantized (float32) models, which compute the same function for every m.
  int precision = 8;
  // Logits for every new token (perplexity) instead of only the last.
  bool all_logits = false;
};

struct BatchStep {
  std::vector<SequenceStep> sequences;
};

// Logits of a step: rows for sequence i are [first_row[i], first_row[i] + num_rows[i]).
struct Logits {
  int64_t vocab_size = 0;
  std::vector<float> values;  // [rows, vocab_size]
  std::vector<int64_t> first_row;
  std::vector<int64_t> num_rows;

  // Row r of sequence i (r = num_rows[i] - 1 is its last token).
  absl::Span<const float> Row(size_t i, int64_t r) const {
    return absl::Span<const float>(values).subspan((first_row[i] + r) * vocab_size, vocab_size);
  }
  absl::Span<const float> Last(size_t i) const { return Row(i, num_rows[i] - 1); }
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;
  // OK iff the backend can run precision m (2..8, and resident for SEFP models).
  virtual absl::Status CheckPrecision(int m) const = 0;
  // The block allocator for this backend's K/V storage.
  virtual KVCache& kv_cache() = 0;

  // Runs one step: writes the new tokens' K/V into their sequences' blocks,
  // advances each sequence's cached length to start_position + n, and fills
  // *out (resized as needed). Not reentrant: one Forward at a time per backend.
  // Errors (bad precision, token id, unallocated slots, a sequence listed
  // twice) are reported before any state changes.
  virtual absl::Status Forward(const BatchStep& step, Logits* out) = 0;

  // Bytes of the backend's step scratch (activations and their quantized
  // copies; not the KV storage, not the caller's Logits) as of the last
  // completed Forward, 0 before the first. The buffers grow to the largest step
  // and are kept. Thread-safe: may be read while a step runs.
  virtual size_t WorkspaceBytes() const = 0;

  // Calls fn(begin, end) on disjoint ranges covering [0, n) and returns when
  // all are done: the caller's host work between steps (the scheduler samples
  // a step's rows with it) on the CPU threads the backend keeps, which are
  // idle then. Forward's rule applies: never while Forward or another
  // ParallelFor runs on this backend. Here: fn(0, n) on the calling thread.
  virtual void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    if (n > 0) fn(0, n);
  }
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_RUNTIME_BACKEND_H_
