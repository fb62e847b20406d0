#include "trainer/cuda/kernels.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "trainer/batch.h"
#include "trainer/cuda/cuda_status.h"

namespace otaro::trainer::cuda::kernels {
namespace {

constexpr int kBlock = 256;       // threads of the elementwise and per-row kernels
constexpr int kWarps = 4;         // warps per block of the attention kernels
constexpr int kChunks = static_cast<int>(kMaxHeadDim / 32);  // head dims per lane
constexpr int64_t kColumnRows = 64;  // rows summed per thread before an atomic add (at least)
constexpr unsigned kFullMask = 0xffffffffu;

// Blocks for a grid-stride loop over `count` items.
unsigned GridFor(int64_t count) {
  return static_cast<unsigned>(std::min<int64_t>((count + kBlock - 1) / kBlock, int64_t{1} << 20));
}

__device__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ int64_t GridThreads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

template <typename T>
__device__ T WarpSum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}
__device__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

// Sum / max over the block (every thread of the block must call; all get the
// result). `shared` holds one value per warp.
template <typename T>
__device__ T BlockSum(T v, T* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpSum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? shared[lane] : T(0);
    v = WarpSum(v);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const T result = shared[0];
  __syncthreads();  // shared may be reused right away
  return result;
}
__device__ float BlockMax(float v, float* shared) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpMax(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? shared[lane] : -INFINITY;
    v = WarpMax(v);
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const float result = shared[0];
  __syncthreads();
  return result;
}

// --- embedding ---------------------------------------------------------------

__global__ void EmbeddingForwardKernel(const float* embed, const int32_t* tokens, int64_t n,
                                       int64_t dim, float* x) {
  for (int64_t i = GlobalThread(); i < n * dim; i += GridThreads()) {
    const int64_t r = i / dim;
    x[i] = embed[static_cast<int64_t>(tokens[r]) * dim + i % dim];
  }
}

__global__ void EmbeddingBackwardKernel(const float* dx, const int32_t* tokens, int64_t n,
                                        int64_t dim, float* dembed) {
  for (int64_t i = GlobalThread(); i < n * dim; i += GridThreads()) {
    const int64_t r = i / dim;
    atomicAdd(dembed + static_cast<int64_t>(tokens[r]) * dim + i % dim, dx[i]);
  }
}

// --- RMSNorm -------------------------------------------------------------------

// One block per row.
__global__ void RmsNormForwardKernel(const float* x, const float* w, int64_t dim, double eps,
                                     float* y, float* rinv) {
  __shared__ double shared[32];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * dim;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += static_cast<double>(xr[i]) * xr[i];
  ss = BlockSum(ss, shared);
  const float scale = static_cast<float>(1.0 / sqrt(ss / dim + eps));
  if (threadIdx.x == 0) rinv[r] = scale;
  float* yr = y + r * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w[i] * (xr[i] * scale);
}

// dx, one block per row. y_i = w_i x_i s, s = (mean(x^2) + eps)^(-1/2),
// ds/dx_j = -s^3 x_j / dim.
__global__ void RmsNormBackwardRowsKernel(const float* dy, const float* x, const float* w,
                                          const float* rinv, int64_t dim, float* dx) {
  __shared__ double shared[32];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * dim;
  const float* dyr = dy + r * dim;
  const float s = rinv[r];
  double dot = 0;  // sum_i dy_i w_i x_i
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    dot += static_cast<double>(dyr[i]) * w[i] * xr[i];
  }
  dot = BlockSum(dot, shared);
  const float c = static_cast<float>(dot * s * s * s / dim);
  float* dxr = dx + r * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dxr[i] += dyr[i] * w[i] * s - c * xr[i];
}

// dw[i] += sum_r dy[r, i] x[r, i] rinv[r]: blockIdx.y picks rows_per_block rows.
__global__ void RmsNormBackwardWeightKernel(const float* dy, const float* x, const float* rinv,
                                            int64_t n, int64_t dim, int64_t rows_per_block,
                                            float* dw) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= dim) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < n ? r0 + rows_per_block : n;
  float sum = 0;
  for (int64_t r = r0; r < r1; ++r) sum += dy[r * dim + i] * x[r * dim + i] * rinv[r];
  atomicAdd(dw + i, sum);
}

