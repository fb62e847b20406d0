// Each primitive's backward against central finite differences of its forward,
// in double on tiny random shapes (loss = sum(out * R) for a random R, so that
// dL/dout = R), plus forwards against direct formulas and thread invariance.
#include "trainer/model/ops.h"

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "trainer/batch.h"

namespace otaro::trainer::ops {
namespace {

using Vec = std::vector<double>;

Vec Random(size_t n, std::mt19937* rng, double scale = 1.0) {
  std::normal_distribution<double> dist(0.0, scale);
  Vec v(n);
  for (double& x : v) x = dist(*rng);
  return v;
}

double Dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Checks analytic[i] == d loss / d x[i] by central differences.
void ExpectGradient(const std::string& what, Vec* x, const Vec& analytic,
                    const std::function<double()>& loss) {
  ASSERT_EQ(x->size(), analytic.size()) << what;
  const double h = 1e-6;
  for (size_t i = 0; i < x->size(); ++i) {
    const double saved = (*x)[i];
    (*x)[i] = saved + h;
    const double up = loss();
    (*x)[i] = saved - h;
    const double down = loss();
    (*x)[i] = saved;
    const double fd = (up - down) / (2 * h);
    EXPECT_NEAR(analytic[i], fd, 1e-7 + 1e-6 * std::fabs(fd)) << what << "[" << i << "]";
  }
}

TEST(OpsTest, LinearGradients) {
  std::mt19937 rng(1);
  const int64_t n = 3, in = 5, out = 4;
  Vec x = Random(n * in, &rng), w = Random(out * in, &rng), b = Random(out, &rng),
      R = Random(n * out, &rng);
  auto loss = [&] {
    Vec y(n * out);
    LinearForward(x.data(), w.data(), b.data(), n, in, out, false, y.data());
    return Dot(y, R);
  };
  // Forward against the definition.
  Vec y(n * out);
  LinearForward(x.data(), w.data(), b.data(), n, in, out, false, y.data());
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t o = 0; o < out; ++o) {
      double s = b[o];
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * w[o * in + i];
      EXPECT_NEAR(y[r * out + o], s, 1e-12);
    }
  }
  // Parameter gradients are added to what is there.
  Vec dx(n * in, 0.0), dw(out * in, 1.0), db(out, 2.0);
  LinearBackward(R.data(), x.data(), w.data(), n, in, out, dx.data(), false, dw.data(), db.data(),
                 nullptr);
  for (double& v : dw) v -= 1.0;
  for (double& v : db) v -= 2.0;
  ExpectGradient("dx", &x, dx, loss);
  ExpectGradient("dw", &w, dw, loss);
  ExpectGradient("db", &b, db, loss);
  // accumulate_dx adds; without it dx is overwritten.
  Vec dx2(n * in, 1.0), dw2(out * in, 0.0);
  LinearBackward<double>(R.data(), x.data(), w.data(), n, in, out, dx2.data(), true, dw2.data(),
                         nullptr, nullptr);
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx2[i], dx[i] + 1.0, 1e-12);
}

TEST(OpsTest, RmsNormGradients) {
  std::mt19937 rng(2);
  const int64_t n = 3, dim = 6;
  const double eps = 1e-5;
  Vec x = Random(n * dim, &rng), w = Random(dim, &rng), R = Random(n * dim, &rng);
  auto loss = [&] {
    Vec y(n * dim), r(n);
    RmsNormForward(x.data(), w.data(), n, dim, eps, y.data(), r.data(), nullptr);
    return Dot(y, R);
  };
  Vec y(n * dim), rinv(n);
  RmsNormForward(x.data(), w.data(), n, dim, eps, y.data(), rinv.data(), nullptr);
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    for (int64_t i = 0; i < dim; ++i) {
      EXPECT_NEAR(y[r * dim + i], w[i] * x[r * dim + i] / std::sqrt(ss / dim + eps), 1e-12);
    }
  }
  Vec dx(n * dim, 0.0), dw(dim, 0.0);
  RmsNormBackward(R.data(), x.data(), w.data(), rinv.data(), n, dim, dx.data(), dw.data(), nullptr);
  ExpectGradient("dx", &x, dx, loss);
  ExpectGradient("dw", &w, dw, loss);
}

