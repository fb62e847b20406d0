#include "trainer/cuda/cuda_training_model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "sefp/fake_quant.h"
#include "sefp/format.h"
#include "trainer/cuda/fake_quant_kernel.h"
#include "trainer/cuda/kernels.h"
#include "trainer/model/ops.h"

namespace otaro::trainer {
namespace {

// Rows of logits whose gradient is formed at once in the backward: bounds the
// dlogits buffer to kLogitChunk x vocab while keeping the GEMMs large.
constexpr int64_t kLogitChunk = 512;

// cuBLASLt's workspace (its heuristic picks algorithms that fit).
constexpr size_t kMatmulWorkspaceBytes = size_t{32} << 20;

// Buffer views start on 256-byte boundaries, which lets cuBLASLt use its
// fastest algorithms.
constexpr int64_t kViewAlignBytes = 256;


// Hands out consecutive, aligned views of one device buffer; with no buffer
// (nullptr) it only counts, which sizes the buffer for the same sequence.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* Take(int64_t count) {
    const int64_t at = used_;
    const int64_t bytes = count * static_cast<int64_t>(sizeof(T));
    used_ += (bytes + kViewAlignBytes - 1) / kViewAlignBytes * kViewAlignBytes;
    return base_ == nullptr ? nullptr : reinterpret_cast<T*>(base_ + at);
  }
  int64_t used() const { return used_; }

 private:
  char* base_;
  int64_t used_ = 0;
};

}  // namespace

CudaTrainingModel::CudaTrainingModel(const Parameters* params, int64_t max_batch,
                                     int64_t max_seq)
    : params_(params), max_batch_(max_batch), max_seq_(max_seq) {}

CudaTrainingModel::~CudaTrainingModel() = default;

absl::StatusOr<std::unique_ptr<CudaTrainingModel>> CudaTrainingModel::Create(
    const Parameters* params, int64_t max_batch, int64_t max_seq, int device) {
  if (params == nullptr) return absl::InvalidArgumentError("CudaTrainingModel: no parameters");
  if (max_batch < 1 || max_seq < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CudaTrainingModel: max_batch and max_seq must be >= 1 (got ", max_batch,
                     ", ", max_seq, ")"));
  }
  std::unique_ptr<CudaTrainingModel> model(new CudaTrainingModel(params, max_batch, max_seq));
  OTARO_RETURN_IF_ERROR(model->Init(device));
  return model;
}

