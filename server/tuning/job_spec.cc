#include "server/tuning/job_spec.h"

#include <sys/stat.h>

#include <climits>
#include <cmath>
#include <cstdlib>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "trainer/strategy/strategy.h"

namespace otaro::server {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buffer[PATH_MAX];
  if (::realpath(path.c_str(), buffer) == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  }
  return std::string(buffer);
}

template <typename T>
bool InRange(T value, T low, T high) {
  return value >= low && value <= high;
}

}  // namespace

absl::Status FieldError(absl::string_view field, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(field, ": ", status.message()));
}

absl::StatusOr<std::string> ResolveDataPath(const std::string& root, absl::string_view relative) {
  if (relative.empty()) return absl::InvalidArgumentError("the data path is empty");
  if (absl::StartsWith(relative, "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data path '", relative, "' is absolute: give a path inside the server's data folder"));
  }
  for (absl::string_view part : absl::StrSplit(relative, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("data path '", relative, "' contains '..': not allowed"));
    }
  }
  if (relative.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("data path contains a NUL byte");
  }
  auto real_root = RealPath(root);
  if (!real_root.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server's data folder ", root, " does not exist"));
  }
  auto real = RealPath(absl::StrCat(*real_root, "/", relative));
  if (!real.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("data path '", relative, "' does not exist in the data folder"));
  }
  // Symlinks are resolved above: what they point to must still be inside.
  if (*real != *real_root && !absl::StartsWith(*real, *real_root + "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data path '", relative, "' leads outside the server's data folder (symlink?)"));
  }
  return *real;
}

