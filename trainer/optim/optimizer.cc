#include "trainer/optim/optimizer.h"

#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "trainer/optim/parallel.h"

namespace otaro::trainer {

absl::StatusOr<OptimizerKind> ParseOptimizerKind(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adamw") return OptimizerKind::kAdamW;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown optimizer '", text, "'; valid: sgd, adamw"));
}

absl::string_view OptimizerKindName(OptimizerKind kind) {
  return kind == OptimizerKind::kAdamW ? "adamw" : "sgd";
}

absl::Status ValidateOptimizerOptions(const OptimizerOptions& options) {
  auto in_unit = [](double x) { return x >= 0 && x < 1; };  // false for NaN
  if (!(options.weight_decay >= 0) || !std::isfinite(options.weight_decay)) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer weight_decay must be finite and >= 0, got ", options.weight_decay));
  }
  if (!in_unit(options.momentum)) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer momentum must be in [0, 1), got ", options.momentum));
  }
  if (!in_unit(options.beta1) || !in_unit(options.beta2)) {
    return absl::InvalidArgumentError(absl::StrCat("AdamW betas must be in [0, 1), got (",
                                                   options.beta1, ", ", options.beta2, ")"));
  }
  if (!(options.eps > 0) || !std::isfinite(options.eps)) {
    return absl::InvalidArgumentError(
        absl::StrCat("AdamW eps must be finite and > 0, got ", options.eps));
  }
  return absl::OkStatus();
}

// --- Optimizer ---------------------------------------------------------------

absl::Status Optimizer::Step(absl::Span<float> params, absl::Span<const float> grad, double lr) {
  if (static_cast<int64_t>(params.size()) != num_params_ ||
      static_cast<int64_t>(grad.size()) != num_params_) {
    return absl::InvalidArgumentError(absl::StrCat(name(), " step: ", params.size(),
                                                   " parameters and ", grad.size(),
                                                   " gradients, expected ", num_params_));
  }
  if (!(lr >= 0) || !std::isfinite(lr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name(), " step: learning rate must be finite and >= 0, got ", lr));
  }
  const int64_t step = steps_ + 1;
  float* p = params.data();
  const float* g = grad.data();
  optim_internal::ForRanges(pool_, num_params_, [&](int64_t begin, int64_t end) {
    UpdateRange(begin, end, p, g, lr, step);
  });
  steps_ = step;
  return absl::OkStatus();
}

std::vector<float>& Optimizer::AddBuffer(const std::string& name) {
  std::vector<float>& buffer = buffers_[name];
  buffer.assign(num_params_, 0.0f);
  return buffer;
}

OptimizerState Optimizer::ExportState() const {
  OptimizerState state;
  for (const auto& [name, buffer] : buffers_) state.buffers.push_back({name, buffer});
  state.counters["step"] = steps_;
  return state;
}

absl::Status Optimizer::ImportState(const OptimizerState& state) {
  auto error = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(name(), " optimizer state: ", why));
  };
  auto step = state.counters.find("step");
  if (step == state.counters.end() || step->second < 0) {
    return error("needs a 'step' counter >= 0");
  }
  if (state.counters.size() != 1) return error("unexpected counters besides 'step'");
  std::set<std::string> seen;
  for (const OptimizerState::Buffer& buffer : state.buffers) {
    if (!buffers_.count(buffer.name)) {
      return error(absl::StrCat("unexpected buffer '", buffer.name, "'"));
    }
    if (!seen.insert(buffer.name).second) {
      return error(absl::StrCat("buffer '", buffer.name, "' given twice"));
    }
    if (static_cast<int64_t>(buffer.values.size()) != num_params_) {
      return error(absl::StrCat("buffer '", buffer.name, "' has ", buffer.values.size(),
                                " values, expected ", num_params_));
    }
  }
  for (const auto& [name, unused] : buffers_) {
    if (!seen.count(name)) return error(absl::StrCat("missing buffer '", name, "'"));
  }
  for (const OptimizerState::Buffer& buffer : state.buffers) {
    std::vector<float>& target = buffers_.at(buffer.name);
    if (buffer.values.data() != target.data()) {
      target.assign(buffer.values.begin(), buffer.values.end());
    }
  }
  steps_ = step->second;
  return absl::OkStatus();
}