absl::Status CudaTrainingModel::Init(int device) {
  const engine::ModelConfig& c = params_->config();
  if (c.head_dim > cuda::kernels::kMaxHeadDim || c.head_dim < 2 || c.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CudaTrainingModel: head_dim ", c.head_dim,
                     " is not supported (even, at most ", cuda::kernels::kMaxHeadDim, ")"));
  }
  if (c.num_kv_heads < 1 || c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("CudaTrainingModel: ", c.num_heads,
                                                   " heads do not split into ", c.num_kv_heads,
                                                   " kv heads"));
  }
  OTARO_ASSIGN_OR_RETURN(ModelTensors tensors, FindModelTensors(*params_, "CudaTrainingModel"));
  embed_ = tensors.embed;
  final_norm_ = tensors.final_norm;
  lm_head_ = tensors.lm_head;
  layer_tensors_ = std::move(tensors.layers);
  quantized_size_ = tensors.quantized_size;

  OTARO_ASSIGN_OR_RETURN(context_, cuda::DeviceContext::Create(device));
  OTARO_ASSIGN_OR_RETURN(matmul_, cuda::Matmul::Create(context_.get(), kMatmulWorkspaceBytes));

  const int64_t N = max_batch_ * max_seq_, H = c.hidden_size, I = c.intermediate_size,
                QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab_size, L = c.num_layers,
                half = c.head_dim / 2;
  const int64_t P = static_cast<int64_t>(params_->values().size());
  logit_chunk_ = std::min(N, kLogitChunk);

  auto allocate = [&](cuda::DeviceBuffer* buffer, int64_t bytes, const char* what) {
    OTARO_ASSIGN_OR_RETURN(*buffer, context_->Allocate(static_cast<size_t>(bytes), what));
    return absl::OkStatus();
  };
  OTARO_RETURN_IF_ERROR(allocate(&params_dev_, P * 4, "the master weights"));
  OTARO_RETURN_IF_ERROR(allocate(&grads_dev_, P * 4, "the gradient"));
  OTARO_RETURN_IF_ERROR(allocate(&non_finite_dev_, 7 * L * 8, "the fake quantization flags"));
  OTARO_RETURN_IF_ERROR(allocate(&rope_dev_, 2 * max_seq_ * half * 4, "the RoPE tables"));
  OTARO_RETURN_IF_ERROR(allocate(&tokens_dev_, 2 * N * 4, "the batch tokens"));
  OTARO_RETURN_IF_ERROR(allocate(&nll_dev_, N * 8, "the per-token losses"));

  // Saved activations: sized by a dry run of the same carving.
  auto carve_saved = [&](Carver& carver) {
    layers_.clear();
    for (int64_t l = 0; l < L; ++l) {
      LayerSaved s;
      s.x_in = carver.Take<float>(N * H);
      s.r1 = carver.Take<float>(N);
      s.q = carver.Take<float>(N * QD);
      s.k = carver.Take<float>(N * KVD);
      s.v = carver.Take<float>(N * KVD);
      s.att = carver.Take<float>(N * QD);
      s.lse = carver.Take<float>(N * c.num_heads);
      s.x_mid = carver.Take<float>(N * H);
      s.r2 = carver.Take<float>(N);
      s.g = carver.Take<float>(N * I);
      s.u = carver.Take<float>(N * I);
      layers_.push_back(s);
    }
    x_final_ = carver.Take<float>(N * H);
    r_final_ = carver.Take<float>(N);
    xf_ = carver.Take<float>(N * H);
    logits_ = carver.Take<float>(N * V);
  };
  auto carve_scratch = [&](Carver& carver) {
    h_ = carver.Take<float>(N * H);
    a_ = carver.Take<float>(N * I);
    dx_ = carver.Take<float>(N * H);
    dh_ = carver.Take<float>(N * H);
    dq_ = carver.Take<float>(N * QD);
    dk_ = carver.Take<float>(N * KVD);
    dv_ = carver.Take<float>(N * KVD);
    datt_ = carver.Take<float>(N * QD);
    dg_ = carver.Take<float>(N * I);
    du_ = carver.Take<float>(N * I);
    delta_ = carver.Take<float>(N * c.num_heads);
    dlogits_ = carver.Take<float>(logit_chunk_ * V);
  };
  Carver saved_size(nullptr), scratch_size(nullptr);
  carve_saved(saved_size);
  carve_scratch(scratch_size);
  OTARO_RETURN_IF_ERROR(allocate(&saved_dev_, saved_size.used(), "the saved activations"));
  OTARO_RETURN_IF_ERROR(allocate(&scratch_dev_, scratch_size.used(), "the working buffers"));
  Carver saved(saved_dev_.as<void>()), scratch(scratch_dev_.as<void>());
  carve_saved(saved);
  carve_scratch(scratch);

  // The RoPE tables, computed as the CPU model computes them.
  std::vector<float> tables(2 * max_seq_ * half);
  const std::vector<float> inv_freq = engine::RopeInverseFrequencies(c);
  ops::RopeTables(inv_freq.data(), half, max_seq_, tables.data(), tables.data() + max_seq_ * half);
  OTARO_RETURN_IF_ERROR(context_->CopyToDevice(rope_dev_.as<void>(), tables.data(),
                                               tables.size() * sizeof(float), "the RoPE tables"));
  return context_->Synchronize("uploading the RoPE tables");
}