// --- RoPE ----------------------------------------------------------------------

__global__ void RopeKernel(float* x, int64_t n, int64_t seq_len, int64_t heads, int64_t head_dim,
                           const float* cos, const float* sin, bool inverse) {
  const int64_t half = head_dim / 2;
  for (int64_t idx = GlobalThread(); idx < n * heads * half; idx += GridThreads()) {
    const int64_t i = idx % half;
    const int64_t rh = idx / half;  // r * heads + h
    const int64_t r = rh / heads;
    const int64_t p = r % seq_len;
    float* v = x + rh * head_dim;
    const float a = v[i], b = v[i + half];
    const float cs = cos[p * half + i];
    const float s = inverse ? -sin[p * half + i] : sin[p * half + i];
    v[i] = a * cs - b * s;
    v[i + half] = b * cs + a * s;
  }
}

// --- attention -----------------------------------------------------------------
// One warp per query (forward, dq) or per key (dk, dv). Scores are formed 32 at
// a time, one per lane, then the lanes switch to head dimensions (lane + 32 c)
// to accumulate the weighted rows; the tile of weights goes through shared
// memory. The forward keeps a running max and rescales (online softmax), so no
// [T] buffer is needed and the sequence length is not limited.

__device__ float DotShared(const float* shared_vector, const float* row, int64_t d) {
  float s = 0;
  for (int64_t i = 0; i < d; ++i) s += shared_vector[i] * row[i];
  return s;
}

__global__ void AttentionForwardKernel(const float* q, const float* k, const float* v,
                                       AttentionShape s, float scale, float* out, float* lse) {
  __shared__ float q_s[kWarps][kMaxHeadDim];
  __shared__ float p_s[kWarps][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t T = s.seq_len, nh = s.num_heads, nkv = s.num_kv_heads, d = s.head_dim;
  const int64_t query = static_cast<int64_t>(blockIdx.x) * kWarps + warp;  // (b, h, t)
  if (query >= s.batch * nh * T) return;  // the whole warp leaves together
  const int64_t t = query % T, h = (query / T) % nh, b = query / (T * nh);
  const int64_t kvh = h / (nh / nkv);
  const int64_t q_row = ((b * T + t) * nh + h) * d;
  for (int64_t i = lane; i < d; i += 32) q_s[warp][i] = q[q_row + i];
  __syncwarp();

  float acc[kChunks];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) acc[c] = 0;
  float mx = -INFINITY, sum = 0;
  for (int64_t j0 = 0; j0 <= t; j0 += 32) {
    const int64_t j = j0 + lane;
    float score = -INFINITY;
    if (j <= t) score = DotShared(q_s[warp], k + ((b * T + j) * nkv + kvh) * d, d) * scale;
    const float new_mx = fmaxf(mx, WarpMax(score));  // finite: lane 0 has j0 <= t
    const float factor = expf(mx - new_mx);          // 0 on the first tile
    const float p = j <= t ? expf(score - new_mx) : 0.0f;
    sum = sum * factor + WarpSum(p);
    p_s[warp][lane] = p;
    __syncwarp();
    const int64_t count = t - j0 + 1 < 32 ? t - j0 + 1 : 32;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t dd = lane + 32 * c;
      if (dd < d) {
        float a = acc[c] * factor;
        for (int64_t jj = 0; jj < count; ++jj) {
          a += p_s[warp][jj] * v[((b * T + j0 + jj) * nkv + kvh) * d + dd];
        }
        acc[c] = a;
      }
    }
    mx = new_mx;
    __syncwarp();
  }
  const float inv = 1.0f / sum;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t dd = lane + 32 * c;
    if (dd < d) out[q_row + dd] = acc[c] * inv;
  }
  if (lane == 0) lse[(b * nh + h) * T + t] = mx + logf(sum);
}