TEST(OpsTest, RopeForwardIsRotateHalfAndBackwardIsInverse) {
  std::mt19937 rng(3);
  const int64_t B = 2, T = 3, heads = 2, d = 4, half = d / 2, n = B * T;
  Vec cos(T * half), sin(T * half);
  std::uniform_real_distribution<double> angle(-3, 3);
  for (int64_t i = 0; i < T * half; ++i) {
    const double a = angle(rng);
    cos[i] = std::cos(a);
    sin[i] = std::sin(a);
  }
  Vec x = Random(n * heads * d, &rng), R = Random(n * heads * d, &rng);
  // HF: q * cos + rotate_half(q) * sin, with cos/sin repeated over both halves.
  Vec y = x;
  Rope(y.data(), n, T, heads, d, cos.data(), sin.data(), false, nullptr);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < d; ++i) {
        const double* v = x.data() + (r * heads + h) * d;
        const int64_t f = (r % T) * half + i % half;
        const double rot = i < half ? -v[i + half] : v[i - half];
        EXPECT_NEAR(y[(r * heads + h) * d + i], v[i] * cos[f] + rot * sin[f], 1e-12);
      }
    }
  }
  auto loss = [&] {
    Vec z = x;
    Rope(z.data(), n, T, heads, d, cos.data(), sin.data(), false, nullptr);
    return Dot(z, R);
  };
  Vec dx = R;
  Rope(dx.data(), n, T, heads, d, cos.data(), sin.data(), true, nullptr);
  ExpectGradient("dx", &x, dx, loss);
}

TEST(OpsTest, RopeTablesUseTheEngineAngles) {
  const float inv_freq[2] = {1.0f, 0.01f};
  std::vector<float> cos(3 * 2), sin(3 * 2);
  RopeTables(inv_freq, 2, 3, cos.data(), sin.data());
  EXPECT_EQ(cos[0], 1.0f);
  EXPECT_EQ(sin[0], 0.0f);
  EXPECT_FLOAT_EQ(cos[2 * 2 + 0], std::cos(2.0f));
  EXPECT_FLOAT_EQ(sin[2 * 2 + 1], std::sin(0.02f));
}

struct AttentionCase {
  AttentionShape s;
  Vec q, k, v;
};

AttentionCase MakeAttention(std::mt19937* rng) {
  AttentionCase c;
  c.s = {2, 4, 4, 2, 3};  // B, T, heads, kv heads (groups of 2), head_dim
  const int64_t n = c.s.batch * c.s.seq_len;
  c.q = Random(n * c.s.num_heads * c.s.head_dim, rng);
  c.k = Random(n * c.s.num_kv_heads * c.s.head_dim, rng);
  c.v = Random(n * c.s.num_kv_heads * c.s.head_dim, rng);
  return c;
}

TEST(OpsTest, AttentionForwardIsCausalGroupedSoftmax) {
  std::mt19937 rng(4);
  AttentionCase c = MakeAttention(&rng);
  const AttentionShape& s = c.s;
  const int64_t n = s.batch * s.seq_len, d = s.head_dim;
  Vec out(n * s.num_heads * d), lse(s.batch * s.num_heads * s.seq_len);
  AttentionForward(c.q.data(), c.k.data(), c.v.data(), s, out.data(), lse.data(), nullptr);
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < s.num_heads; ++h) {
      const int64_t kvh = h / (s.num_heads / s.num_kv_heads);
      for (int64_t t = 0; t < s.seq_len; ++t) {
        // Full softmax over all positions with -inf above the diagonal.
        std::vector<double> score(s.seq_len);
        double z = 0;
        for (int64_t j = 0; j < s.seq_len; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < d; ++i) {
            dot += c.q[((b * s.seq_len + t) * s.num_heads + h) * d + i] *
                   c.k[((b * s.seq_len + j) * s.num_kv_heads + kvh) * d + i];
          }
          score[j] = j <= t ? std::exp(dot / std::sqrt(double(d))) : 0.0;
          z += score[j];
        }
        EXPECT_NEAR(lse[(b * s.num_heads + h) * s.seq_len + t], std::log(z), 1e-12);
        for (int64_t i = 0; i < d; ++i) {
          double want = 0;
          for (int64_t j = 0; j < s.seq_len; ++j) {
            want += score[j] / z * c.v[((b * s.seq_len + j) * s.num_kv_heads + kvh) * d + i];
          }
          EXPECT_NEAR(out[((b * s.seq_len + t) * s.num_heads + h) * d + i], want, 1e-12);
        }
      }
    }
  }
}

TEST(OpsTest, AttentionGradients) {
  std::mt19937 rng(5);
  AttentionCase c = MakeAttention(&rng);
  const AttentionShape& s = c.s;
  const int64_t n = s.batch * s.seq_len;
  Vec R = Random(n * s.num_heads * s.head_dim, &rng);
  auto loss = [&] {
    Vec out(n * s.num_heads * s.head_dim), lse(n * s.num_heads);
    AttentionForward(c.q.data(), c.k.data(), c.v.data(), s, out.data(), lse.data(), nullptr);
    return Dot(out, R);
  };
  Vec out(n * s.num_heads * s.head_dim), lse(n * s.num_heads);
  AttentionForward(c.q.data(), c.k.data(), c.v.data(), s, out.data(), lse.data(), nullptr);
  Vec dq(c.q.size(), 7.0), dk(c.k.size(), 7.0), dv(c.v.size(), 7.0);  // overwritten
  AttentionBackward(c.q.data(), c.k.data(), c.v.data(), out.data(), lse.data(), R.data(), s,
                    dq.data(), dk.data(), dv.data(), nullptr);
  ExpectGradient("dq", &c.q, dq, loss);
  ExpectGradient("dk", &c.k, dk, loss);
  ExpectGradient("dv", &c.v, dv, loss);
}

