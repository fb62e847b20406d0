#include "trainer/model/training_model.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "sefp/fake_quant.h"
#include "trainer/model/ops.h"

namespace otaro::trainer {
namespace {

// Rows of logits whose gradient is formed at once in the backward: bounds the
// dlogits buffer to kLogitChunk x vocab while keeping the GEMMs large.
constexpr int64_t kLogitChunk = 128;

}  // namespace

TrainingModel::TrainingModel(const Parameters* params, int64_t max_batch, int64_t max_seq,
                             int threads)
    : params_(params), max_batch_(max_batch), max_seq_(max_seq) {
  if (params == nullptr) {
    init_status_ = absl::InvalidArgumentError("TrainingModel: no parameters");
  } else if (max_batch < 1 || max_seq < 1) {
    init_status_ = absl::InvalidArgumentError(absl::StrCat(
        "TrainingModel: max_batch and max_seq must be >= 1 (got ", max_batch, ", ", max_seq, ")"));
  } else if (threads < 1) {
    init_status_ = absl::InvalidArgumentError(
        absl::StrCat("TrainingModel: threads must be >= 1 (got ", threads, ")"));
  }
  if (!init_status_.ok()) return;

  const engine::ModelConfig& c = params->config();
  absl::StatusOr<ModelTensors> tensors = FindModelTensors(*params, "TrainingModel");
  if (!tensors.ok()) {
    init_status_ = tensors.status();
    return;
  }
  embed_ = tensors->embed;
  final_norm_ = tensors->final_norm;
  lm_head_ = tensors->lm_head;
  layer_tensors_ = std::move(tensors->layers);
  quantized_size_ = tensors->quantized_size;

  pool_ = std::make_unique<sefp::ThreadPool>(threads);
  openblas_set_num_threads(threads);

  const int64_t half = c.head_dim / 2;
  rope_cos_.resize(max_seq * half);
  rope_sin_.resize(max_seq * half);
  const std::vector<float> inv_freq = engine::RopeInverseFrequencies(c);
  ops::RopeTables(inv_freq.data(), half, max_seq, rope_cos_.data(), rope_sin_.data());

  const int64_t N = max_batch * max_seq, H = c.hidden_size, I = c.intermediate_size,
                QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab_size, L = c.num_layers;
  const int64_t per_layer = N * (2 * H + 2 + 2 * QD + 2 * KVD + c.num_heads + 2 * I);
  saved_.resize(L * per_layer + N * (2 * H + 1 + V));
  float* at = saved_.data();
  auto take = [&at](int64_t count) {
    float* p = at;
    at += count;
    return p;
  };
  for (int64_t l = 0; l < L; ++l) {
    LayerSaved s;
    s.x_in = take(N * H);
    s.r1 = take(N);
    s.q = take(N * QD);
    s.k = take(N * KVD);
    s.v = take(N * KVD);
    s.att = take(N * QD);
    s.lse = take(N * c.num_heads);
    s.x_mid = take(N * H);
    s.r2 = take(N);
    s.g = take(N * I);
    s.u = take(N * I);
    layers_.push_back(s);
  }
  x_final_ = take(N * H);
  r_final_ = take(N);
  xf_ = take(N * H);
  logits_ = take(N * V);

  scratch_.resize(N * (3 * H + 2 * QD + 2 * KVD + 3 * I) + std::min(N, kLogitChunk) * V);
  at = scratch_.data();
  h_ = take(N * H);
  a_ = take(N * I);
  dx_ = take(N * H);
  dh_ = take(N * H);
  dq_ = take(N * QD);
  dk_ = take(N * KVD);
  dv_ = take(N * KVD);
  datt_ = take(N * QD);
  dg_ = take(N * I);
  du_ = take(N * I);
  dlogits_ = take(std::min(N, kLogitChunk) * V);
}

TrainingModel::~TrainingModel() = default;

absl::Status CheckTrainingBatch(const Batch& batch, int64_t max_batch, int64_t max_seq,
                                int64_t vocab) {
  if (batch.batch_size < 1 || batch.batch_size > max_batch) {
    return absl::InvalidArgumentError(absl::StrCat("batch has ", batch.batch_size,
                                                   " rows; this model takes 1..", max_batch));
  }
  if (batch.seq_len < 1 || batch.seq_len > max_seq) {
    return absl::InvalidArgumentError(absl::StrCat("batch has ", batch.seq_len,
                                                   " positions per row; this model takes 1..",
                                                   max_seq));
  }
  const size_t n = static_cast<size_t>(batch.batch_size * batch.seq_len);
  if (batch.inputs.size() != n || batch.targets.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "batch of ", batch.batch_size, " x ", batch.seq_len, " has ", batch.inputs.size(),
        " inputs and ", batch.targets.size(), " targets; expected ", n, " each"));
  }
  for (size_t i = 0; i < n; ++i) {
    if (batch.inputs[i] < 0 || batch.inputs[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch input token ", batch.inputs[i], " at row ", i / batch.seq_len,
                       ", position ", i % batch.seq_len, " is outside the vocabulary [0, ",
                       vocab, ")"));
    }
    const int32_t t = batch.targets[i];
    if (t != kIgnoreTarget && (t < 0 || t >= vocab)) {
      return absl::InvalidArgumentError(
          absl::StrCat("batch target ", t, " at row ", i / batch.seq_len, ", position ",
                       i % batch.seq_len, " is neither ", kIgnoreTarget,
                       " (ignored) nor in the vocabulary [0, ", vocab, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status TrainingModel::CheckBatch(const Batch& batch) const {
  return CheckTrainingBatch(batch, max_batch_, max_seq_, params_->config().vocab_size);
}

absl::Status TrainingModel::PrepareWeights(const Precision& precision) {
  use_quantized_ = false;
  if (!precision.quantized) return absl::OkStatus();
  OTARO_RETURN_IF_ERROR(sefp::CheckPrecision(precision.m));
  quantized_.resize(quantized_size_);
  absl::Span<const float> values = params_->values();
  std::mutex mu;
  absl::Status first_error;
  for (const LayerTensors& lt : layer_tensors_) {
    for (int i = 0; i < 7; ++i) {
      const Parameters::Tensor& t = *lt.linear[i];
      const int64_t rows = t.shape[0], cols = t.shape[1];
      // Groups never cross rows, so row ranges quantize independently.
      ops::ParallelFor(pool_.get(), rows, [&](int64_t begin, int64_t end) {
        absl::Status s = sefp::FakeQuantize(
            t.name, values.subspan(t.offset + begin * cols, (end - begin) * cols), end - begin,
            cols, precision.m, precision.mode,
            absl::MakeSpan(quantized_).subspan(lt.qoffset[i] + begin * cols, (end - begin) * cols));
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (first_error.ok()) first_error = s;
        }
      });
      OTARO_RETURN_IF_ERROR(first_error);
    }
  }
  use_quantized_ = true;
  return absl::OkStatus();
}

const float* TrainingModel::LinearWeight(int64_t layer, int which) const {
  const LayerTensors& lt = layer_tensors_[layer];
  return use_quantized_ ? quantized_.data() + lt.qoffset[which]
                        : params_->values().data() + lt.linear[which]->offset;
}

absl::StatusOr<std::pair<double, int64_t>> TrainingModel::RunForward(const Batch& batch,
                                                                     const Precision& precision) {
  OTARO_RETURN_IF_ERROR(init_status_);
  have_forward_ = false;
  OTARO_RETURN_IF_ERROR(CheckBatch(batch));
  OTARO_RETURN_IF_ERROR(PrepareWeights(precision));

  const engine::ModelConfig& c = params_->config();
  const int64_t B = batch.batch_size, T = batch.seq_len, N = B * T, H = c.hidden_size,
                I = c.intermediate_size, QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab_size;
  const float* P = params_->values().data();
  sefp::ThreadPool* pool = pool_.get();
  const ops::AttentionShape shape{B, T, c.num_heads, c.num_kv_heads, c.head_dim};
  const float* bias_none = nullptr;

  const float* embed = P + embed_->offset;
  float* x0 = layers_.empty() ? x_final_ : layers_[0].x_in;
  ops::ParallelFor(pool, N, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::memcpy(x0 + r * H, embed + static_cast<int64_t>(batch.inputs[r]) * H, H * sizeof(float));
    }
  });

  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerSaved& s = layers_[l];
    const LayerTensors& lt = layer_tensors_[l];
    float* x_out = l + 1 < layers_.size() ? layers_[l + 1].x_in : x_final_;
    auto bias = [&](int i) { return lt.bias[i] ? P + lt.bias[i]->offset : bias_none; };

    ops::RmsNormForward(s.x_in, P + lt.input_norm->offset, N, H, c.rms_norm_eps, h_, s.r1, pool);
    ops::LinearForward(h_, LinearWeight(l, kQ), bias(0), N, H, QD, false, s.q);
    ops::LinearForward(h_, LinearWeight(l, kK), bias(1), N, H, KVD, false, s.k);
    ops::LinearForward(h_, LinearWeight(l, kV), bias(2), N, H, KVD, false, s.v);
    ops::Rope(s.q, N, T, c.num_heads, c.head_dim, rope_cos_.data(), rope_sin_.data(), false, pool);
    ops::Rope(s.k, N, T, c.num_kv_heads, c.head_dim, rope_cos_.data(), rope_sin_.data(), false,
              pool);
    ops::AttentionForward(s.q, s.k, s.v, shape, s.att, s.lse, pool);
    std::memcpy(s.x_mid, s.x_in, N * H * sizeof(float));
    ops::LinearForward(s.att, LinearWeight(l, kO), bias_none, N, QD, H, true, s.x_mid);

    ops::RmsNormForward(s.x_mid, P + lt.post_norm->offset, N, H, c.rms_norm_eps, h_, s.r2, pool);
    ops::LinearForward(h_, LinearWeight(l, kGate), bias_none, N, H, I, false, s.g);
    ops::LinearForward(h_, LinearWeight(l, kUp), bias_none, N, H, I, false, s.u);
    ops::SwiGluForward(s.g, s.u, N * I, a_, pool);
    std::memcpy(x_out, s.x_mid, N * H * sizeof(float));
    ops::LinearForward(a_, LinearWeight(l, kDown), bias_none, N, I, H, true, x_out);
  }

  ops::RmsNormForward(x_final_, P + final_norm_->offset, N, H, c.rms_norm_eps, xf_, r_final_,
                      pool);
  ops::LinearForward(xf_, P + lm_head_->offset, bias_none, N, H, V, false, logits_);
  logit_rows_ = N;
  return ops::CrossEntropyForward(logits_, batch.targets.data(), N, V, pool);
}