absl::Status CudaTrainingModel::PrepareWeights(const Precision& precision) {
  use_quantized_ = false;
  if (!precision.quantized) return absl::OkStatus();
  OTARO_RETURN_IF_ERROR(sefp::CheckPrecision(precision.m));
  if (quantized_dev_.empty() && quantized_size_ > 0) {
    OTARO_ASSIGN_OR_RETURN(quantized_dev_,
                           context_->Allocate(static_cast<size_t>(quantized_size_) * sizeof(float),
                                              "the Q(W, m) cache"));
  }
  auto* flags = non_finite_dev_.as<unsigned long long>();
  const size_t flag_count = layer_tensors_.size() * 7;
  OTARO_RETURN_IF_ERROR(context_->Fill(flags, 0xff, flag_count * sizeof(unsigned long long),
                                       "the fake quantization flags"));
  for (size_t l = 0; l < layer_tensors_.size(); ++l) {
    const LayerTensors& lt = layer_tensors_[l];
    for (int i = 0; i < 7; ++i) {
      const Parameters::Tensor& t = *lt.linear[i];
      OTARO_RETURN_IF_ERROR(cuda::LaunchFakeQuantize(
          context_->stream(), Param(t.offset), t.shape[0], t.shape[1], precision.m,
          precision.mode, quantized_dev_.as<float>() + lt.qoffset[i], flags + l * 7 + i));
    }
  }
  // Refuse NaN / Inf weights as the CPU model does, naming the first one.
  std::vector<unsigned long long> first_bad(flag_count);
  OTARO_RETURN_IF_ERROR(context_->CopyToHost(first_bad.data(), flags,
                                             flag_count * sizeof(unsigned long long),
                                             "the fake quantization flags"));
  for (size_t f = 0; f < flag_count; ++f) {
    if (first_bad[f] == cuda::kNoNonFinite) continue;
    const Parameters::Tensor& t = *layer_tensors_[f / 7].linear[f % 7];
    const int64_t at = static_cast<int64_t>(first_bad[f]);
    return sefp::NonFiniteWeightError(t.name, params_->values()[t.offset + at], at / t.shape[1],
                                      at % t.shape[1]);
  }
  use_quantized_ = true;
  return absl::OkStatus();
}

const float* CudaTrainingModel::LinearWeight(int64_t layer, int which) const {
  const LayerTensors& lt = layer_tensors_[layer];
  return use_quantized_ ? quantized_dev_.as<float>() + lt.qoffset[which]
                        : Param(lt.linear[which]->offset);
}

absl::Status CudaTrainingModel::Linear(const float* x, const float* w, const float* bias,
                                       int64_t n, int64_t in, int64_t out, bool accumulate,
                                       float* y) {
  if (bias != nullptr) {
    OTARO_RETURN_IF_ERROR(cuda::kernels::BiasRows(context_->stream(), bias, n, out, accumulate, y));
    accumulate = true;
  }
  return matmul_->Gemm(false, true, n, out, in, 1.0f, x, in, w, in, accumulate ? 1.0f : 0.0f, y,
                       out);
}