// --- SGD -----------------------------------------------------------------------

Sgd::Sgd(const OptimizerOptions& options, int64_t num_params, sefp::ThreadPool* pool)
    : Optimizer(num_params, pool),
      weight_decay_(static_cast<float>(options.weight_decay)),
      momentum_(static_cast<float>(options.momentum)) {
  // Zeros make the first update buf = g, as PyTorch's buffer-less first step.
  if (momentum_ != 0.0f) momentum_buffer_ = &AddBuffer("momentum_buffer");
}

void Sgd::UpdateRange(int64_t begin, int64_t end, float* params, const float* grad, double lr,
                      int64_t step) {
  const float lr_f = static_cast<float>(lr);
  const float wd = weight_decay_;
  if (momentum_ == 0.0f) {
    for (int64_t i = begin; i < end; ++i) params[i] -= lr_f * (grad[i] + wd * params[i]);
    return;
  }
  const float mu = momentum_;
  float* buf = momentum_buffer_->data();
  for (int64_t i = begin; i < end; ++i) {
    buf[i] = mu * buf[i] + (grad[i] + wd * params[i]);
    params[i] -= lr_f * buf[i];
  }
}

// --- AdamW ---------------------------------------------------------------------

AdamW::AdamW(const OptimizerOptions& options, int64_t num_params, sefp::ThreadPool* pool)
    : Optimizer(num_params, pool),
      options_(options),
      exp_avg_(AddBuffer("exp_avg")),
      exp_avg_sq_(AddBuffer("exp_avg_sq")) {}

void AdamW::UpdateRange(int64_t begin, int64_t end, float* params, const float* grad, double lr,
                        int64_t step) {
  // Step-wide scalars in double, then float per element as PyTorch does on float32.
  const double t = static_cast<double>(step);
  const float decay = static_cast<float>(1.0 - lr * options_.weight_decay);
  const float b1 = static_cast<float>(options_.beta1);
  const float b2 = static_cast<float>(options_.beta2);
  const float one_minus_b1 = static_cast<float>(1.0 - options_.beta1);
  const float one_minus_b2 = static_cast<float>(1.0 - options_.beta2);
  const float step_size = static_cast<float>(lr / (1.0 - std::pow(options_.beta1, t)));
  const float bias_correction2_sqrt =
      static_cast<float>(std::sqrt(1.0 - std::pow(options_.beta2, t)));
  const float eps = static_cast<float>(options_.eps);
  float* m = exp_avg_.data();
  float* v = exp_avg_sq_.data();
  for (int64_t i = begin; i < end; ++i) {
    const float g = grad[i];
    params[i] *= decay;
    m[i] = b1 * m[i] + one_minus_b1 * g;
    v[i] = b2 * v[i] + one_minus_b2 * g * g;
    const float denom = std::sqrt(v[i]) / bias_correction2_sqrt + eps;
    params[i] -= step_size * (m[i] / denom);
  }
}

// --- factory -------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const OptimizerOptions& options,
                                                           int64_t num_params,
                                                           sefp::ThreadPool* pool) {
  if (absl::Status s = ValidateOptimizerOptions(options); !s.ok()) return s;
  if (num_params < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("optimizer: the parameter count must be >= 0, got ", num_params));
  }
  switch (options.kind) {
    case OptimizerKind::kSgd:
      return std::unique_ptr<Optimizer>(new Sgd(options, num_params, pool));
    case OptimizerKind::kAdamW:
      return std::unique_ptr<Optimizer>(new AdamW(options, num_params, pool));
  }
  return absl::InvalidArgumentError("optimizer: unknown kind");
}

}  // namespace otaro::trainer
