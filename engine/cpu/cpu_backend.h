// The LLaMA forward pass on the CPU (Backend, engine/runtime/backend.h).
//
// Per step, rows (new tokens of every sequence) are ordered by precision so
// each linear layer is one SEFP Gemm per (layer, m) group; float32 models use
// the dense kernels (dense.h) for the same products. Everything else
// (embedding, RMSNorm, RoPE, attention over the paged cache, SwiGLU, lm_head)
// is computed per row in a fixed order, by one thread per output, so a row's
// logits never depend on the rest of the batch or on the thread count.
//
// K/V storage: float32, one array of num_blocks blocks; block b holds, for each
// layer, K then V as [kv_head][slot][head_dim] (a head's positions contiguous).
#ifndef OTARO_ENGINE_CPU_CPU_BACKEND_H_
#define OTARO_ENGINE_CPU_CPU_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/llama_model.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/kv_cache.h"
#include "sefp/kernels/gemm.h"
#include "sefp/kernels/thread_pool.h"

namespace otaro::engine::cpu {

struct CpuBackendOptions {
  // Threads including the caller's; 0 = std::thread::hardware_concurrency().
  int num_threads = 0;
  KvCacheOptions kv_cache;
  // SEFP kernel ISA (tests force scalar / AVX2; results are identical).
  sefp::Isa isa = sefp::Isa::kAuto;
  // true: a sequence's logits never depend on what shares its step -- the SEFP
  // kernel follows the rows' kind (SequenceStep::kind), so a seeded request gives
  // the same tokens under any load. false ("throughput mode"): a run of at least
  // kDecodedTilesMinRows rows at one precision uses the decoded-tiles kernel
  // whatever its kind, which makes many concurrent decodes several times
  // cheaper, but the last bits of a row's logits (and so, rarely, a sampled
  // token) can then depend on how many other requests share its precision.
  bool batch_invariant = true;
};

// From this many rows at one precision, decoded tiles beat digit lookups
// (sefp_gemv_bench, SmolLM2 shapes: about equal at 3-4 rows at E5M3, at 2-3 at E5M8).
inline constexpr int64_t kDecodedTilesMinRows = 4;

class CpuBackend : public Backend {
 public:
  // `model` must outlive the backend.
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(const LlamaModel* model,
                                                           const CpuBackendOptions& options);
  ~CpuBackend() override;

  std::string name() const override { return "cpu"; }
  const ModelConfig& config() const override { return model_.config; }
  absl::Status CheckPrecision(int m) const override;
  KVCache& kv_cache() override { return *kv_; }
  absl::Status Forward(const BatchStep& step, Logits* out) override;

  int num_threads() const { return pool_->num_threads(); }
  const LlamaModel& model() const { return model_; }

 private:
  // A run of consecutive rows (after ordering by precision and kind) sharing
  // one m and one SEFP kernel.
  struct Group {
    int m;
    sefp::GemmKernel kernel;
    int64_t row0, rows;
  };
  // Per-row bookkeeping for one step.
  struct RowInfo {
    int64_t position;
    size_t seq;  // index into the step's sequences
  };

  CpuBackend(const LlamaModel* model, const CpuBackendOptions& options,
             std::unique_ptr<KVCache> kv);

  absl::Status Validate(const BatchStep& step,
                        std::vector<std::vector<int32_t>>* tables) const;
  // out[rows, out_features] = lin(in[rows, in_features]) for every group.
  absl::Status ApplyLinear(const Linear& lin, const std::vector<Group>& groups, const float* in,
                           float* out);
  void RmsNorm(const float* x, const std::vector<float>& weight, int64_t rows, float* out) const;
  void Rope(float* x, int64_t heads, const std::vector<RowInfo>& rows) const;
  float* KvSlot(int32_t block, int64_t layer, int kv, int64_t head, int64_t slot);
  void Attention(int64_t layer, const std::vector<RowInfo>& rows,
                 const std::vector<std::vector<int32_t>>& tables, const float* q, float* out);

  const LlamaModel& model_;
  const sefp::Isa isa_;
  const bool batch_invariant_;
  std::unique_ptr<KVCache> kv_;
  std::unique_ptr<float[]> kv_storage_;
  std::unique_ptr<sefp::ThreadPool> pool_;
  std::vector<float> inv_freq_;  // RoPE frequencies, [head_dim / 2] (llama3-scaled)

  // Step scratch, reused across calls.
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, gate_, up_;
};

}  // namespace otaro::engine::cpu

#endif  // OTARO_ENGINE_CPU_CPU_BACKEND_H_
