#include "trainer/model/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "trainer/batch.h"

namespace otaro::trainer::ops {
namespace {

// C = alpha op(A) op(B) + beta C, row-major, for both scalars.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
T Dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

template <typename T>
void Axpy(T alpha, const T* x, int64_t n, T* y) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace

void ParallelFor(sefp::ThreadPool* pool, int64_t n,
                 const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->num_threads() == 1 || n == 1) {
    fn(0, n);
  } else {
    pool->ParallelFor(n, fn);
  }
}

template <typename T>
void LinearForward(const T* x, const T* w, const T* bias, int64_t n, int64_t in, int64_t out,
                   bool accumulate, T* y) {
  if (n == 0) return;
  if (bias != nullptr) {
    for (int64_t r = 0; r < n; ++r) {
      T* row = y + r * out;
      if (accumulate) {
        for (int64_t o = 0; o < out; ++o) row[o] += bias[o];
      } else {
        std::memcpy(row, bias, out * sizeof(T));
      }
    }
    accumulate = true;
  }
  Gemm(false, true, n, out, in, T(1), x, in, w, in, accumulate ? T(1) : T(0), y, out);
}

template <typename T>
void LinearBackward(const T* dy, const T* x, const T* w, int64_t n, int64_t in, int64_t out,
                    T* dx, bool accumulate_dx, T* dw, T* dbias, sefp::ThreadPool* pool) {
  if (n == 0) return;
  if (dx != nullptr) {
    Gemm(false, false, n, in, out, T(1), dy, out, w, in, accumulate_dx ? T(1) : T(0), dx, in);
  }
  Gemm(true, false, out, in, n, T(1), dy, out, x, in, T(1), dw, in);
  if (dbias != nullptr) {
    ParallelFor(pool, out, [&](int64_t begin, int64_t end) {
      for (int64_t r = 0; r < n; ++r) {
        const T* row = dy + r * out;
        for (int64_t o = begin; o < end; ++o) dbias[o] += row[o];
      }
    });
  }
}

template <typename T>
void RmsNormForward(const T* x, const T* w, int64_t n, int64_t dim, double eps, T* y, T* rinv,
                    sefp::ThreadPool* pool) {
  ParallelFor(pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * dim;
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const T scale = static_cast<T>(1.0 / std::sqrt(ss / dim + eps));
      rinv[r] = scale;
      T* yr = y + r * dim;
      for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * scale);
    }
  });
}

template <typename T>
void RmsNormBackward(const T* dy, const T* x, const T* w, const T* rinv, int64_t n, int64_t dim,
                     T* dx, T* dw, sefp::ThreadPool* pool) {
  // y_i = w_i x_i r with r = (mean(x^2) + eps)^(-1/2), dr/dx_j = -r^3 x_j / dim.
  ParallelFor(pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * dim;
      const T* dyr = dy + r * dim;
      T* dxr = dx + r * dim;
      const T s = rinv[r];
      double dot = 0;  // sum_i dy_i w_i x_i
      for (int64_t i = 0; i < dim; ++i) dot += static_cast<double>(dyr[i]) * w[i] * xr[i];
      const T c = static_cast<T>(dot * s * s * s / dim);
      for (int64_t i = 0; i < dim; ++i) dxr[i] += dyr[i] * w[i] * s - c * xr[i];
    }
  });
  // dw by columns so that no two threads add to the same entry.
  ParallelFor(pool, dim, [&](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < n; ++r) {
      const T* xr = x + r * dim;
      const T* dyr = dy + r * dim;
      const T s = rinv[r];
      for (int64_t i = begin; i < end; ++i) dw[i] += dyr[i] * xr[i] * s;
    }
  });
}

template <typename T>
void Rope(T* x, int64_t n, int64_t seq_len, int64_t heads, int64_t head_dim, const T* cos,
          const T* sin, bool inverse, sefp::ThreadPool* pool) {
  const int64_t half = head_dim / 2;
  ParallelFor(pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* cs = cos + (r % seq_len) * half;
      const T* sn = sin + (r % seq_len) * half;
      for (int64_t h = 0; h < heads; ++h) {
        T* v = x + (r * heads + h) * head_dim;
        for (int64_t i = 0; i < half; ++i) {
          const T a = v[i], b = v[i + half];
          const T s = inverse ? -sn[i] : sn[i];
          v[i] = a * cs[i] - b * s;
          v[i + half] = b * cs[i] + a * s;
        }
      }
    }
  });
}

