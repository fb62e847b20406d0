// Optimizers for the tuning loop, over one flat float32 parameter vector (the
// master weights W) and its gradient:
//   sgd    the paper's optimizer (lr 1e-5), optional momentum and L2 weight decay,
//          with PyTorch's torch.optim.SGD semantics (dampening 0, no Nesterov):
//            g += wd * p;  buf = momentum * buf + g (when momentum > 0);  p -= lr * buf
//   adamw  torch.optim.AdamW semantics: decoupled decay, bias-corrected moments:
//            p *= 1 - lr * wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//            p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// With LAA the accumulated gradient is fed as one step (OTARO.md, step 5).
// State (moment buffers and the step count) is exported as named float vectors
// plus integer counters, so the loop can write it into a safetensors/JSON
// checkpoint and a resumed run continues bit for bit.
//
// The per-element updates are independent, so an optional thread pool splits them
// into contiguous ranges; results do not depend on the thread count.
#ifndef OTARO_TRAINER_OPTIM_OPTIMIZER_H_
#define OTARO_TRAINER_OPTIM_OPTIMIZER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "sefp/kernels/thread_pool.h"

namespace otaro::trainer {

enum class OptimizerKind { kSgd, kAdamW };

// "sgd" | "adamw" (any case).
absl::StatusOr<OptimizerKind> ParseOptimizerKind(absl::string_view text);
absl::string_view OptimizerKindName(OptimizerKind kind);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kSgd;
  // SGD: L2 penalty added to the gradient; AdamW: decoupled decay. >= 0.
  double weight_decay = 0.0;
  // SGD only, in [0, 1).
  double momentum = 0.0;
  // AdamW only: betas in [0, 1), eps > 0.
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

absl::Status ValidateOptimizerOptions(const OptimizerOptions& options);

// A view of an optimizer's state. Export: the spans point into the optimizer and
// stay valid until its next Step/ImportState. Import: the optimizer copies them.
struct OptimizerState {
  struct Buffer {
    std::string name;  // e.g. "exp_avg" (PyTorch's names)
    absl::Span<const float> values;  // num_params floats
  };
  std::vector<Buffer> buffers;
  std::map<std::string, int64_t> counters;  // "step": updates applied so far
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual absl::string_view name() const = 0;
  int64_t num_params() const { return num_params_; }
  int64_t steps() const { return steps_; }

  // One update of `params` with `grad` (both num_params long) at learning rate lr
  // (finite, >= 0). Refuses mismatched sizes and bad lr before touching anything.
  absl::Status Step(absl::Span<float> params, absl::Span<const float> grad, double lr);

  OptimizerState ExportState() const;
  // Needs exactly this optimizer's buffer names, each num_params long, and a
  // "step" counter >= 0; on error nothing changes.
  absl::Status ImportState(const OptimizerState& state);

 protected:
  Optimizer(int64_t num_params, sefp::ThreadPool* pool)
      : num_params_(num_params), pool_(pool) {}
  // Applies one update to params[begin, end); `step` is 1-based (this update's t).
  // Called concurrently on disjoint ranges.
  virtual void UpdateRange(int64_t begin, int64_t end, float* params, const float* grad,
                           double lr, int64_t step) = 0;
  // A zero-filled num_params state buffer, exported and imported under `name`. The
  // reference stays valid for the optimizer's lifetime.
  std::vector<float>& AddBuffer(const std::string& name);

 private:
  const int64_t num_params_;
  sefp::ThreadPool* const pool_;
  int64_t steps_ = 0;
  std::map<std::string, std::vector<float>> buffers_;  // node-based: stable references
};

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerOptions& options, int64_t num_params, sefp::ThreadPool* pool = nullptr);
  absl::string_view name() const override { return "sgd"; }

 private:
  void UpdateRange(int64_t begin, int64_t end, float* params, const float* grad, double lr,
                   int64_t step) override;

  const float weight_decay_;
  const float momentum_;
  std::vector<float>* momentum_buffer_ = nullptr;  // only when momentum > 0
};

class AdamW final : public Optimizer {
 public:
  AdamW(const OptimizerOptions& options, int64_t num_params, sefp::ThreadPool* pool = nullptr);
  absl::string_view name() const override { return "adamw"; }

 private:
  void UpdateRange(int64_t begin, int64_t end, float* params, const float* grad, double lr,
                   int64_t step) override;

  const OptimizerOptions options_;
  std::vector<float>& exp_avg_;
  std::vector<float>& exp_avg_sq_;
};

// Validates the options and builds the optimizer they name. `pool` (may be null)
// must outlive the optimizer.
absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options,
                                                           int64_t num_params,
                                                           sefp::ThreadPool* pool = nullptr);

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_OPTIM_OPTIMIZER_H_