absl::StatusOr<trainer::TuneOptions> TuneOptionsFromRequest(
    const otaro::v1::CreateTuningJobRequest& request, const JobEnvironment& environment) {
  trainer::TuneOptions options;
  options.threads = environment.threads;
  options.max_memory_bytes = environment.max_memory_bytes;

  // Dataset.
  const otaro::v1::Dataset& dataset = request.dataset();
  switch (dataset.source_case()) {
    case otaro::v1::Dataset::kPath: {
      if (environment.data_dir.empty()) {
        return Invalid("dataset.path", "this server has no data folder (tuning.data_dir): "
                                       "send the data inline instead");
      }
      auto path = ResolveDataPath(environment.data_dir, dataset.path());
      if (!path.ok()) return FieldError("dataset.path", path.status());
      options.data_path = *path;
      break;
    }
    case otaro::v1::Dataset::kInlineData:
      if (dataset.inline_data().empty()) return Invalid("dataset.inline_data", "is empty");
      if (static_cast<int64_t>(dataset.inline_data().size()) > environment.max_upload_bytes) {
        return Invalid("dataset.inline_data",
                       absl::StrCat(dataset.inline_data().size(), " bytes, over the cap of ",
                                    environment.max_upload_bytes,
                                    " (tuning.max_upload_bytes); put the file in the data "
                                    "folder and pass dataset.path"));
      }
      break;  // the worker writes it into the job's folder
    default:
      return Invalid("dataset", "set path (inside the data folder) or inline_data");
  }
  switch (dataset.format()) {
    case otaro::v1::DATASET_FORMAT_UNSPECIFIED:
      if (dataset.has_inline_data()) {
        return Invalid("dataset.format", "is required for inline data");
      }
      options.data_format = trainer::data::DataFormat::kAuto;
      break;
    case otaro::v1::DATASET_FORMAT_TEXT: options.data_format = trainer::data::DataFormat::kText; break;
    case otaro::v1::DATASET_FORMAT_ALPACA:
      options.data_format = trainer::data::DataFormat::kAlpaca;
      break;
    case otaro::v1::DATASET_FORMAT_CHAT: options.data_format = trainer::data::DataFormat::kChat; break;
    default: return Invalid("dataset.format", "unknown value");
  }

  // Evaluation.
  if (!request.evaluation().heldout_text_path().empty()) {
    auto path = ResolveDataPath(environment.data_dir, request.evaluation().heldout_text_path());
    if (!path.ok()) return FieldError("evaluation.heldout_text_path", path.status());
    options.eval_data_path = *path;
  }
  if (request.evaluation().max_items() > 0) {
    options.max_eval_batches = request.evaluation().max_items();
  }
  if (request.evaluation().zero_shot_tasks_size() > 0) {
    options.zero_shot_tasks.assign(request.evaluation().zero_shot_tasks().begin(),
                                   request.evaluation().zero_shot_tasks().end());
    if (absl::Status known = trainer::CheckZeroShotTasks(options.zero_shot_tasks); !known.ok()) {
      return Invalid("evaluation.zero_shot_tasks", known.message());
    }
    // The sets' files have fixed names inside this folder (eval/zero_shot.cc);
    // requests name sets, never paths.
    const std::string dir = !environment.zero_shot_dir.empty() ? environment.zero_shot_dir
                            : !environment.data_dir.empty()   ? environment.data_dir + "/eval"
                                                              : "";
    if (dir.empty()) {
      return absl::FailedPreconditionError(
          "evaluation.zero_shot_tasks: this server has no zero-shot data folder: set "
          "tuning.zero_shot_dir (or tuning.data_dir with an eval/ folder)");
    }
    auto real = RealPath(dir);
    if (!real.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "evaluation.zero_shot_tasks: the server's zero-shot data folder ", dir,
          " does not exist (tuning.zero_shot_dir)"));
    }
    options.zero_shot_dir = *real;
    options.zero_shot_max_items = request.evaluation().max_items();
  }

  // Hyperparameters: 0 / unspecified keeps the trainer's default (OTARO.md).
  const otaro::v1::TuningHyperparameters& h = request.hyperparameters();
  switch (h.strategy()) {
    case otaro::v1::STRATEGY_UNSPECIFIED:
    case otaro::v1::STRATEGY_OTARO: options.strategy = "otaro"; break;
    case otaro::v1::STRATEGY_BPS: options.strategy = "bps"; break;
    case otaro::v1::STRATEGY_UNIFORM: options.strategy = "uniform"; break;
    case otaro::v1::STRATEGY_FP: options.strategy = "fp"; break;
    case otaro::v1::STRATEGY_FIXED:
      if (!InRange<uint32_t>(h.fixed_mantissa_bits(), 2, 8)) {
        return Invalid("hyperparameters.fixed_mantissa_bits", "must be 2..8 for STRATEGY_FIXED");
      }
      options.strategy = absl::StrCat("fixed:", h.fixed_mantissa_bits());
      break;
    default: return Invalid("hyperparameters.strategy", "unknown value");
  }
  if (h.strategy() != otaro::v1::STRATEGY_FIXED && h.fixed_mantissa_bits() != 0) {
    return Invalid("hyperparameters.fixed_mantissa_bits", "is only for STRATEGY_FIXED");
  }
  if (h.laa()) {
    // The trainer's spelling ("fixed:4+laa"); its parser says which
    // strategies take LAA.
    const std::string with_laa = absl::StrCat(options.strategy, "+laa");
    if (absl::Status parsed = trainer::ParseStrategy(with_laa).status(); !parsed.ok()) {
      return Invalid("hyperparameters.laa", parsed.message());
    }
    options.strategy = with_laa;
  }
  if (h.has_eval_settle_steps()) {
    if (h.eval_settle_steps() > 1000000) {
      return Invalid("hyperparameters.eval_settle_steps", "must be at most 1000000");
    }
    options.eval_settle_steps = h.eval_settle_steps();
  }
  if (h.bit_set_size() > 0) {
    options.bits.assign(h.bit_set().begin(), h.bit_set().end());
    std::sort(options.bits.begin(), options.bits.end());
    if (absl::Status bits = trainer::CheckBitSet(options.bits); !bits.ok()) {
      return Invalid("hyperparameters.bit_set", bits.message());
    }
  }
  // Evaluated: fp32, the bit set and evaluation.mantissa_bits.
  if (request.evaluation().mantissa_bits_size() > 0) {
    std::vector<int> extra(request.evaluation().mantissa_bits().begin(),
                           request.evaluation().mantissa_bits().end());
    std::sort(extra.begin(), extra.end());
    if (absl::Status bits = trainer::CheckBitSet(extra); !bits.ok()) {
      return Invalid("evaluation.mantissa_bits", bits.message());
    }
    options.eval_bits = options.bits;
    options.eval_bits.insert(options.eval_bits.end(), extra.begin(), extra.end());
    std::sort(options.eval_bits.begin(), options.eval_bits.end());
    options.eval_bits.erase(std::unique(options.eval_bits.begin(), options.eval_bits.end()),
                            options.eval_bits.end());
  }

  if (h.has_bps_lambda()) options.bps.lambda = h.bps_lambda();
  if (h.bps_loss() == otaro::v1::BPS_LOSS_EMA) options.bps.loss = trainer::BpsOptions::LossMode::kEma;
  if (h.has_bps_ema_decay()) options.bps.ema_decay = h.bps_ema_decay();
  if (h.laa_ultra_low_max_bits() != 0) options.laa.ultra_low_max_bits = h.laa_ultra_low_max_bits();
  if (h.laa_accumulation_steps() != 0) {
    if (h.laa_accumulation_steps() > 100000) {
      return Invalid("hyperparameters.laa_accumulation_steps", "must be at most 100000");
    }
    options.laa.n = static_cast<int>(h.laa_accumulation_steps());
  }
  if (h.laa_reduce() == otaro::v1::LAA_REDUCE_MEAN) {
    options.laa.reduce = trainer::LaaOptions::Reduce::kMean;
  }
  if (h.optimizer() == otaro::v1::OPTIMIZER_ADAMW) {
    options.optimizer.kind = trainer::OptimizerKind::kAdamW;
  }
  if (h.has_learning_rate()) options.schedule.lr = h.learning_rate();
  if (h.lr_schedule() == otaro::v1::LR_SCHEDULE_COSINE) {
    options.schedule.kind = trainer::LrScheduleKind::kCosine;
  }
  options.schedule.warmup_steps = h.warmup_steps();
  if (h.has_min_learning_rate()) options.schedule.min_lr = h.min_learning_rate();
  if (h.has_weight_decay()) options.optimizer.weight_decay = h.weight_decay();
  if (h.has_adam_beta1()) options.optimizer.beta1 = h.adam_beta1();
  if (h.has_adam_beta2()) options.optimizer.beta2 = h.adam_beta2();
  if (h.has_adam_epsilon()) options.optimizer.eps = h.adam_epsilon();
  // Unset keeps the trainer's 1.0 (as `otaro tune`); an explicit 0 is "off".
  if (h.has_max_grad_norm()) {
    if (!(h.max_grad_norm() >= 0) || !std::isfinite(h.max_grad_norm())) {
      return Invalid("hyperparameters.max_grad_norm", "must be >= 0 (0 = no clipping)");
    }
    options.clip_grad_norm = h.max_grad_norm();
  }
  if (h.batch_size() != 0) options.batch_size = h.batch_size();
  if (h.seq_len() != 0) options.seq_len = h.seq_len();
  if (h.gradient_accumulation() != 0) options.grad_accumulation = h.gradient_accumulation();
  if (h.epochs() == 0 && h.max_steps() == 0) {
    return Invalid("hyperparameters", "set epochs or max_steps (or both)");
  }
  options.epochs = h.epochs();
  options.steps = static_cast<int64_t>(h.max_steps());
  if (h.max_steps() > (uint64_t{1} << 40)) return Invalid("hyperparameters.max_steps", "too large");
  if (h.seed() != 0) options.seed = h.seed();
  options.eval_every = static_cast<int64_t>(h.eval_every_steps());
  options.checkpoint_every = static_cast<int64_t>(h.checkpoint_every_steps());
  if (h.reconstruction() == otaro::v1::RECONSTRUCTION_TRUNCATE) {
    options.reconstruction = sefp::Reconstruction::kTruncate;
  }
  return options;
}

otaro::v1::EvaluationTable ToEvaluationTable(const trainer::Evaluation& evaluation,
                                             uint64_t model_version, uint64_t base_version) {
  otaro::v1::EvaluationTable table;
  table.set_step(evaluation.step);
  table.set_reconstruction(evaluation.reconstruction == sefp::Reconstruction::kTruncate
                               ? otaro::v1::RECONSTRUCTION_TRUNCATE
                               : otaro::v1::RECONSTRUCTION_MIDPOINT);
  table.set_model_version(model_version);
  table.set_base_version(base_version);
  table.set_laa_pending(static_cast<uint32_t>(evaluation.laa_pending));
  table.set_steps_since_laa_flush(evaluation.steps_since_laa_flush);
  for (const trainer::EvalPoint& point : evaluation.points) {
    otaro::v1::PrecisionEvaluation* row = table.add_rows();
    row->set_mantissa_bits(point.bits);
    row->set_heldout_loss(point.loss);
    row->set_perplexity(point.perplexity);
    for (const auto& [task, score] : point.zero_shot) {
      (*row->mutable_accuracy())[task] = score.acc;
      (*row->mutable_accuracy_norm())[task] = score.acc_norm;
    }
  }
  return table;
}

}  // namespace otaro::server