// dq and delta = dout . out per query. p = exp(q.k scale - lse) recomputed,
// ds = p (dout.v - delta) scale, dq = sum_j ds_j k_j.
__global__ void AttentionBackwardQueryKernel(const float* q, const float* k, const float* v,
                                             const float* out, const float* lse,
                                             const float* dout, AttentionShape s, float scale,
                                             float* dq, float* delta) {
  __shared__ float q_s[kWarps][kMaxHeadDim];
  __shared__ float do_s[kWarps][kMaxHeadDim];
  __shared__ float ds_s[kWarps][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t T = s.seq_len, nh = s.num_heads, nkv = s.num_kv_heads, d = s.head_dim;
  const int64_t query = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (query >= s.batch * nh * T) return;
  const int64_t t = query % T, h = (query / T) % nh, b = query / (T * nh);
  const int64_t kvh = h / (nh / nkv);
  const int64_t q_row = ((b * T + t) * nh + h) * d;
  float partial = 0;
  for (int64_t i = lane; i < d; i += 32) {
    q_s[warp][i] = q[q_row + i];
    do_s[warp][i] = dout[q_row + i];
    partial += dout[q_row + i] * out[q_row + i];
  }
  const float del = WarpSum(partial);
  const float l = lse[(b * nh + h) * T + t];
  if (lane == 0) delta[(b * nh + h) * T + t] = del;
  __syncwarp();

  float acc[kChunks];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) acc[c] = 0;
  for (int64_t j0 = 0; j0 <= t; j0 += 32) {
    const int64_t j = j0 + lane;
    float ds = 0;
    if (j <= t) {
      const int64_t kv_row = ((b * T + j) * nkv + kvh) * d;
      const float p = expf(DotShared(q_s[warp], k + kv_row, d) * scale - l);
      ds = p * (DotShared(do_s[warp], v + kv_row, d) - del) * scale;
    }
    ds_s[warp][lane] = ds;
    __syncwarp();
    const int64_t count = t - j0 + 1 < 32 ? t - j0 + 1 : 32;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int64_t dd = lane + 32 * c;
      if (dd < d) {
        float a = acc[c];
        for (int64_t jj = 0; jj < count; ++jj) {
          a += ds_s[warp][jj] * k[((b * T + j0 + jj) * nkv + kvh) * d + dd];
        }
        acc[c] = a;
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t dd = lane + 32 * c;
    if (dd < d) dq[q_row + dd] = acc[c];
  }
}

// dk, dv per key j of one kv head: sums over the query heads of its group and
// the queries t >= j. Owning the key keeps the writes race-free.
__global__ void AttentionBackwardKeyKernel(const float* q, const float* k, const float* v,
                                           const float* lse, const float* dout,
                                           const float* delta, AttentionShape s, float scale,
                                           float* dk, float* dv) {
  __shared__ float k_s[kWarps][kMaxHeadDim];
  __shared__ float v_s[kWarps][kMaxHeadDim];
  __shared__ float p_s[kWarps][32];
  __shared__ float ds_s[kWarps][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t T = s.seq_len, nh = s.num_heads, nkv = s.num_kv_heads, d = s.head_dim;
  const int64_t group = nh / nkv;
  const int64_t key = static_cast<int64_t>(blockIdx.x) * kWarps + warp;  // (b, kvh, j)
  if (key >= s.batch * nkv * T) return;
  const int64_t j = key % T, kvh = (key / T) % nkv, b = key / (T * nkv);
  const int64_t kv_row = ((b * T + j) * nkv + kvh) * d;
  for (int64_t i = lane; i < d; i += 32) {
    k_s[warp][i] = k[kv_row + i];
    v_s[warp][i] = v[kv_row + i];
  }
  __syncwarp();

  float acc_k[kChunks], acc_v[kChunks];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) acc_k[c] = acc_v[c] = 0;
  for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
    for (int64_t t0 = j; t0 < T; t0 += 32) {
      const int64_t t = t0 + lane;
      float p = 0, ds = 0;
      if (t < T) {
        const int64_t q_row = ((b * T + t) * nh + h) * d;
        const int64_t at = (b * nh + h) * T + t;
        p = expf(DotShared(k_s[warp], q + q_row, d) * scale - lse[at]);
        ds = p * (DotShared(v_s[warp], dout + q_row, d) - delta[at]) * scale;
      }
      p_s[warp][lane] = p;
      ds_s[warp][lane] = ds;
      __syncwarp();
      const int64_t count = T - t0 < 32 ? T - t0 : 32;
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const int64_t dd = lane + 32 * c;
        if (dd < d) {
          float ak = acc_k[c], av = acc_v[c];
          for (int64_t tt = 0; tt < count; ++tt) {
            const int64_t row = ((b * T + t0 + tt) * nh + h) * d + dd;
            ak += ds_s[warp][tt] * q[row];
            av += p_s[warp][tt] * dout[row];
          }
          acc_k[c] = ak;
          acc_v[c] = av;
        }
      }
      __syncwarp();
    }
  }
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    const int64_t dd = lane + 32 * c;
    if (dd < d) {
      dk[kv_row + dd] = acc_k[c];
      dv[kv_row + dd] = acc_v[c];
    }
  }
}

