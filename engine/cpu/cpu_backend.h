// The LLaMA forward pass on the CPU (Backend, engine/runtime/backend.h).
//
// Per step, rows (new tokens of every sequence, prompt chunks and decode tokens
// alike) are ordered by precision so each linear layer is one SEFP Gemm per
// (layer, m) group, reading the weights once for all its rows; the input of a
// layer is quantized to int8 once (sefp/kernels/activations.h) and shared by
// the products that read it (q, k, v; gate, up). float32 models use the dense
// kernels (dense.h) for the same products. Everything else (embedding, RMSNorm,
// RoPE, attention over the paged cache, SwiGLU) is computed per row in a fixed
// order, by one thread per output. The SEFP kernel's arithmetic is batch
// invariant by construction (sefp/kernels/gemm.h), so a row's logits never
// depend on the rest of the batch or on the thread count.
//
// K/V storage: float32, one array of num_blocks blocks; block b holds, for each
// layer, K as [kv_head][head_dim][slot] (transposed: a block's scores are one
// vector operation per dimension) then V as [kv_head][slot][head_dim].
#ifndef OTARO_ENGINE_CPU_CPU_BACKEND_H_
#define OTARO_ENGINE_CPU_CPU_BACKEND_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model/llama_model.h"
#include "engine/cpu/step_ops.h"
#include "engine/runtime/backend.h"
#include "engine/runtime/kv_cache.h"
#include "sefp/kernels/gemm.h"
#include "sefp/kernels/thread_pool.h"

namespace otaro::engine::cpu {

struct CpuBackendOptions {
  // Threads including the caller's; 0 = std::thread::hardware_concurrency().
  int num_threads = 0;
  KvCacheOptions kv_cache;
  // SEFP kernel ISA: kAuto = the best this CPU has (isa() says which); tests
  // force the others (results are identical bit for bit).
  sefp::Isa isa = sefp::Isa::kAuto;
};

// The largest head dimension the backend runs (LLaMA-family models use 64-256).
inline constexpr int64_t kMaxHeadDim = 512;

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
  size_t WorkspaceBytes() const override {
    return workspace_bytes_.load(std::memory_order_relaxed);
  }
  // On the kernels' pool (one range per thread, the caller's the first).
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) override {
    if (n > 0) ForRows(n, fn);
  }

  int num_threads() const { return pool_->num_threads(); }
  // The SEFP kernel ISA in use (never kAuto).
  sefp::Isa isa() const { return isa_; }
  const LlamaModel& model() const { return model_; }

 private:
  // A run of consecutive rows (after ordering by precision) sharing one m.
  struct Group {
    int m;
    int64_t row0, rows;
  };
  // Per-row bookkeeping for one step.
  struct RowInfo {
    int64_t position;
    size_t seq;  // index into the step's sequences
  };

  CpuBackend(const LlamaModel* model, const CpuBackendOptions& options, sefp::Isa isa,
             std::unique_ptr<KVCache> kv);

  absl::Status Validate(const BatchStep& step,
                        std::vector<std::vector<int32_t>>* tables) const;
  // fn(r0, r1) over [0, rows), split over the pool when that is worth it.
  void ForRows(int64_t rows, const std::function<void(int64_t, int64_t)>& fn);
  // Rows [r0, r1) of in[rows, cols] into xq_ (sized by xq_.Resize first) for the
  // SEFP products that read it (float32 models need nothing).
  void QuantizeRows(const float* in, int64_t rows, int64_t cols, int64_t r0, int64_t r1);
  // out[rows, out_features] = lin(in[rows, in_features]) for every group; SEFP
  // layers read xq_ (quantized from in), float32 layers `in` itself.
  absl::Status ApplyLinear(const Linear& lin, const std::vector<Group>& groups, const float* in,
                           float* out);
  void RmsNormRows(const float* x, const std::vector<float>& weight, int64_t r0, int64_t r1,
                   float* out) const;
  // RoPE in place on one row's `heads` heads at `position`.
  void RopeRow(float* x, int64_t heads, int64_t position) const;
  // Block `block`'s storage for (layer, K or V, kv head): keys [head_dim][block
  // size] (transposed), values [block size][head_dim].
  float* KvBlock(int32_t block, int64_t layer, int kv, int64_t head);
  void Attention(int64_t layer, const std::vector<RowInfo>& rows,
                 const std::vector<std::vector<int32_t>>& tables, const float* q, float* out);

  const LlamaModel& model_;
  const sefp::Isa isa_;
  const StepOps& ops_;  // the element-wise and attention arithmetic for isa_
  std::unique_ptr<KVCache> kv_;
  std::unique_ptr<float[]> kv_storage_;
  std::unique_ptr<sefp::ThreadPool> pool_;
  std::vector<float> inv_freq_;  // RoPE frequencies, [head_dim / 2] (llama3-scaled)

  // Step scratch, reused across calls.
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, gate_, up_;
  sefp::QuantizedActivations xq_;
  int64_t xq_rows_groups_ = 0;  // the most rows x groups xq_ was sized to
  // The scratch's bytes after the last Forward (WorkspaceBytes).
  std::atomic<size_t> workspace_bytes_{0};
};

}  // namespace otaro::engine::cpu

#endif  // OTARO_ENGINE_CPU_CPU_BACKEND_H_