TEST(OpsTest, AttentionIsThreadInvariantInFloat) {
  std::mt19937 rng(6);
  const AttentionShape s{3, 17, 6, 2, 8};
  const int64_t n = s.batch * s.seq_len;
  auto to_float = [](const Vec& v) { return std::vector<float>(v.begin(), v.end()); };
  std::vector<float> q = to_float(Random(n * 6 * 8, &rng)), k = to_float(Random(n * 2 * 8, &rng)),
                     v = to_float(Random(n * 2 * 8, &rng)), R = to_float(Random(n * 6 * 8, &rng));
  sefp::ThreadPool pool(3);
  std::vector<float> results[2][4];
  for (int run = 0; run < 2; ++run) {
    sefp::ThreadPool* p = run == 0 ? nullptr : &pool;
    auto& r = results[run];
    r[0].resize(q.size());
    std::vector<float> lse(n * 6);
    AttentionForward(q.data(), k.data(), v.data(), s, r[0].data(), lse.data(), p);
    r[1].resize(q.size());
    r[2].resize(k.size());
    r[3].resize(v.size());
    AttentionBackward(q.data(), k.data(), v.data(), r[0].data(), lse.data(), R.data(), s,
                      r[1].data(), r[2].data(), r[3].data(), p);
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(results[0][i], results[1][i]) << i;
}

TEST(OpsTest, SwiGluGradients) {
  std::mt19937 rng(7);
  const int64_t count = 9;
  Vec g = Random(count, &rng, 2.0), u = Random(count, &rng), R = Random(count, &rng);
  auto loss = [&] {
    Vec a(count);
    SwiGluForward(g.data(), u.data(), count, a.data(), nullptr);
    return Dot(a, R);
  };
  Vec a(count);
  SwiGluForward(g.data(), u.data(), count, a.data(), nullptr);
  for (int64_t i = 0; i < count; ++i) EXPECT_NEAR(a[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-14);
  Vec dg(count), du = R;  // du aliases da
  SwiGluBackward(g.data(), u.data(), du.data(), count, dg.data(), du.data(), nullptr);
  ExpectGradient("dg", &g, dg, loss);
  ExpectGradient("du", &u, du, loss);
}

TEST(OpsTest, CrossEntropySkipsIgnoredTargets) {
  std::mt19937 rng(8);
  const int64_t n = 4, vocab = 5;
  Vec logits = Random(n * vocab, &rng, 3.0);
  const std::vector<int32_t> targets = {3, kIgnoreTarget, 0, 4};
  const auto [sum, scored] = CrossEntropyForward(logits.data(), targets.data(), n, vocab, nullptr);
  EXPECT_EQ(scored, 3);
  double want = 0;
  for (int64_t r : {0, 2, 3}) {
    double z = 0;
    for (int64_t i = 0; i < vocab; ++i) z += std::exp(logits[r * vocab + i]);
    want += std::log(z) - logits[r * vocab + targets[r]];
  }
  EXPECT_NEAR(sum, want, 1e-12);

  const double scale = 0.25;
  auto loss = [&] {
    return scale * CrossEntropyForward(logits.data(), targets.data(), n, vocab, nullptr).first;
  };
  Vec d(n * vocab, 9.0);
  CrossEntropyBackward(logits.data(), targets.data(), n, vocab, scale, d.data(), nullptr);
  for (int64_t i = 0; i < vocab; ++i) EXPECT_EQ(d[1 * vocab + i], 0.0);
  ExpectGradient("dlogits", &logits, d, loss);
}

TEST(OpsTest, FloatCrossEntropyIsStableForLargeLogits) {
  std::vector<float> logits = {1000.0f, 0.0f, -1000.0f};
  const std::vector<int32_t> targets = {1};
  const auto [sum, scored] = CrossEntropyForward(logits.data(), targets.data(), 1, 3, nullptr);
  EXPECT_EQ(scored, 1);
  EXPECT_NEAR(sum, 1000.0, 1e-3);
  std::vector<float> d(3);
  CrossEntropyBackward(logits.data(), targets.data(), 1, 3, 1.0, d.data(), nullptr);
  EXPECT_NEAR(d[0], 1.0f, 1e-6);
  EXPECT_NEAR(d[1], -1.0f, 1e-6);
  EXPECT_TRUE(std::isfinite(d[2]));
}

}  // namespace
}  // namespace otaro::trainer::ops