// --- SwiGLU --------------------------------------------------------------------

__global__ void SwiGluForwardKernel(const float* g, const float* u, int64_t count, float* a) {
  for (int64_t i = GlobalThread(); i < count; i += GridThreads()) {
    a[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
  }
}

__global__ void SwiGluBackwardKernel(const float* g, const float* u, const float* da,
                                     int64_t count, float* dg, float* du) {
  for (int64_t i = GlobalThread(); i < count; i += GridThreads()) {
    const float sig = 1.0f / (1.0f + expf(-g[i]));
    const float silu = g[i] * sig;
    const float d = da[i];
    dg[i] = d * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    du[i] = d * silu;
  }
}

// --- cross-entropy -------------------------------------------------------------
// One block per row: the max, then sum(exp(x - max)) in double, as
// ops::SoftmaxStats.

struct SoftmaxStats {
  float max;
  double sum;
};

__device__ SoftmaxStats RowSoftmaxStats(const float* row, int64_t vocab) {
  __shared__ float shared_max[32];
  __shared__ double shared_sum[32];
  float mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, row[i]);
  mx = BlockMax(mx, shared_max);
  double sum = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) sum += expf(row[i] - mx);
  sum = BlockSum(sum, shared_sum);
  return {mx, sum};
}

__global__ void CrossEntropyForwardKernel(const float* logits, const int32_t* targets,
                                          int64_t vocab, double* nll) {
  const int64_t r = blockIdx.x;
  const int32_t target = targets[r];
  if (target == kIgnoreTarget) {  // uniform over the block
    if (threadIdx.x == 0) nll[r] = 0;
    return;
  }
  const float* row = logits + r * vocab;
  const SoftmaxStats stats = RowSoftmaxStats(row, vocab);
  if (threadIdx.x == 0) {
    nll[r] = static_cast<double>(stats.max) + log(stats.sum) - static_cast<double>(row[target]);
  }
}

__global__ void CrossEntropyBackwardKernel(const float* logits, const int32_t* targets,
                                           int64_t vocab, double scale, float* dlogits) {
  const int64_t r = blockIdx.x;
  const int32_t target = targets[r];
  float* drow = dlogits + r * vocab;
  if (target == kIgnoreTarget) {
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) drow[i] = 0;
    return;
  }
  const float* row = logits + r * vocab;
  const SoftmaxStats stats = RowSoftmaxStats(row, vocab);
  const double f = scale / stats.sum;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
    drow[i] = static_cast<float>(f * expf(row[i] - stats.max));
  }
  __syncthreads();  // the target's entry was written by some thread above
  if (threadIdx.x == 0) drow[target] -= static_cast<float>(scale);
}

// --- bias ------------------------------------------------------------------------