void RopeTables(const float* inv_freq, int64_t half, int64_t seq_len, float* cos, float* sin) {
  for (int64_t p = 0; p < seq_len; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      // As the engine: the angle in float32, cos / sin of it in double.
      const float angle = static_cast<float>(p) * inv_freq[i];
      cos[p * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin[p * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

template <typename T>
void AttentionForward(const T* q, const T* k, const T* v, const AttentionShape& s, T* out, T* lse,
                      sefp::ThreadPool* pool) {
  const int64_t T_ = s.seq_len, nh = s.num_heads, nkv = s.num_kv_heads, d = s.head_dim;
  const int64_t group = nh / nkv;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  // One task per (batch row, kv head), as in the backward.
  ParallelFor(pool, s.batch * nkv, [&](int64_t begin, int64_t end) {
    std::vector<T> p(T_);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nkv, kvh = task % nkv;
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        for (int64_t t = 0; t < T_; ++t) {
          const T* qt = q + ((b * T_ + t) * nh + h) * d;
          T mx = -INFINITY;
          for (int64_t j = 0; j <= t; ++j) {
            p[j] = Dot(qt, k + ((b * T_ + j) * nkv + kvh) * d, d) * scale;
            mx = std::max(mx, p[j]);
          }
          T sum = 0;
          for (int64_t j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - mx));
          T* ot = out + ((b * T_ + t) * nh + h) * d;
          std::fill(ot, ot + d, T(0));
          const T inv = T(1) / sum;
          for (int64_t j = 0; j <= t; ++j) Axpy(p[j] * inv, v + ((b * T_ + j) * nkv + kvh) * d, d, ot);
          lse[(b * nh + h) * T_ + t] = mx + std::log(sum);
        }
      }
    }
  });
}

template <typename T>
void AttentionBackward(const T* q, const T* k, const T* v, const T* out, const T* lse,
                       const T* dout, const AttentionShape& s, T* dq, T* dk, T* dv,
                       sefp::ThreadPool* pool) {
  const int64_t T_ = s.seq_len, nh = s.num_heads, nkv = s.num_kv_heads, d = s.head_dim;
  const int64_t group = nh / nkv;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d)));
  // Each task owns one (batch row, kv head): the dk / dv of that head receive
  // the contributions of every query head of its group, so no two tasks write
  // the same entry.
  ParallelFor(pool, s.batch * nkv, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nkv, kvh = task % nkv;
      for (int64_t j = 0; j < T_; ++j) {
        std::fill_n(dk + ((b * T_ + j) * nkv + kvh) * d, d, T(0));
        std::fill_n(dv + ((b * T_ + j) * nkv + kvh) * d, d, T(0));
      }
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        for (int64_t t = 0; t < T_; ++t) {
          const int64_t qi = ((b * T_ + t) * nh + h) * d;
          const T* qt = q + qi;
          const T* dot = dout + qi;
          T* dqt = dq + qi;
          std::fill_n(dqt, d, T(0));
          // sum_j p_j dP_j = dout . out (softmax backward without a second pass).
          const T delta = Dot(dot, out + qi, d);
          const T l = lse[(b * nh + h) * T_ + t];
          for (int64_t j = 0; j <= t; ++j) {
            const int64_t ki = ((b * T_ + j) * nkv + kvh) * d;
            const T p = std::exp(Dot(qt, k + ki, d) * scale - l);
            const T ds = p * (Dot(dot, v + ki, d) - delta) * scale;
            Axpy(ds, k + ki, d, dqt);
            Axpy(ds, qt, d, dk + ki);
            Axpy(p, dot, d, dv + ki);
          }
        }
      }
    }
  });
}

template <typename T>
void SwiGluForward(const T* g, const T* u, int64_t count, T* a, sefp::ThreadPool* pool) {
  ParallelFor(pool, count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) a[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
  });
}