absl::Status CudaTrainingModel::LinearBackward(const float* dy, const float* x, const float* w,
                                               int64_t n, int64_t in, int64_t out, float* dx,
                                               bool accumulate_dx, float* dw, float* dbias) {
  if (dx != nullptr) {
    OTARO_RETURN_IF_ERROR(matmul_->Gemm(false, false, n, in, out, 1.0f, dy, out, w, in,
                                        accumulate_dx ? 1.0f : 0.0f, dx, in));
  }
  OTARO_RETURN_IF_ERROR(matmul_->Gemm(true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in));
  if (dbias != nullptr) {
    OTARO_RETURN_IF_ERROR(cuda::kernels::AddColumnSums(context_->stream(), dy, n, out, dbias));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<double, int64_t>> CudaTrainingModel::RunForward(
    const Batch& batch, const Precision& precision) {
  have_forward_ = false;
  logits_host_valid_ = false;
  logit_rows_ = 0;
  const engine::ModelConfig& c = params_->config();
  OTARO_RETURN_IF_ERROR(CheckTrainingBatch(batch, max_batch_, max_seq_, c.vocab_size));
  OTARO_RETURN_IF_ERROR(context_->Activate());

  const int64_t B = batch.batch_size, T = batch.seq_len, N = B * T, H = c.hidden_size,
                I = c.intermediate_size, QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab_size;
  const int64_t max_rows = max_batch_ * max_seq_, half = c.head_dim / 2;
  cuda::Stream stream = context_->stream();
  const cuda::kernels::AttentionShape shape{B, T, c.num_heads, c.num_kv_heads, c.head_dim};
  const float* rope_cos = rope_dev_.as<float>();
  const float* rope_sin = rope_cos + max_seq_ * half;
  int32_t* inputs = tokens_dev_.as<int32_t>();
  int32_t* targets = inputs + max_rows;

  OTARO_RETURN_IF_ERROR(context_->CopyToDevice(params_dev_.as<void>(), params_->values().data(),
                                               params_->values().size() * sizeof(float),
                                               "the master weights"));
  OTARO_RETURN_IF_ERROR(PrepareWeights(precision));
  OTARO_RETURN_IF_ERROR(
      context_->CopyToDevice(inputs, batch.inputs.data(), N * sizeof(int32_t), "the batch inputs"));
  OTARO_RETURN_IF_ERROR(context_->CopyToDevice(targets, batch.targets.data(), N * sizeof(int32_t),
                                               "the batch targets"));

  float* x0 = layers_.empty() ? x_final_ : layers_[0].x_in;
  OTARO_RETURN_IF_ERROR(
      cuda::kernels::EmbeddingForward(stream, Param(embed_->offset), inputs, N, H, x0));

  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerSaved& s = layers_[l];
    const LayerTensors& lt = layer_tensors_[l];
    float* x_out = l + 1 < layers_.size() ? layers_[l + 1].x_in : x_final_;
    auto bias = [&](int i) -> const float* {
      return lt.bias[i] ? Param(lt.bias[i]->offset) : nullptr;
    };

    OTARO_RETURN_IF_ERROR(cuda::kernels::RmsNormForward(
        stream, s.x_in, Param(lt.input_norm->offset), N, H, c.rms_norm_eps, h_, s.r1));
    OTARO_RETURN_IF_ERROR(Linear(h_, LinearWeight(l, kQ), bias(0), N, H, QD, false, s.q));
    OTARO_RETURN_IF_ERROR(Linear(h_, LinearWeight(l, kK), bias(1), N, H, KVD, false, s.k));
    OTARO_RETURN_IF_ERROR(Linear(h_, LinearWeight(l, kV), bias(2), N, H, KVD, false, s.v));
    OTARO_RETURN_IF_ERROR(cuda::kernels::Rope(stream, s.q, N, T, c.num_heads, c.head_dim, rope_cos,
                                              rope_sin, false));
    OTARO_RETURN_IF_ERROR(cuda::kernels::Rope(stream, s.k, N, T, c.num_kv_heads, c.head_dim,
                                              rope_cos, rope_sin, false));
    OTARO_RETURN_IF_ERROR(cuda::kernels::AttentionForward(stream, s.q, s.k, s.v, shape, s.att,
                                                          s.lse));
    OTARO_RETURN_IF_ERROR(
        context_->CopyOnDevice(s.x_mid, s.x_in, N * H * sizeof(float), "the residual stream"));
    OTARO_RETURN_IF_ERROR(Linear(s.att, LinearWeight(l, kO), nullptr, N, QD, H, true, s.x_mid));

    OTARO_RETURN_IF_ERROR(cuda::kernels::RmsNormForward(
        stream, s.x_mid, Param(lt.post_norm->offset), N, H, c.rms_norm_eps, h_, s.r2));
    OTARO_RETURN_IF_ERROR(Linear(h_, LinearWeight(l, kGate), nullptr, N, H, I, false, s.g));
    OTARO_RETURN_IF_ERROR(Linear(h_, LinearWeight(l, kUp), nullptr, N, H, I, false, s.u));
    OTARO_RETURN_IF_ERROR(cuda::kernels::SwiGluForward(stream, s.g, s.u, N * I, a_));
    OTARO_RETURN_IF_ERROR(
        context_->CopyOnDevice(x_out, s.x_mid, N * H * sizeof(float), "the residual stream"));
    OTARO_RETURN_IF_ERROR(Linear(a_, LinearWeight(l, kDown), nullptr, N, I, H, true, x_out));
  }

  OTARO_RETURN_IF_ERROR(cuda::kernels::RmsNormForward(stream, x_final_, Param(final_norm_->offset),
                                                      N, H, c.rms_norm_eps, xf_, r_final_));
  OTARO_RETURN_IF_ERROR(Linear(xf_, Param(lm_head_->offset), nullptr, N, H, V, false, logits_));
  OTARO_RETURN_IF_ERROR(cuda::kernels::CrossEntropyForward(stream, logits_, targets, N, V,
                                                           nll_dev_.as<double>()));
  nll_host_.resize(N);
  OTARO_RETURN_IF_ERROR(context_->CopyToHost(nll_host_.data(), nll_dev_.as<void>(),
                                             N * sizeof(double), "the per-token losses"));
  logit_rows_ = N;
  // Summed in row order on the host, as the CPU model sums.
  double total = 0;
  for (double v : nll_host_) total += v;
  return std::make_pair(total, batch.ScoredTokens());
}

absl::StatusOr<double> CudaTrainingModel::Forward(const Batch& batch, const Precision& precision) {
  OTARO_ASSIGN_OR_RETURN(auto nll, RunForward(batch, precision));
  batch_ = batch;
  scored_ = nll.second;
  have_forward_ = true;
  return scored_ == 0 ? 0.0 : nll.first / scored_;
}

absl::StatusOr<std::pair<double, int64_t>> CudaTrainingModel::EvalNll(
    const Batch& batch, const Precision& precision) {
  return RunForward(batch, precision);
}

absl::Span<const float> CudaTrainingModel::logits() const {
  const int64_t count = logit_rows_ * params_->config().vocab_size;
  if (count == 0) return {};
  if (!logits_host_valid_) {
    logits_host_.resize(count);
    absl::Status s = context_->Activate();
    if (s.ok()) {
      s = context_->CopyToHost(logits_host_.data(), logits_, count * sizeof(float), "the logits");
    }
    if (!s.ok()) {
      OTARO_LOG_WARN("CudaTrainingModel::logits: {}", std::string(s.message()));
      return {};
    }
    logits_host_valid_ = true;
  }
  return absl::MakeConstSpan(logits_host_.data(), count);
}

absl::Status CudaTrainingModel::Backward(float scale, absl::Span<float> grads) {
  if (!have_forward_) {
    return absl::FailedPreconditionError(
        "CudaTrainingModel::Backward needs a Forward first (EvalNll does not keep activations)");
  }
  if (grads.size() != params_->values().size()) {
    return absl::InvalidArgumentError(absl::StrCat("gradient buffer has ", grads.size(),
                                                   " values; the parameters have ",
                                                   params_->values().size()));
  }
  if (scored_ == 0) return absl::OkStatus();  // the loss is the constant 0
  OTARO_RETURN_IF_ERROR(context_->Activate());
  OTARO_RETURN_IF_ERROR(
      context_->Fill(grads_dev_.as<void>(), 0, grads_dev_.bytes(), "the device gradient"));
  OTARO_RETURN_IF_ERROR(RunBackward(scale));
  grad_host_.resize(grads.size());
  OTARO_RETURN_IF_ERROR(context_->CopyToHost(grad_host_.data(), grads_dev_.as<void>(),
                                             grads_dev_.bytes(), "the gradient"));
  for (size_t i = 0; i < grads.size(); ++i) grads[i] += grad_host_[i];
  return absl::OkStatus();
}

absl::Status CudaTrainingModel::RunBackward(float scale) {
  const engine::ModelConfig& c = params_->config();
  const int64_t B = batch_.batch_size, T = batch_.seq_len, N = B * T, H = c.hidden_size,
                I = c.intermediate_size, QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab_size;
  const int64_t max_rows = max_batch_ * max_seq_, half = c.head_dim / 2;
  cuda::Stream stream = context_->stream();
  const cuda::kernels::AttentionShape shape{B, T, c.num_heads, c.num_kv_heads, c.head_dim};
  const float* rope_cos = rope_dev_.as<float>();
  const float* rope_sin = rope_cos + max_seq_ * half;
  const int32_t* inputs = tokens_dev_.as<int32_t>();
  const int32_t* targets = inputs + max_rows;

  // Loss -> logits -> final norm output, in row chunks. `scale` is folded into
  // dlogits, so every gradient below comes out already scaled.
  const double ce_scale = static_cast<double>(scale) / scored_;
  for (int64_t r0 = 0; r0 < N; r0 += logit_chunk_) {
    const int64_t rows = std::min(logit_chunk_, N - r0);
    OTARO_RETURN_IF_ERROR(cuda::kernels::CrossEntropyBackward(stream, logits_ + r0 * V,
                                                              targets + r0, rows, V, ce_scale,
                                                              dlogits_));
    OTARO_RETURN_IF_ERROR(LinearBackward(dlogits_, xf_ + r0 * H, Param(lm_head_->offset), rows, H,
                                         V, dh_ + r0 * H, false, Grad(lm_head_->offset), nullptr));
  }
  OTARO_RETURN_IF_ERROR(context_->Fill(dx_, 0, N * H * sizeof(float), "the residual gradient"));
  OTARO_RETURN_IF_ERROR(cuda::kernels::RmsNormBackward(stream, dh_, x_final_,
                                                       Param(final_norm_->offset), r_final_, N, H,
                                                       dx_, Grad(final_norm_->offset)));

  // dx_ holds dL/d(residual) flowing down through the layers.
  for (int64_t l = static_cast<int64_t>(layers_.size()) - 1; l >= 0; --l) {
    const LayerSaved& s = layers_[l];
    const LayerTensors& lt = layer_tensors_[l];
    auto grad = [&](int i) { return Grad(lt.linear[i]->offset); };
    auto bias_grad = [&](int i) -> float* {
      return lt.bias[i] ? Grad(lt.bias[i]->offset) : nullptr;
    };

    // MLP: recompute its normalized input and the SwiGLU output.
    OTARO_RETURN_IF_ERROR(cuda::kernels::RmsNormForward(
        stream, s.x_mid, Param(lt.post_norm->offset), N, H, c.rms_norm_eps, h_, s.r2));
    OTARO_RETURN_IF_ERROR(cuda::kernels::SwiGluForward(stream, s.g, s.u, N * I, a_));
    OTARO_RETURN_IF_ERROR(LinearBackward(dx_, a_, LinearWeight(l, kDown), N, I, H, du_, false,
                                         grad(kDown), nullptr));
    OTARO_RETURN_IF_ERROR(cuda::kernels::SwiGluBackward(stream, s.g, s.u, du_, N * I, dg_, du_));
    OTARO_RETURN_IF_ERROR(LinearBackward(dg_, h_, LinearWeight(l, kGate), N, H, I, dh_, false,
                                         grad(kGate), nullptr));
    OTARO_RETURN_IF_ERROR(LinearBackward(du_, h_, LinearWeight(l, kUp), N, H, I, dh_, true,
                                         grad(kUp), nullptr));
    OTARO_RETURN_IF_ERROR(cuda::kernels::RmsNormBackward(stream, dh_, s.x_mid,
                                                         Param(lt.post_norm->offset), s.r2, N, H,
                                                         dx_, Grad(lt.post_norm->offset)));

    // Attention.
    OTARO_RETURN_IF_ERROR(cuda::kernels::RmsNormForward(
        stream, s.x_in, Param(lt.input_norm->offset), N, H, c.rms_norm_eps, h_, s.r1));
    OTARO_RETURN_IF_ERROR(LinearBackward(dx_, s.att, LinearWeight(l, kO), N, QD, H, datt_, false,
                                         grad(kO), nullptr));
    OTARO_RETURN_IF_ERROR(cuda::kernels::AttentionBackward(stream, s.q, s.k, s.v, s.att, s.lse,
                                                           datt_, shape, dq_, dk_, dv_, delta_));
    OTARO_RETURN_IF_ERROR(cuda::kernels::Rope(stream, dq_, N, T, c.num_heads, c.head_dim,
                                              rope_cos, rope_sin, true));
    OTARO_RETURN_IF_ERROR(cuda::kernels::Rope(stream, dk_, N, T, c.num_kv_heads, c.head_dim,
                                              rope_cos, rope_sin, true));
    OTARO_RETURN_IF_ERROR(LinearBackward(dq_, h_, LinearWeight(l, kQ), N, H, QD, dh_, false,
                                         grad(kQ), bias_grad(0)));
    OTARO_RETURN_IF_ERROR(LinearBackward(dk_, h_, LinearWeight(l, kK), N, H, KVD, dh_, true,
                                         grad(kK), bias_grad(1)));
    OTARO_RETURN_IF_ERROR(LinearBackward(dv_, h_, LinearWeight(l, kV), N, H, KVD, dh_, true,
                                         grad(kV), bias_grad(2)));
    OTARO_RETURN_IF_ERROR(cuda::kernels::RmsNormBackward(stream, dh_, s.x_in,
                                                         Param(lt.input_norm->offset), s.r1, N, H,
                                                         dx_, Grad(lt.input_norm->offset)));
  }

  return cuda::kernels::EmbeddingBackward(stream, dx_, inputs, N, H, Grad(embed_->offset));
}

TrainingMemory CudaTrainingModel::Memory() const {
  TrainingMemory m;
  m.activation_bytes = static_cast<int64_t>(saved_dev_.bytes());
  m.scratch_bytes = static_cast<int64_t>(scratch_dev_.bytes() + grads_dev_.bytes() +
                                         rope_dev_.bytes() + tokens_dev_.bytes() +
                                         nll_dev_.bytes() + non_finite_dev_.bytes() +
                                         (matmul_ ? matmul_->workspace_bytes() : 0));
  m.quantized_weight_bytes = static_cast<int64_t>(quantized_dev_.bytes());
  m.parameter_bytes = static_cast<int64_t>(params_dev_.bytes());
  return m;
}

}  // namespace otaro::trainer