__global__ void BiasRowsKernel(const float* bias, int64_t n, int64_t dim, bool accumulate,
                               float* y) {
  for (int64_t i = GlobalThread(); i < n * dim; i += GridThreads()) {
    y[i] = accumulate ? y[i] + bias[i % dim] : bias[i % dim];
  }
}

__global__ void AddColumnSumsKernel(const float* a, int64_t n, int64_t dim, int64_t rows_per_block,
                                    float* sums) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= dim) return;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < n ? r0 + rows_per_block : n;
  float sum = 0;
  for (int64_t r = r0; r < r1; ++r) sum += a[r * dim + i];
  atomicAdd(sums + i, sum);
}

// The column kernels: x over columns, y over chunks of rows (gridDim.y is at
// most 65535, so very tall inputs get longer chunks).
int64_t ColumnRowsPerBlock(int64_t n) { return std::max<int64_t>(kColumnRows, (n + 65534) / 65535); }
dim3 ColumnGrid(int64_t n, int64_t dim) {
  const int64_t rows = ColumnRowsPerBlock(n);
  return dim3(static_cast<unsigned>((dim + kBlock - 1) / kBlock),
              static_cast<unsigned>((n + rows - 1) / rows));
}

unsigned AttentionBlocks(int64_t warps_of_work) {
  return static_cast<unsigned>((warps_of_work + kWarps - 1) / kWarps);
}

absl::Status CheckHeadDim(int64_t head_dim, const char* what) {
  if (head_dim < 1 || head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": head_dim ", head_dim, " is outside 1..", kMaxHeadDim));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status EmbeddingForward(Stream stream, const float* embed, const int32_t* tokens, int64_t n,
                              int64_t dim, float* x) {
  if (n * dim == 0) return absl::OkStatus();
  EmbeddingForwardKernel<<<GridFor(n * dim), kBlock, 0, stream>>>(embed, tokens, n, dim, x);
  return CheckLaunch("EmbeddingForward");
}

absl::Status EmbeddingBackward(Stream stream, const float* dx, const int32_t* tokens, int64_t n,
                               int64_t dim, float* dembed) {
  if (n * dim == 0) return absl::OkStatus();
  EmbeddingBackwardKernel<<<GridFor(n * dim), kBlock, 0, stream>>>(dx, tokens, n, dim, dembed);
  return CheckLaunch("EmbeddingBackward");
}

absl::Status RmsNormForward(Stream stream, const float* x, const float* w, int64_t n, int64_t dim,
                            double eps, float* y, float* rinv) {
  if (n == 0) return absl::OkStatus();
  RmsNormForwardKernel<<<static_cast<unsigned>(n), kBlock, 0, stream>>>(x, w, dim, eps, y, rinv);
  return CheckLaunch("RmsNormForward");
}

absl::Status RmsNormBackward(Stream stream, const float* dy, const float* x, const float* w,
                             const float* rinv, int64_t n, int64_t dim, float* dx, float* dw) {
  if (n == 0) return absl::OkStatus();
  RmsNormBackwardRowsKernel<<<static_cast<unsigned>(n), kBlock, 0, stream>>>(dy, x, w, rinv, dim,
                                                                             dx);
  if (absl::Status s = CheckLaunch("RmsNormBackward (rows)"); !s.ok()) return s;
  RmsNormBackwardWeightKernel<<<ColumnGrid(n, dim), kBlock, 0, stream>>>(
      dy, x, rinv, n, dim, ColumnRowsPerBlock(n), dw);
  return CheckLaunch("RmsNormBackward (weight)");
}

absl::Status Rope(Stream stream, float* x, int64_t n, int64_t seq_len, int64_t heads,
                  int64_t head_dim, const float* cos, const float* sin, bool inverse) {
  const int64_t count = n * heads * (head_dim / 2);
  if (count == 0) return absl::OkStatus();
  RopeKernel<<<GridFor(count), kBlock, 0, stream>>>(x, n, seq_len, heads, head_dim, cos, sin,
                                                    inverse);
  return CheckLaunch("Rope");
}