template <typename T>
void SwiGluBackward(const T* g, const T* u, const T* da, int64_t count, T* dg, T* du,
                    sefp::ThreadPool* pool) {
  ParallelFor(pool, count, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T sig = T(1) / (T(1) + std::exp(-g[i]));
      const T silu = g[i] * sig;
      const T d = da[i];
      dg[i] = d * u[i] * sig * (T(1) + g[i] * (T(1) - sig));
      du[i] = d * silu;
    }
  });
}

namespace {

// max and sum(exp(x - max)) of one row of logits.
template <typename T>
std::pair<T, double> SoftmaxStats(const T* row, int64_t vocab) {
  T mx = row[0];
  for (int64_t i = 1; i < vocab; ++i) mx = std::max(mx, row[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(row[i] - mx));
  return {mx, sum};
}

}  // namespace

template <typename T>
std::pair<double, int64_t> CrossEntropyForward(const T* logits, const int32_t* targets, int64_t n,
                                               int64_t vocab, sefp::ThreadPool* pool) {
  std::vector<double> nll(n, 0.0);
  ParallelFor(pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (targets[r] == kIgnoreTarget) continue;
      const T* row = logits + r * vocab;
      const auto [mx, sum] = SoftmaxStats(row, vocab);
      nll[r] = static_cast<double>(mx) + std::log(sum) - static_cast<double>(row[targets[r]]);
    }
  });
  double total = 0;
  int64_t scored = 0;
  for (int64_t r = 0; r < n; ++r) {
    total += nll[r];
    scored += targets[r] != kIgnoreTarget;
  }
  return {total, scored};
}

template <typename T>
void CrossEntropyBackward(const T* logits, const int32_t* targets, int64_t n, int64_t vocab,
                          double scale, T* dlogits, sefp::ThreadPool* pool) {
  ParallelFor(pool, n, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* drow = dlogits + r * vocab;
      if (targets[r] == kIgnoreTarget) {
        std::fill_n(drow, vocab, T(0));
        continue;
      }
      const T* row = logits + r * vocab;
      const auto [mx, sum] = SoftmaxStats(row, vocab);
      const double f = scale / sum;
      for (int64_t i = 0; i < vocab; ++i) {
        drow[i] = static_cast<T>(f * std::exp(static_cast<double>(row[i] - mx)));
      }
      drow[targets[r]] -= static_cast<T>(scale);
    }
  });
}

#define OTARO_TRAINER_OPS_INSTANTIATE(T)                                                        \
  template void LinearForward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, bool, \
                                 T*);                                                           \
  template void LinearBackward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, T*,  \
                                  bool, T*, T*, sefp::ThreadPool*);                             \
  template void RmsNormForward<T>(const T*, const T*, int64_t, int64_t, double, T*, T*,         \
                                  sefp::ThreadPool*);                                           \
  template void RmsNormBackward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t,    \
                                   T*, T*, sefp::ThreadPool*);                                  \
  template void Rope<T>(T*, int64_t, int64_t, int64_t, int64_t, const T*, const T*, bool,       \
                        sefp::ThreadPool*);                                                     \
  template void AttentionForward<T>(const T*, const T*, const T*, const AttentionShape&, T*,    \
                                    T*, sefp::ThreadPool*);                                     \
  template void AttentionBackward<T>(const T*, const T*, const T*, const T*, const T*,          \
                                     const T*, const AttentionShape&, T*, T*, T*,               \
                                     sefp::ThreadPool*);                                        \
  template void SwiGluForward<T>(const T*, const T*, int64_t, T*, sefp::ThreadPool*);           \
  template void SwiGluBackward<T>(const T*, const T*, const T*, int64_t, T*, T*,                \
                                  sefp::ThreadPool*);                                           \
  template std::pair<double, int64_t> CrossEntropyForward<T>(const T*, const int32_t*, int64_t, \
                                                             int64_t, sefp::ThreadPool*);       \
  template void CrossEntropyBackward<T>(const T*, const int32_t*, int64_t, int64_t, double, T*, \
                                        sefp::ThreadPool*);

OTARO_TRAINER_OPS_INSTANTIATE(float)
OTARO_TRAINER_OPS_INSTANTIATE(double)

}  // namespace otaro::trainer::ops
