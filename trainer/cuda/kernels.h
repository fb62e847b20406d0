// The CUDA kernels of the training forward and backward other than the matrix
// products (matmul.h): embedding, RMSNorm, RoPE, causal GQA attention, SwiGLU,
// cross-entropy, bias rows and column sums. Each computes what the CPU
// primitive of the same name in trainer/model/ops.h computes (same formulas,
// same float / double choices; only summation order differs), on device
// pointers, queued on `stream`. Plain C++ declarations (no CUDA headers).
//
// Conventions as in ops.h: `n` token rows (row = b * T + t), row-major
// buffers; activation gradients are overwritten or added to as stated,
// parameter gradients are always ADDED to. Gradient sums over rows use atomic
// adds, so their last bits may differ from run to run.
//
// Each returns the launch error (CheckLaunch), if any; a fault inside a kernel
// surfaces at the next synchronization.
#ifndef OTARO_TRAINER_CUDA_KERNELS_H_
#define OTARO_TRAINER_CUDA_KERNELS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "trainer/cuda/device_context.h"

namespace otaro::trainer::cuda::kernels {

// The attention kernels keep one query's, key's or value's vector in registers
// (per lane, head_dim / 32 values): head_dim may not exceed this.
inline constexpr int64_t kMaxHeadDim = 256;

// x[r, :] = embed[tokens[r], :] for r < n; tokens are int32 device ids.
absl::Status EmbeddingForward(Stream stream, const float* embed, const int32_t* tokens, int64_t n,
                              int64_t dim, float* x);
// dembed[tokens[r], :] += dx[r, :] (atomic: repeated tokens add up).
absl::Status EmbeddingBackward(Stream stream, const float* dx, const int32_t* tokens, int64_t n,
                               int64_t dim, float* dembed);

// y = x * rinv * w per row, rinv = 1 / sqrt(mean(x^2) + eps) (sum in double).
absl::Status RmsNormForward(Stream stream, const float* x, const float* w, int64_t n, int64_t dim,
                            double eps, float* y, float* rinv);
// dx += d/dx, dw += d/dw, from the saved rinv.
absl::Status RmsNormBackward(Stream stream, const float* dy, const float* x, const float* w,
                             const float* rinv, int64_t n, int64_t dim, float* dx, float* dw);

// HF rotate_half RoPE in place on x[n, heads, head_dim] with the tables
// cos / sin [seq_len, head_dim / 2] (ops::RopeTables); `inverse` rotates by
// minus the angle (the backward).
absl::Status Rope(Stream stream, float* x, int64_t n, int64_t seq_len, int64_t heads,
                  int64_t head_dim, const float* cos, const float* sin, bool inverse);

// Causal attention with grouped KV heads, as ops::AttentionForward: q
// [B*T, nh, d], k / v [B*T, nkv, d], out [B*T, nh, d], lse [B, nh, T].
struct AttentionShape {
  int64_t batch, seq_len, num_heads, num_kv_heads, head_dim;
};
absl::Status AttentionForward(Stream stream, const float* q, const float* k, const float* v,
                              const AttentionShape& s, float* out, float* lse);
// Overwrites dq, dk, dv; `delta` [B, nh, T] is scratch (dout . out per query).
absl::Status AttentionBackward(Stream stream, const float* q, const float* k, const float* v,
                               const float* out, const float* lse, const float* dout,
                               const AttentionShape& s, float* dq, float* dk, float* dv,
                               float* delta);

// a = silu(g) * u over `count` values.
absl::Status SwiGluForward(Stream stream, const float* g, const float* u, int64_t count, float* a);
// dg, du from da (du may alias da).
absl::Status SwiGluBackward(Stream stream, const float* g, const float* u, const float* da,
                            int64_t count, float* dg, float* du);

// nll[r] = -log softmax(logits[r])[targets[r]] (double), 0 for ignored rows
// (target == kIgnoreTarget). Targets must be valid (the caller checks).
absl::Status CrossEntropyForward(Stream stream, const float* logits, const int32_t* targets,
                                 int64_t n, int64_t vocab, double* nll);
// dlogits = scale * (softmax(logits) - onehot(target)) on scored rows, 0 on
// ignored ones.
absl::Status CrossEntropyBackward(Stream stream, const float* logits, const int32_t* targets,
                                  int64_t n, int64_t vocab, double scale, float* dlogits);

// y[r, :] = bias (or += bias when `accumulate`) for r < n.
absl::Status BiasRows(Stream stream, const float* bias, int64_t n, int64_t dim, bool accumulate,
                      float* y);
// sums[c] += sum over r < n of a[r, c] (the bias gradient).
absl::Status AddColumnSums(Stream stream, const float* a, int64_t n, int64_t dim, float* sums);

}  // namespace otaro::trainer::cuda::kernels

#endif  // OTARO_TRAINER_CUDA_KERNELS_H_
