// Gradient clipping by global L2 norm (torch.nn.utils.clip_grad_norm_ semantics)
// and the check that tells the loop a gradient is unusable (NaN/Inf).
//
// The norm is summed in double over fixed blocks whose partial sums are added in
// block order, so it is the same with or without a thread pool, and with any
// thread count: a resumed or re-run job clips identically.
#ifndef OTARO_TRAINER_OPTIM_GRAD_CLIP_H_
#define OTARO_TRAINER_OPTIM_GRAD_CLIP_H_

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "sefp/kernels/thread_pool.h"

namespace otaro::trainer {

// sqrt(sum g^2); NaN when any element is NaN, +Inf when one is +-Inf (or the sum
// overflows double, which float input cannot do).
double GradNorm(absl::Span<const float> grad, sefp::ThreadPool* pool = nullptr);

// Returns the norm before clipping. When max_norm > 0 and the norm exceeds it, the
// gradient is scaled by max_norm / (norm + 1e-6) (PyTorch's factor); max_norm <= 0
// turns clipping off (the norm is still returned, for logging). A non-finite norm
// leaves the gradient untouched: check it with CheckGradNorm.
double ClipGradNorm(absl::Span<float> grad, double max_norm, sefp::ThreadPool* pool = nullptr);

// OK for a finite norm; otherwise an InvalidArgument error saying the gradient
// holds NaN or Inf, so the loop can skip the batch or stop.
absl::Status CheckGradNorm(double norm);

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_OPTIM_GRAD_CLIP_H_