absl::Status AttentionForward(Stream stream, const float* q, const float* k, const float* v,
                              const AttentionShape& s, float* out, float* lse) {
  if (absl::Status st = CheckHeadDim(s.head_dim, "AttentionForward"); !st.ok()) return st;
  const int64_t queries = s.batch * s.num_heads * s.seq_len;
  if (queries == 0) return absl::OkStatus();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  AttentionForwardKernel<<<AttentionBlocks(queries), kWarps * 32, 0, stream>>>(q, k, v, s, scale,
                                                                              out, lse);
  return CheckLaunch("AttentionForward");
}

absl::Status AttentionBackward(Stream stream, const float* q, const float* k, const float* v,
                               const float* out, const float* lse, const float* dout,
                               const AttentionShape& s, float* dq, float* dk, float* dv,
                               float* delta) {
  if (absl::Status st = CheckHeadDim(s.head_dim, "AttentionBackward"); !st.ok()) return st;
  const int64_t queries = s.batch * s.num_heads * s.seq_len;
  if (queries == 0) return absl::OkStatus();
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  AttentionBackwardQueryKernel<<<AttentionBlocks(queries), kWarps * 32, 0, stream>>>(
      q, k, v, out, lse, dout, s, scale, dq, delta);
  if (absl::Status st = CheckLaunch("AttentionBackward (queries)"); !st.ok()) return st;
  const int64_t keys = s.batch * s.num_kv_heads * s.seq_len;
  AttentionBackwardKeyKernel<<<AttentionBlocks(keys), kWarps * 32, 0, stream>>>(
      q, k, v, lse, dout, delta, s, scale, dk, dv);
  return CheckLaunch("AttentionBackward (keys)");
}

absl::Status SwiGluForward(Stream stream, const float* g, const float* u, int64_t count,
                           float* a) {
  if (count == 0) return absl::OkStatus();
  SwiGluForwardKernel<<<GridFor(count), kBlock, 0, stream>>>(g, u, count, a);
  return CheckLaunch("SwiGluForward");
}

absl::Status SwiGluBackward(Stream stream, const float* g, const float* u, const float* da,
                            int64_t count, float* dg, float* du) {
  if (count == 0) return absl::OkStatus();
  SwiGluBackwardKernel<<<GridFor(count), kBlock, 0, stream>>>(g, u, da, count, dg, du);
  return CheckLaunch("SwiGluBackward");
}

absl::Status CrossEntropyForward(Stream stream, const float* logits, const int32_t* targets,
                                 int64_t n, int64_t vocab, double* nll) {
  if (n == 0) return absl::OkStatus();
  CrossEntropyForwardKernel<<<static_cast<unsigned>(n), kBlock, 0, stream>>>(logits, targets,
                                                                             vocab, nll);
  return CheckLaunch("CrossEntropyForward");
}

absl::Status CrossEntropyBackward(Stream stream, const float* logits, const int32_t* targets,
                                  int64_t n, int64_t vocab, double scale, float* dlogits) {
  if (n == 0) return absl::OkStatus();
  CrossEntropyBackwardKernel<<<static_cast<unsigned>(n), kBlock, 0, stream>>>(
      logits, targets, vocab, scale, dlogits);
  return CheckLaunch("CrossEntropyBackward");
}

absl::Status BiasRows(Stream stream, const float* bias, int64_t n, int64_t dim, bool accumulate,
                      float* y) {
  if (n * dim == 0) return absl::OkStatus();
  BiasRowsKernel<<<GridFor(n * dim), kBlock, 0, stream>>>(bias, n, dim, accumulate, y);
  return CheckLaunch("BiasRows");
}

absl::Status AddColumnSums(Stream stream, const float* a, int64_t n, int64_t dim, float* sums) {
  if (n * dim == 0) return absl::OkStatus();
  AddColumnSumsKernel<<<ColumnGrid(n, dim), kBlock, 0, stream>>>(a, n, dim,
                                                                  ColumnRowsPerBlock(n), sums);
  return CheckLaunch("AddColumnSums");
}

}  // namespace otaro::trainer::cuda::kernels