absl::StatusOr<double> TrainingModel::Forward(const Batch& batch, const Precision& precision) {
  OTARO_ASSIGN_OR_RETURN(auto nll, RunForward(batch, precision));
  batch_ = batch;
  scored_ = nll.second;
  have_forward_ = true;
  return scored_ == 0 ? 0.0 : nll.first / scored_;
}

absl::StatusOr<std::pair<double, int64_t>> TrainingModel::EvalNll(const Batch& batch,
                                                                  const Precision& precision) {
  return RunForward(batch, precision);
}

absl::Span<const float> TrainingModel::logits() const {
  return absl::MakeConstSpan(logits_, logit_rows_ * (params_ ? params_->config().vocab_size : 0));
}

absl::Status TrainingModel::Backward(float scale, absl::Span<float> grads) {
  OTARO_RETURN_IF_ERROR(init_status_);
  if (!have_forward_) {
    return absl::FailedPreconditionError(
        "TrainingModel::Backward needs a Forward first (EvalNll does not keep activations)");
  }
  if (grads.size() != params_->values().size()) {
    return absl::InvalidArgumentError(absl::StrCat("gradient buffer has ", grads.size(),
                                                   " values; the parameters have ",
                                                   params_->values().size()));
  }
  if (scored_ == 0) return absl::OkStatus();  // the loss is the constant 0

  const engine::ModelConfig& c = params_->config();
  const int64_t B = batch_.batch_size, T = batch_.seq_len, N = B * T, H = c.hidden_size,
                I = c.intermediate_size, QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab_size;
  const float* P = params_->values().data();
  float* G = grads.data();
  sefp::ThreadPool* pool = pool_.get();
  const ops::AttentionShape shape{B, T, c.num_heads, c.num_kv_heads, c.head_dim};
  float* no_bias_grad = nullptr;

  // Loss -> logits -> final norm output, in row chunks.
  const double ce_scale = static_cast<double>(scale) / scored_;
  for (int64_t r0 = 0; r0 < N; r0 += kLogitChunk) {
    const int64_t rows = std::min(kLogitChunk, N - r0);
    ops::CrossEntropyBackward(logits_ + r0 * V, batch_.targets.data() + r0, rows, V, ce_scale,
                              dlogits_, pool);
    ops::LinearBackward(dlogits_, xf_ + r0 * H, P + lm_head_->offset, rows, H, V, dh_ + r0 * H,
                        false, G + lm_head_->offset, no_bias_grad, pool);
  }
  std::fill_n(dx_, N * H, 0.0f);
  ops::RmsNormBackward(dh_, x_final_, P + final_norm_->offset, r_final_, N, H, dx_,
                       G + final_norm_->offset, pool);

  // dx_ holds dL/d(residual) flowing down through the layers.
  for (int64_t l = static_cast<int64_t>(layers_.size()) - 1; l >= 0; --l) {
    const LayerSaved& s = layers_[l];
    const LayerTensors& lt = layer_tensors_[l];
    auto grad = [&](int i) { return G + lt.linear[i]->offset; };
    auto bias_grad = [&](int i) { return lt.bias[i] ? G + lt.bias[i]->offset : no_bias_grad; };

    // MLP: recompute its normalized input and the SwiGLU output.
    ops::RmsNormForward(s.x_mid, P + lt.post_norm->offset, N, H, c.rms_norm_eps, h_, s.r2, pool);
    ops::SwiGluForward(s.g, s.u, N * I, a_, pool);
    ops::LinearBackward(dx_, a_, LinearWeight(l, kDown), N, I, H, du_, false, grad(kDown),
                        no_bias_grad, pool);
    ops::SwiGluBackward(s.g, s.u, du_, N * I, dg_, du_, pool);
    ops::LinearBackward(dg_, h_, LinearWeight(l, kGate), N, H, I, dh_, false, grad(kGate),
                        no_bias_grad, pool);
    ops::LinearBackward(du_, h_, LinearWeight(l, kUp), N, H, I, dh_, true, grad(kUp),
                        no_bias_grad, pool);
    ops::RmsNormBackward(dh_, s.x_mid, P + lt.post_norm->offset, s.r2, N, H, dx_,
                         G + lt.post_norm->offset, pool);

    // Attention.
    ops::RmsNormForward(s.x_in, P + lt.input_norm->offset, N, H, c.rms_norm_eps, h_, s.r1, pool);
    ops::LinearBackward(dx_, s.att, LinearWeight(l, kO), N, QD, H, datt_, false, grad(kO),
                        no_bias_grad, pool);
    ops::AttentionBackward(s.q, s.k, s.v, s.att, s.lse, datt_, shape, dq_, dk_, dv_, pool);
    ops::Rope(dq_, N, T, c.num_heads, c.head_dim, rope_cos_.data(), rope_sin_.data(), true, pool);
    ops::Rope(dk_, N, T, c.num_kv_heads, c.head_dim, rope_cos_.data(), rope_sin_.data(), true,
              pool);
    ops::LinearBackward(dq_, h_, LinearWeight(l, kQ), N, H, QD, dh_, false, grad(kQ), bias_grad(0),
                        pool);
    ops::LinearBackward(dk_, h_, LinearWeight(l, kK), N, H, KVD, dh_, true, grad(kK),
                        bias_grad(1), pool);
    ops::LinearBackward(dv_, h_, LinearWeight(l, kV), N, H, KVD, dh_, true, grad(kV),
                        bias_grad(2), pool);
    ops::RmsNormBackward(dh_, s.x_in, P + lt.input_norm->offset, s.r1, N, H, dx_,
                         G + lt.input_norm->offset, pool);
  }

  // Embedding rows, by columns so that repeated tokens never race.
  float* dembed = G + embed_->offset;
  ops::ParallelFor(pool, H, [&](int64_t begin, int64_t end) {
    for (int64_t r = 0; r < N; ++r) {
      float* row = dembed + static_cast<int64_t>(batch_.inputs[r]) * H;
      const float* d = dx_ + r * H;
      for (int64_t i = begin; i < end; ++i) row[i] += d[i];
    }
  });
  return absl::OkStatus();
}

TrainingMemory TrainingModel::Memory() const {
  TrainingMemory m;
  m.activation_bytes = static_cast<int64_t>(saved_.size() * sizeof(float));
  m.scratch_bytes = static_cast<int64_t>(
      (scratch_.size() + rope_cos_.size() + rope_sin_.size()) * sizeof(float));
  m.quantized_weight_bytes = static_cast<int64_t>(quantized_.size() * sizeof(float));
  m.parameter_bytes =
      params_ ? static_cast<int64_t>(params_->values().size() * sizeof(float)) : 0;
  return m;
}

}  // namespace otaro::trainer
