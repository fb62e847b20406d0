// The primitives of the LLaMA training forward and their hand-written
// backwards (llm.c style): linear (OpenBLAS GEMM), RMSNorm, RoPE, causal GQA
// attention, SwiGLU, cross-entropy with ignored targets. Each is a plain
// function over row-major buffers so that it can be checked on its own against
// finite differences; they are templates on the scalar so that those checks
// run in double (tight tolerances) while training runs in float32.
//
// Conventions: `n` is the number of token rows (batch * seq_len, row = b * T + t).
// Backwards that produce an activation gradient either overwrite it or add to
// it as stated; parameter gradients are always ADDED to (accumulation over
// micro-batches and over the tied embedding / lm_head).
// `pool` may be null (serial).
#ifndef OTARO_TRAINER_MODEL_OPS_H_
#define OTARO_TRAINER_MODEL_OPS_H_

#include <cstdint>
#include <functional>
#include <utility>

#include "sefp/kernels/thread_pool.h"

namespace otaro::trainer::ops {

// Runs fn(begin, end) over [0, n) on the pool, or inline without one.
void ParallelFor(sefp::ThreadPool* pool, int64_t n, const std::function<void(int64_t, int64_t)>& fn);

// y[n, out] = x[n, in] W[out, in]^T (+ bias[out]); with `accumulate`, y += that.
template <typename T>
void LinearForward(const T* x, const T* w, const T* bias, int64_t n, int64_t in, int64_t out,
                   bool accumulate, T* y);

// Given dy[n, out]: dx[n, in] (= or += per `accumulate_dx`; skipped when null)
// = dy W; dw += dy^T x; dbias += column sums of dy (skipped when null).
template <typename T>
void LinearBackward(const T* dy, const T* x, const T* w, int64_t n, int64_t in, int64_t out,
                    T* dx, bool accumulate_dx, T* dw, T* dbias, sefp::ThreadPool* pool);

// y = x * rinv * w per row, rinv = 1 / sqrt(mean(x^2) + eps) (saved for backward).
template <typename T>
void RmsNormForward(const T* x, const T* w, int64_t n, int64_t dim, double eps, T* y, T* rinv,
                    sefp::ThreadPool* pool);

// dx += d/dx, dw += d/dw, from the saved rinv.
template <typename T>
void RmsNormBackward(const T* dy, const T* x, const T* w, const T* rinv, int64_t n, int64_t dim,
                     T* dx, T* dw, sefp::ThreadPool* pool);

// HF rotate_half RoPE in place on x[n, heads, head_dim]: dims i and i + d/2 form
// a pair rotated by the angle of (position, i); the position of row r is
// r % seq_len. cos/sin are tables [seq_len, head_dim / 2]. `inverse` rotates by
// minus the angle, which is the backward (the rotation is orthogonal).
template <typename T>
void Rope(T* x, int64_t n, int64_t seq_len, int64_t heads, int64_t head_dim, const T* cos,
          const T* sin, bool inverse, sefp::ThreadPool* pool);

// The cos / sin tables for positions [0, seq_len) as the engine computes them
// (engine::RopeInverseFrequencies, float32 angle = position * inv_freq).
void RopeTables(const float* inv_freq, int64_t half, int64_t seq_len, float* cos, float* sin);

// Causal attention with grouped KV heads: q [B*T, nh, d], k / v [B*T, nkv, d],
// out [B*T, nh, d]; scores scaled by 1/sqrt(d). Saves lse [B, nh, T], the log of
// each softmax's normalizer, so that the backward recomputes probabilities
// instead of keeping the [B, nh, T, T] matrix.
struct AttentionShape {
  int64_t batch, seq_len, num_heads, num_kv_heads, head_dim;
};
template <typename T>
void AttentionForward(const T* q, const T* k, const T* v, const AttentionShape& s, T* out, T* lse,
                      sefp::ThreadPool* pool);

// Overwrites dq, dk, dv from dout and the forward's q, k, v, out, lse.
template <typename T>
void AttentionBackward(const T* q, const T* k, const T* v, const T* out, const T* lse,
                       const T* dout, const AttentionShape& s, T* dq, T* dk, T* dv,
                       sefp::ThreadPool* pool);

// a = silu(g) * u elementwise over `count` values.
template <typename T>
void SwiGluForward(const T* g, const T* u, int64_t count, T* a, sefp::ThreadPool* pool);

// dg, du from da (du may alias da).
template <typename T>
void SwiGluBackward(const T* g, const T* u, const T* da, int64_t count, T* dg, T* du,
                    sefp::ThreadPool* pool);

// Sum over rows whose target is not kIgnoreTarget of -log softmax(logits)[target],
// and how many rows were scored. Targets must be valid (the caller checks).
template <typename T>
std::pair<double, int64_t> CrossEntropyForward(const T* logits, const int32_t* targets, int64_t n,
                                               int64_t vocab, sefp::ThreadPool* pool);

// dlogits = scale * (softmax(logits) - onehot(target)) on scored rows, 0 on
// ignored ones (scale is typically 1 / scored tokens).
template <typename T>
void CrossEntropyBackward(const T* logits, const int32_t* targets, int64_t n, int64_t vocab,
                          double scale, T* dlogits, sefp::ThreadPool* pool);

}  // namespace otaro::trainer::ops

#endif  // OTARO_TRAINER_MODEL_OPS_H_
