#include "engine/cpu/reference_forward.h"

#include <cmath>

#include "sefp/kernels/activations.h"

namespace otaro::engine::cpu::testing {

std::vector<DenseLayer> DenseLayersOf(const LlamaModel& model) {
  std::vector<DenseLayer> layers(model.layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const LlamaLayer& L = model.layers[l];
    const Linear* lin[7] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
    for (int i = 0; i < 7; ++i) layers[l].w[i] = lin[i]->dense;
  }
  return layers;
}
namespace {

// x as the SEFP kernels see it (float32, then int8 per group of 64).
std::vector<double> Int8(const std::vector<double>& x) {
  std::vector<float> f(x.begin(), x.end());
  sefp::QuantizedActivations q;
  q.Quantize(f, 1, static_cast<int64_t>(f.size()));
  const std::vector<float> back = q.Dequantize(0);
  return std::vector<double>(back.begin(), back.end());
}

std::vector<double> MatVec(const std::vector<float>& w, const std::vector<float>& bias,
                           const std::vector<double>& x, size_t out) {
  const size_t in = x.size();
  std::vector<double> y(out);
  for (size_t n = 0; n < out; ++n) {
    double s = bias.empty() ? 0.0 : bias[n];
    for (size_t k = 0; k < in; ++k) s += static_cast<double>(w[n * in + k]) * x[k];
    y[n] = s;
  }
  return y;
}

std::vector<double> Norm(const std::vector<double>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double scale = 1.0 / std::sqrt(ss / x.size() + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = w[i] * x[i] * scale;
  return y;
}

}  // namespace

std::vector<double> ReferenceForward(const LlamaModel& model, const std::vector<DenseLayer>& layers,
                                     const std::vector<int>& tokens, bool int8_activations) {
  auto in = [&](const std::vector<double>& x) { return int8_activations ? Int8(x) : x; };
  const ModelConfig& c = model.config;
  const size_t T = tokens.size(), H = c.hidden_size, D = c.head_dim, NH = c.num_heads,
               NKV = c.num_kv_heads, V = c.vocab_size, I = c.intermediate_size;
  std::vector<std::vector<double>> x(T, std::vector<double>(H));
  for (size_t t = 0; t < T; ++t)
    for (size_t i = 0; i < H; ++i) x[t][i] = model.embed[tokens[t] * H + i];

  // RoPE frequencies (llama3 scaling as in transformers).
  std::vector<double> inv(D / 2);
  for (size_t i = 0; i < D / 2; ++i) {
    double f = 1.0 / std::pow(c.rope_theta, 2.0 * i / D);
    const auto& s = c.rope_scaling;
    if (s.factor > 0) {
      const double wl = 2 * M_PI / f, lo = s.original_max_position / s.low_freq_factor,
                   hi = s.original_max_position / s.high_freq_factor;
      if (wl > lo) {
        f /= s.factor;
      } else if (wl >= hi) {
        const double sm = (s.original_max_position / wl - s.low_freq_factor) /
                          (s.high_freq_factor - s.low_freq_factor);
        f = (1 - sm) * f / s.factor + sm * f;
      }
    }
    inv[i] = f;
  }
  auto rope = [&](std::vector<double>& v, size_t heads, size_t pos) {
    for (size_t h = 0; h < heads; ++h) {
      for (size_t i = 0; i < D / 2; ++i) {
        const double a = v[h * D + i], b = v[h * D + i + D / 2];
        const double cs = std::cos(pos * inv[i]), sn = std::sin(pos * inv[i]);
        v[h * D + i] = a * cs - b * sn;
        v[h * D + i + D / 2] = b * cs + a * sn;
      }
    }
  };

  for (size_t l = 0; l < layers.size(); ++l) {
    const LlamaLayer& L = model.layers[l];
    const DenseLayer& W = layers[l];
    std::vector<std::vector<double>> q(T), k(T), v(T);
    for (size_t t = 0; t < T; ++t) {
      const std::vector<double> h = in(Norm(x[t], L.input_norm, c.rms_norm_eps));
      q[t] = MatVec(W.w[0], L.q.bias, h, NH * D);
      k[t] = MatVec(W.w[1], L.k.bias, h, NKV * D);
      v[t] = MatVec(W.w[2], L.v.bias, h, NKV * D);
      rope(q[t], NH, t);
      rope(k[t], NKV, t);
    }
    for (size_t t = 0; t < T; ++t) {
      std::vector<double> attn(NH * D, 0.0);
      for (size_t h = 0; h < NH; ++h) {
        const size_t kh = h / (NH / NKV);
        std::vector<double> p(t + 1);
        double mx = -INFINITY;
        for (size_t j = 0; j <= t; ++j) {
          double s = 0;
          for (size_t i = 0; i < D; ++i) s += q[t][h * D + i] * k[j][kh * D + i];
          p[j] = s / std::sqrt(static_cast<double>(D));
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (double& e : p) sum += (e = std::exp(e - mx));
        for (size_t j = 0; j <= t; ++j)
          for (size_t i = 0; i < D; ++i) attn[h * D + i] += p[j] / sum * v[j][kh * D + i];
      }
      const std::vector<double> o = MatVec(W.w[3], L.o.bias, in(attn), H);
      for (size_t i = 0; i < H; ++i) x[t][i] += o[i];
      const std::vector<double> h = in(Norm(x[t], L.post_attention_norm, c.rms_norm_eps));
      std::vector<double> g = MatVec(W.w[4], {}, h, I);
      const std::vector<double> u = MatVec(W.w[5], {}, h, I);
      for (size_t i = 0; i < I; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      const std::vector<double> d = MatVec(W.w[6], {}, in(g), H);
      for (size_t i = 0; i < H; ++i) x[t][i] += d[i];
    }
  }
  std::vector<double> logits(T * V);
  for (size_t t = 0; t < T; ++t) {
    const std::vector<double> h = Norm(x[t], model.final_norm, c.rms_norm_eps);
    const std::vector<double> y = MatVec(model.LmHead(), {}, h, V);
    std::copy(y.begin(), y.end(), logits.begin() + t * V);
  }
  return logits;
}

}  // namespace otaro::engine::cpu::testing
