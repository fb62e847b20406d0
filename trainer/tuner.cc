#include "trainer/tuner.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/logging.h"
#include "common/safetensors/safetensors.h"
#include "common/status_macros.h"
#include "engine/model/loader.h"
#include "nlohmann/json.hpp"
#include "eval/precision_sweep.h"
#include "eval/zero_shot.h"
#include "trainer/batch.h"
#include "trainer/checkpoint.h"
#include "trainer/training_device.h"
#include "trainer/data/batcher.h"
#include "trainer/data/dataset.h"
#include "trainer/model/parameters.h"
#include "trainer/model/training_model.h"
#include "trainer/strategy/bit_width_policy.h"
#include "trainer/optim/grad_clip.h"
#include "trainer/strategy/strategy.h"

namespace otaro::trainer {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;


bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}


// Everything one run carries from step to step (and across a resume).
struct RunState {
  int64_t step = 0;
  int64_t tokens = 0;
  double last_loss = 0;
  double learning_rate = 0;
  int64_t last_laa_flush_step = -1;  // -1: no flush yet
  std::map<int, int64_t> selections;  // bits (0 = fp) -> batches
  std::vector<CheckpointRecord> checkpoints;
};

json EvaluationToJson(const Evaluation& evaluation) {
  const std::string reconstruction(sefp::ReconstructionName(evaluation.reconstruction));
  json points = json::array();
  for (const EvalPoint& p : evaluation.points) {
    json point = {{"bits", p.bits},
                  {"precision", p.bits == 0 ? std::string("fp32") : absl::StrCat("E5M", p.bits)},
                  // float32 points are not reconstructed from SEFP digits.
                  {"reconstruction", p.bits == 0 ? std::string("none") : reconstruction},
                  {"loss", p.loss},
                  {"perplexity", p.perplexity},
                  {"tokens", p.tokens}};
    for (const auto& [task, score] : p.zero_shot) {
      point["zero_shot"][task] = {
          {"acc", score.acc}, {"acc_norm", score.acc_norm}, {"questions", score.questions}};
    }
    points.push_back(std::move(point));
  }
  return {{"step", evaluation.step},
          {"reconstruction", reconstruction},
          {"laa_pending", evaluation.laa_pending},
          {"steps_since_laa_flush", evaluation.steps_since_laa_flush},
          {"points", points}};
}

std::string StepLine(const StepMetrics& m) {
  json line = {{"step", m.step},
               {"bits", m.bits},
               {"loss", m.loss},
               {"lr", m.learning_rate},
               {"grad_norm", m.grad_norm},
               {"accumulated", m.accumulated},
               {"laa_flush", m.laa_flush},
               {"tokens", m.tokens},
               {"tokens_per_second", m.tokens_per_second},
               {"elapsed_seconds", m.elapsed_seconds}};
  if (m.laa_paused) line["laa_paused"] = true;
  if (m.laa_flush) {
    line["laa_drain"] = m.laa_drain;
    line["flush_norm"] = m.flush_norm;
    line["flush_loss_before"] = m.flush_loss_before;
    line["flush_loss_after"] = m.flush_loss_after;
    line["flush_loss_delta"] = m.flush_loss_after - m.flush_loss_before;
  }
  return line.dump() + "\n";
}

class TuningRun {
 public:
  TuningRun(const TuneOptions& options, const TuneCallbacks& callbacks,
            const std::atomic<bool>* cancel)
      : options_(options), callbacks_(callbacks), cancel_(cancel),
        checkpoints_(options.output_dir) {}

  absl::StatusOr<TuneResult> Run();

 private:
  // Phases go to the caller when it listens, else to the log.
  void Status(const std::string& message) {
    if (callbacks_.on_status) {
      callbacks_.on_status(message);
    } else {
      OTARO_LOG_INFO("tune: {}", message);
    }
  }
  absl::Status Load();
  absl::Status Resume();
  // Held-out loss at every precision, and zero-shot accuracy when `zero_shot`
  // (and the run has sets).
  absl::StatusOr<Evaluation> Evaluate(bool zero_shot);
  absl::Status ScoreZeroShot(Evaluation& evaluation);
  absl::StatusOr<CheckpointRecord> WriteCheckpoint(std::optional<Evaluation> evaluation);
  // evaluation.json / evaluation_start.json: the table and the model it scores.
  absl::Status WriteEvaluationFile(const Evaluation& evaluation, const std::string& name,
                                   bool tuned);
  // The mean loss of `batches` at `precision` with the weights as they are now
  // (Forward only; the step's own loss when nothing changed since).
  absl::StatusOr<double> BatchLoss(const std::vector<Batch>& batches, const Precision& precision);
  // Applies an LAA flush (the released accumulator) under the clipping rule and
  // records its norm and effect on the step's batches into `metrics`.
  absl::Status ApplyFlush(absl::Span<float> update, double lr, const std::vector<Batch>& batches,
                          const Precision& precision, StepMetrics& metrics);
  absl::Status ExportSefp(const Evaluation& evaluation, const std::string& path);
  std::string Provenance(const std::optional<Evaluation>& evaluation) const;
  bool Cancelled() const { return cancel_ != nullptr && cancel_->load(); }

  const TuneOptions& options_;
  const TuneCallbacks& callbacks_;
  const std::atomic<bool>* cancel_;

  Strategy strategy_;
  engine::ModelConfig config_;
  std::string source_description_;
  std::unique_ptr<engine::tokenizer::Tokenizer> tokenizer_;
  std::optional<Parameters> params_;
  std::vector<float> grads_;
  data::TokenizedDataset train_data_, eval_data_;
  std::optional<data::Batcher> batcher_;
  std::optional<BitWidthPolicy> policy_;
  std::optional<LowPrecisionAccumulator> laa_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<TrainingBackend> model_;  // the CPU or the CUDA model
  int threads_ = 1;
  // (name, questions) of each zero-shot set, in the order asked for.
  std::vector<std::pair<std::string, std::vector<eval::MultipleChoiceTask>>> zero_shot_sets_;
  int64_t total_steps_ = 0;
  RunState state_;
  const CheckpointFolder checkpoints_;
};

absl::Status TuningRun::Load() {
  OTARO_ASSIGN_OR_RETURN(strategy_, ParseStrategy(options_.strategy));
  Status(absl::StrCat("loading ", options_.model_path));
  OTARO_ASSIGN_OR_RETURN(auto source, engine::OpenModelSource(options_.model_path, &config_));
  source_description_ = source->Describe();
  auto tokenizer = engine::LoadModelTokenizer(options_.model_path);
  if (!tokenizer.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("tuning needs the model's tokenizer to read the data: ",
                     tokenizer.status().message()));
  }
  tokenizer_ = std::move(*tokenizer);
  OTARO_ASSIGN_OR_RETURN(Parameters params, Parameters::FromSource(*source, config_));
  params_.emplace(std::move(params));
  source.reset();  // the masters are in memory now; release the file
  grads_.assign(params_->values().size(), 0.0f);

  Status(absl::StrCat("reading ", options_.data_path));
  data::DataOptions data_options;
  data_options.format = options_.data_format;
  data_options.seq_len = options_.seq_len;
  OTARO_ASSIGN_OR_RETURN(data::LoadedDataset loaded,
                         data::LoadDataset(options_.data_path, *tokenizer_, data_options));
  if (callbacks_.on_dataset) callbacks_.on_dataset(loaded.report);
  // Before any training: a set that cannot be read fails the run now, not
  // after the last step.
  for (const std::string& name : options_.zero_shot_tasks) {
    auto questions = eval::LoadNamedTask(name, options_.zero_shot_dir);
    if (!questions.ok()) {
      return absl::Status(questions.status().code(),
                          absl::StrCat("zero-shot set '", name, "': ",
                                       questions.status().message()));
    }
    zero_shot_sets_.emplace_back(name, std::move(*questions));
  }
  if (options_.eval_data_path.empty()) {
    OTARO_ASSIGN_OR_RETURN(data::TrainEvalSplit split,
                           data::HoldOutTail(loaded.data, options_.eval_fraction));
    train_data_ = split.train;
    eval_data_ = split.eval;
  } else {
    train_data_ = loaded.data;
    data_options.text_tail = data::TailPolicy::kPad;
    OTARO_ASSIGN_OR_RETURN(data::LoadedDataset eval,
                           data::LoadDataset(options_.eval_data_path, *tokenizer_, data_options));
    eval_data_ = eval.data;
  }
  OTARO_ASSIGN_OR_RETURN(data::Batcher batcher,
                         data::Batcher::Create(train_data_, options_.batch_size, options_.seed));
  batcher_.emplace(std::move(batcher));
  const double epochs = options_.epochs > 0 ? options_.epochs : (options_.steps > 0 ? 0 : 1);
  const int64_t epoch_steps = static_cast<int64_t>(
      std::ceil(epochs * batcher_->batches_per_epoch() / options_.grad_accumulation));
  if (options_.steps > 0 && epochs > 0) {
    total_steps_ = std::min(options_.steps, epoch_steps);
  } else {
    total_steps_ = options_.steps > 0 ? options_.steps : epoch_steps;
  }
  total_steps_ = std::max<int64_t>(total_steps_, 1);
  OTARO_RETURN_IF_ERROR(ValidateLrSchedule(options_.schedule, total_steps_));

  OTARO_ASSIGN_OR_RETURN(BitWidthPolicy policy,
                         BitWidthPolicy::Create(strategy_, options_.bits, options_.bps,
                                                options_.seed));
  policy_.emplace(std::move(policy));
  OTARO_ASSIGN_OR_RETURN(LowPrecisionAccumulator laa,
                         LowPrecisionAccumulator::Create(strategy_, options_.laa,
                                                         static_cast<int64_t>(grads_.size())));
  laa_.emplace(std::move(laa));
  OTARO_ASSIGN_OR_RETURN(optimizer_,
                         CreateOptimizer(options_.optimizer, static_cast<int64_t>(grads_.size())));

  threads_ = options_.threads > 0
                 ? options_.threads
                 : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  OTARO_ASSIGN_OR_RETURN(const TrainingDevice device, ParseTrainingDevice(options_.device));
  OTARO_ASSIGN_OR_RETURN(model_, CreateTrainingBackend(device, &*params_, options_.batch_size,
                                                       options_.seq_len, threads_));
  const TrainingMemory memory = model_->Memory();
  int64_t optimizer_bytes = 0;
  for (const auto& buffer : optimizer_->ExportState().buffers) {
    optimizer_bytes += static_cast<int64_t>(buffer.values.size() * sizeof(float));
  }
  // Gradients, the LAA accumulator when it can fill, and the optimizer state.
  const int64_t bytes = memory.Total() +
                        static_cast<int64_t>(grads_.size() * sizeof(float)) *
                            (1 + (laa_->active() ? 1 : 0)) +
                        optimizer_bytes;
  Status(absl::StrFormat("%d parameters, %d training rows, %d eval rows, %d steps, ~%.1f MiB",
                         params_->values().size(), train_data_.rows(), eval_data_.rows(),
                         total_steps_, bytes / 1048576.0));
  if (options_.max_memory_bytes > 0 && bytes > options_.max_memory_bytes) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "the run needs ~%.1f MiB, over its budget of %.1f MiB: lower batch_size or seq_len",
        bytes / 1048576.0, options_.max_memory_bytes / 1048576.0));
  }
  return absl::OkStatus();
}

absl::StatusOr<Evaluation> TuningRun::Evaluate(bool zero_shot) {
  Evaluation evaluation;
  evaluation.step = state_.step;
  evaluation.reconstruction = options_.reconstruction;
  evaluation.laa_pending = laa_->pending();
  evaluation.steps_since_laa_flush =
      state_.last_laa_flush_step < 0 ? -1 : state_.step - state_.last_laa_flush_step;
  const int64_t batches = std::min(data::EvalBatchCount(eval_data_, options_.batch_size),
                                   options_.max_eval_batches > 0
                                       ? options_.max_eval_batches
                                       : data::EvalBatchCount(eval_data_, options_.batch_size));
  const std::vector<int>& bits = options_.eval_bits.empty() ? options_.bits : options_.eval_bits;
  std::vector<int> widths = {0};
  widths.insert(widths.end(), bits.rbegin(), bits.rend());
  for (int bits : widths) {
    Precision precision;
    precision.quantized = bits != 0;
    precision.m = bits == 0 ? sefp::kMasterBits : bits;
    precision.mode = options_.reconstruction;
    double nll = 0;
    int64_t tokens = 0;
    for (int64_t i = 0; i < batches; ++i) {
      OTARO_ASSIGN_OR_RETURN(auto result,
                             model_->EvalNll(data::EvalBatch(eval_data_, options_.batch_size, i),
                                             precision));
      nll += result.first;
      tokens += result.second;
    }
    EvalPoint point;
    point.bits = bits;
    point.tokens = tokens;
    point.loss = tokens > 0 ? nll / tokens : NAN;
    point.perplexity = std::exp(point.loss);
    evaluation.points.push_back(point);
  }
  if (zero_shot) OTARO_RETURN_IF_ERROR(ScoreZeroShot(evaluation));
  if (callbacks_.on_evaluation) callbacks_.on_evaluation(evaluation);
  return evaluation;
}

absl::Status TuningRun::ScoreZeroShot(Evaluation& evaluation) {
  if (zero_shot_sets_.empty()) return absl::OkStatus();
  const std::unique_ptr<engine::TensorSource> masters = AsTensorSource(*params_);
  std::vector<int> bits;
  std::map<int, EvalPoint*> points;
  for (EvalPoint& point : evaluation.points) {
    bits.push_back(point.bits);
    points[point.bits] = &point;
  }
  eval::PrecisionSweep sweep;
  sweep.build_model = [&](bool quantized) {
    Status(absl::StrCat("zero-shot evaluation (", quantized ? "SEFP" : "float32", ")"));
    engine::LoadOptions load;
    load.quantize = quantized;
    load.reconstruction = options_.reconstruction;
    return engine::BuildModel(*masters, config_, /*tokenizer=*/nullptr, "the run's masters",
                              load);
  };
  sweep.backend.num_threads = threads_;
  return eval::SweepPrecisions(sweep, bits, [&](const eval::SweepPoint& at) -> absl::Status {
    for (const auto& [name, questions] : zero_shot_sets_) {
      eval::ZeroShotOptions zero_shot_options;
      zero_shot_options.limit = options_.zero_shot_max_items;
      auto result = eval::EvaluateZeroShot(at.backend, *tokenizer_, questions, at.precision,
                                           zero_shot_options);
      if (!result.ok()) {
        return absl::Status(result.status().code(),
                            absl::StrCat("zero-shot set '", name, "' at ",
                                         at.bits == 0 ? std::string("fp32")
                                                      : absl::StrCat("E5M", at.bits),
                                         ": ", result.status().message()));
      }
      points[at.bits]->zero_shot[name] =
          ZeroShotScore{result->acc, result->acc_norm, result->count};
    }
    return absl::OkStatus();
  });
}

std::string TuningRun::Provenance(const std::optional<Evaluation>& evaluation) const {
  json provenance = {{"base_model", options_.model_path},
                     {"base_model_source", source_description_},
                     {"data", options_.data_path},
                     {"strategy", StrategyName(strategy_)},
                     {"bits", options_.bits},
                     {"steps", state_.step},
                     {"tokens", state_.tokens},
                     {"seq_len", options_.seq_len},
                     {"batch_size", options_.batch_size},
                     {"grad_accumulation", options_.grad_accumulation},
                     {"optimizer", std::string(OptimizerKindName(options_.optimizer.kind))},
                     {"learning_rate", options_.schedule.lr},
                     {"seed", options_.seed},
                     {"clip_grad_norm", options_.clip_grad_norm},
                     {"laa", {{"active", laa_->active()},
                              {"n", options_.laa.n},
                              {"ultra_low_max_bits", options_.laa.ultra_low_max_bits},
                              {"reduce", std::string(LaaReduceName(options_.laa.reduce))},
                              {"eval_settle_steps", options_.eval_settle_steps}}},
                     {"reconstruction", std::string(sefp::ReconstructionName(
                                            options_.reconstruction))}};
  if (evaluation) provenance["evaluation"] = EvaluationToJson(*evaluation);
  return provenance.dump();
}

absl::StatusOr<CheckpointRecord> TuningRun::WriteCheckpoint(std::optional<Evaluation> evaluation) {
  const OptimizerState optimizer_state = optimizer_->ExportState();
  const data::BatchPosition position = batcher_->position();
  json selections = json::object();
  for (const auto& [bits, count] : state_.selections) selections[std::to_string(bits)] = count;
  TrainerState trainer_state;
  trainer_state.state = {{"version", 1},
                         {"step", state_.step},
                         {"total_steps", total_steps_},
                         {"tokens", state_.tokens},
                         {"last_loss", state_.last_loss},
                         {"strategy", StrategyName(strategy_)},
                         {"bits", options_.bits},
                         {"seed", options_.seed},
                         {"seq_len", options_.seq_len},
                         {"batch_size", options_.batch_size},
                         {"data_position", {{"epoch", position.epoch}, {"index", position.index}}},
                         {"policy", policy_->ToJson()},
                         {"laa_pending", laa_->pending()},
                         {"last_laa_flush_step", state_.last_laa_flush_step},
                         {"optimizer_counters", optimizer_state.counters},
                         {"selections", selections}};
  if (evaluation) trainer_state.state["evaluation"] = EvaluationToJson(*evaluation);
  trainer_state.optimizer = optimizer_state;
  if (laa_->pending() > 0) trainer_state.laa_accumulator = laa_->accumulator();
  const engine::CheckpointProvenance provenance{source_description_, Provenance(evaluation)};
  OTARO_ASSIGN_OR_RETURN(const std::string final_dir,
                         checkpoints_.Write(state_.step, *AsTensorSource(*params_), config_,
                                            tokenizer_.get(), provenance, trainer_state));

  CheckpointRecord record;
  record.step = state_.step;
  record.path = final_dir;
  record.train_loss = state_.last_loss;
  record.evaluation = std::move(evaluation);
  state_.checkpoints.push_back(record);
  // Keep the newest few; the one LATEST names is always among them.
  while (options_.keep_checkpoints > 0 &&
         static_cast<int>(state_.checkpoints.size()) > options_.keep_checkpoints) {
    CheckpointFolder::Remove(state_.checkpoints.front().path);
    state_.checkpoints.erase(state_.checkpoints.begin());
  }
  if (callbacks_.on_checkpoint) callbacks_.on_checkpoint(record);
  return record;
}

absl::Status TuningRun::Resume() {
  Status(absl::StrCat("resuming from the latest checkpoint in ", checkpoints_.root()));
  OTARO_ASSIGN_OR_RETURN(LoadedCheckpoint loaded, checkpoints_.ReadLatest());
  const std::string& dir = loaded.dir;
  const json& state = loaded.state;
  // A resumed run must be the same run: same strategy, bits, seed and shapes.
  if (state.value("strategy", "") != StrategyName(strategy_) ||
      state.value("bits", std::vector<int>{}) != options_.bits ||
      state.value("seed", uint64_t{0}) != options_.seed ||
      state.value("seq_len", int64_t{0}) != options_.seq_len ||
      state.value("batch_size", int64_t{0}) != options_.batch_size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint ", dir, " was made with other settings (strategy, bits, seed, seq_len or "
        "batch_size differ): resume with the same options"));
  }
  if (loaded.masters.values().size() != params_->values().size()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " holds a different model than ", options_.model_path));
  }
  try {
    std::copy(loaded.masters.values().begin(), loaded.masters.values().end(),
              params_->values().begin());
    OptimizerState optimizer_state;
    optimizer_state.counters =
        state.at("optimizer_counters").get<std::map<std::string, int64_t>>();
    for (const auto& [name, values] : loaded.optimizer_buffers) {
      optimizer_state.buffers.push_back({name, values});
    }
    OTARO_RETURN_IF_ERROR(optimizer_->ImportState(optimizer_state));
    const int pending = state.at("laa_pending").get<int>();
    if (pending > 0) OTARO_RETURN_IF_ERROR(laa_->Restore(pending, loaded.laa_accumulator));
    OTARO_RETURN_IF_ERROR(policy_->FromJson(state.at("policy")));
    data::BatchPosition position;
    position.epoch = state.at("data_position").at("epoch").get<int64_t>();
    position.index = state.at("data_position").at("index").get<int64_t>();
    OTARO_RETURN_IF_ERROR(batcher_->Seek(position));
    state_.step = state.at("step").get<int64_t>();
    state_.tokens = state.at("tokens").get<int64_t>();
    state_.last_loss = state.value("last_loss", 0.0);
    state_.last_laa_flush_step = state.value("last_laa_flush_step", int64_t{-1});
    for (const auto& [bits, count] : state.at("selections").items()) {
      int b = 0;
      if (absl::SimpleAtoi(bits, &b)) state_.selections[b] = count.get<int64_t>();
    }
    CheckpointRecord record;
    record.step = state_.step;
    record.path = dir;
    record.train_loss = state_.last_loss;
    state_.checkpoints.push_back(record);
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat(dir, "/state.json: ", e.what()));
  }
  if (state_.step > total_steps_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint is at step ", state_.step, ", past this run's ", total_steps_, " steps"));
  }
  return absl::OkStatus();
}

absl::Status TuningRun::ExportSefp(const Evaluation& evaluation, const std::string& path) {
  Status(absl::StrCat("exporting ", path));
  engine::CheckpointProvenance provenance{source_description_, Provenance(evaluation)};
  return engine::WriteSefpCheckpoint(*AsTensorSource(*params_), config_, tokenizer_.get(),
                                     options_.reconstruction, provenance, path)
      .status();
}

absl::StatusOr<double> TuningRun::BatchLoss(const std::vector<Batch>& batches,
                                            const Precision& precision) {
  double loss = 0;
  for (const Batch& batch : batches) {
    OTARO_ASSIGN_OR_RETURN(double micro_loss, model_->Forward(batch, precision));
    loss += micro_loss / static_cast<double>(batches.size());
  }
  return loss;
}

absl::Status TuningRun::ApplyFlush(absl::Span<float> update, double lr,
                                   const std::vector<Batch>& batches, const Precision& precision,
                                   StepMetrics& metrics) {
  metrics.laa_flush = true;
  metrics.flush_norm = ClipGradNorm(update, options_.clip_grad_norm);
  if (absl::Status finite = CheckGradNorm(metrics.flush_norm); !finite.ok()) {
    return absl::InternalError(absl::StrCat("training diverged at step ", state_.step,
                                            ": the LAA accumulator's ", finite.message()));
  }
  OTARO_RETURN_IF_ERROR(optimizer_->Step(params_->values(), update, lr));
  state_.last_laa_flush_step = state_.step;
  OTARO_ASSIGN_OR_RETURN(metrics.flush_loss_after, BatchLoss(batches, precision));
  return absl::OkStatus();
}

absl::Status TuningRun::WriteEvaluationFile(const Evaluation& evaluation, const std::string& name,
                                            bool tuned) {
  json table = EvaluationToJson(evaluation);
  table["model"] = {{"base_model", options_.model_path},
                    {"tuned", tuned},
                    {"strategy", StrategyName(strategy_)},
                    {"steps", state_.step},
                    {"output_dir", options_.output_dir}};
  return WriteFileAtomically(absl::StrCat(options_.output_dir, "/", name), table.dump(2));
}

absl::StatusOr<TuneResult> TuningRun::Run() {
  OTARO_RETURN_IF_ERROR(ValidateTuneOptions(options_));
  OTARO_RETURN_IF_ERROR(CreateDirectories(options_.output_dir));
  OTARO_RETURN_IF_ERROR(Load());
  if (options_.resume) OTARO_RETURN_IF_ERROR(Resume());

  const std::string steps_path = options_.output_dir + "/steps.jsonl";
  std::ofstream steps_log(steps_path, options_.resume ? std::ios::app : std::ios::trunc);
  if (!steps_log) return absl::PermissionDeniedError(absl::StrCat("cannot write ", steps_path));

  TuneResult result;
  if (options_.evaluate_at_start && state_.step == 0) {
    Status("evaluating the model before tuning");
    OTARO_ASSIGN_OR_RETURN(Evaluation before, Evaluate(/*zero_shot=*/true));
    OTARO_RETURN_IF_ERROR(WriteEvaluationFile(before, "evaluation_start.json", /*tuned=*/false));
  }
  // The settling rule (tuner.h): the accumulator is drained at the end of
  // step drain_step; the steps after it apply every gradient at once.
  const int64_t drain_step = std::max<int64_t>(total_steps_ - options_.eval_settle_steps, 0);
  const auto start = Clock::now();
  const int64_t start_tokens = state_.tokens;
  const float micro_scale = 1.0f / static_cast<float>(options_.grad_accumulation);
  Status(absl::StrCat("training: strategy ", StrategyName(strategy_), ", bits ",
                      FormatBitSet(options_.bits), ", steps ", state_.step + 1, "..",
                      total_steps_));
  while (state_.step < total_steps_) {
    if (Cancelled()) {
      // A cancel right after a periodic checkpoint (or a resume) has nothing
      // new to save: writing the same step again would only be refused by
      // whoever records checkpoints (the job store keeps one per step).
      if (state_.checkpoints.empty() || state_.checkpoints.back().step != state_.step) {
        Status("cancelled: writing a checkpoint");
        OTARO_RETURN_IF_ERROR(WriteCheckpoint(std::nullopt).status());
      } else {
        Status(absl::StrCat("cancelled at step ", state_.step, ", which is checkpointed"));
      }
      result.cancelled = true;
      break;
    }
    const std::optional<int> bits = policy_->Next();
    Precision precision;
    precision.quantized = bits.has_value();
    precision.m = bits.value_or(sefp::kMasterBits);
    precision.mode = options_.reconstruction;

    std::fill(grads_.begin(), grads_.end(), 0.0f);
    double loss = 0;
    std::vector<Batch> batches;
    for (int64_t micro = 0; micro < options_.grad_accumulation; ++micro) {
      batches.push_back(batcher_->Next());
      const Batch& batch = batches.back();
      OTARO_ASSIGN_OR_RETURN(double micro_loss, model_->Forward(batch, precision));
      OTARO_RETURN_IF_ERROR(model_->Backward(micro_scale, absl::MakeSpan(grads_)));
      loss += micro_loss * micro_scale;
      state_.tokens += batch.ScoredTokens();
    }
    if (!std::isfinite(loss)) {
      return absl::InternalError(absl::StrCat(
          "training diverged: loss is ", loss, " at step ", state_.step + 1,
          " (lower the learning rate or turn on gradient clipping)"));
    }
    OTARO_RETURN_IF_ERROR(policy_->Observe(bits, loss));
    const double grad_norm = GradNorm(grads_);
    if (absl::Status finite = CheckGradNorm(grad_norm); !finite.ok()) {
      return absl::InternalError(absl::StrCat("training diverged at step ", state_.step + 1, ": ",
                                              finite.message()));
    }
    ++state_.step;
    state_.last_loss = loss;
    ++state_.selections[bits.value_or(0)];
    const double lr = LearningRate(options_.schedule, state_.step, total_steps_);
    state_.learning_rate = lr;

    StepMetrics metrics;
    metrics.step = state_.step;
    metrics.total_steps = total_steps_;
    metrics.bits = bits.value_or(0);
    metrics.loss = loss;
    metrics.learning_rate = lr;
    metrics.grad_norm = grad_norm;
    // Settle steps (after the drain) bypass the accumulator.
    metrics.laa_paused = state_.step > drain_step && laa_->IsUltraLow(bits);
    std::optional<absl::Span<float>> update = absl::MakeSpan(grads_);
    if (!metrics.laa_paused) {
      OTARO_ASSIGN_OR_RETURN(update, laa_->Step(bits, absl::MakeSpan(grads_)));
    }
    metrics.accumulated = !update.has_value();
    if (update.has_value() && update->data() != grads_.data()) {
      // N ultra-low gradients are due: the accumulator, released. The weights
      // have not changed in this step, so the step's loss is the "before".
      metrics.flush_loss_before = loss;
      OTARO_RETURN_IF_ERROR(ApplyFlush(*update, lr, batches, precision, metrics));
    } else if (update.has_value()) {
      ClipGradNorm(*update, options_.clip_grad_norm);
      OTARO_RETURN_IF_ERROR(optimizer_->Step(params_->values(), *update, lr));
    }
    if (state_.step == drain_step) {
      if (std::optional<absl::Span<float>> rest = laa_->Flush()) {
        Status(absl::StrCat("LAA: draining the accumulator at step ", state_.step, "; ",
                            total_steps_ - state_.step, " settle steps before the evaluation"));
        metrics.laa_drain = true;
        OTARO_ASSIGN_OR_RETURN(metrics.flush_loss_before, BatchLoss(batches, precision));
        OTARO_RETURN_IF_ERROR(ApplyFlush(*rest, lr, batches, precision, metrics));
      }
    }
    metrics.tokens = state_.tokens;
    metrics.elapsed_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    metrics.tokens_per_second =
        metrics.elapsed_seconds > 0 ? (state_.tokens - start_tokens) / metrics.elapsed_seconds : 0;
    steps_log << StepLine(metrics);
    steps_log.flush();
    if (callbacks_.on_step) callbacks_.on_step(metrics);

    const bool last = state_.step == total_steps_;
    std::optional<Evaluation> evaluation;
    if (!last && options_.eval_every > 0 && state_.step % options_.eval_every == 0) {
      OTARO_ASSIGN_OR_RETURN(evaluation, Evaluate(/*zero_shot=*/false));
    }
    if (!last && options_.checkpoint_every > 0 && state_.step % options_.checkpoint_every == 0) {
      OTARO_RETURN_IF_ERROR(WriteCheckpoint(evaluation).status());
    }
  }
  result.steps = state_.step;
  result.tokens = state_.tokens;
  result.bit_selections = state_.selections;
  if (result.cancelled) {
    result.master_path = state_.checkpoints.back().path + "/master.safetensors";
    return result;
  }

  // The drain at drain_step (OTARO.md step 4, "flush") left nothing pending,
  // unless a resume changed eval_settle_steps past it: apply what is left.
  if (std::optional<absl::Span<float>> rest = laa_->Flush()) {
    Status("LAA: gradients still pending at the end (eval_settle_steps changed on resume?): "
           "applied right before the evaluation");
    ClipGradNorm(*rest, options_.clip_grad_norm);
    OTARO_RETURN_IF_ERROR(optimizer_->Step(params_->values(), *rest, state_.learning_rate));
    state_.last_laa_flush_step = state_.step;
  }
  Status("evaluating at every precision");
  OTARO_ASSIGN_OR_RETURN(Evaluation evaluation, Evaluate(/*zero_shot=*/true));
  OTARO_RETURN_IF_ERROR(WriteEvaluationFile(evaluation, "evaluation.json", /*tuned=*/true));
  OTARO_ASSIGN_OR_RETURN(CheckpointRecord record, WriteCheckpoint(evaluation));
  result.master_path = record.path + "/master.safetensors";
  result.sefp_path = options_.output_dir + "/model.sefp";
  OTARO_RETURN_IF_ERROR(ExportSefp(evaluation, result.sefp_path));
  result.final_evaluation = std::move(evaluation);
  Status("done");
  return result;
}

}  // namespace

absl::Status CheckZeroShotTasks(const std::vector<std::string>& names) {
  const std::vector<std::string>& known = eval::KnownTaskNames();
  for (size_t i = 0; i < names.size(); ++i) {
    if (std::find(known.begin(), known.end(), names[i]) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown zero-shot task '", names[i],
                                                     "' (known: ", absl::StrJoin(known, ", "),
                                                     ")"));
    }
    if (std::find(names.begin(), names.begin() + i, names[i]) != names.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("zero-shot task '", names[i], "' is listed twice"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTuneOptions(const TuneOptions& options) {
  if (options.model_path.empty()) return absl::InvalidArgumentError("model_path is required");
  if (options.output_dir.empty()) return absl::InvalidArgumentError("output_dir is required");
  if (options.data_path.empty()) return absl::InvalidArgumentError("data_path is required");
  // Before anything is loaded: `--device cuda` on a machine or build without it.
  OTARO_ASSIGN_OR_RETURN(const TrainingDevice device, ParseTrainingDevice(options.device));
  OTARO_RETURN_IF_ERROR(CheckTrainingDevice(device));
  OTARO_ASSIGN_OR_RETURN(engine::ModelFormat format,
                         engine::DetectModelFormat(options.model_path));
  if (format == engine::ModelFormat::kSefp) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.model_path, " is a SEFP checkpoint: tuning starts from float32 weights "
                            "(the original model or a master checkpoint), see OTARO.md"));
  }
  if (!Exists(options.data_path)) {
    return absl::NotFoundError(absl::StrCat("data_path ", options.data_path, " does not exist"));
  }
  if (!options.eval_data_path.empty() && !Exists(options.eval_data_path)) {
    return absl::NotFoundError(
        absl::StrCat("eval_data_path ", options.eval_data_path, " does not exist"));
  }
  OTARO_ASSIGN_OR_RETURN(const Strategy strategy, ParseStrategy(options.strategy));
  if (strategy.kind == StrategyKind::kFixed && strategy.uses_laa() &&
      strategy.fixed_m > options.laa.ultra_low_max_bits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "strategy ", StrategyName(strategy), ": LAA accumulates only widths <= ",
        options.laa.ultra_low_max_bits, " (laa ultra-low cut), so E5M", strategy.fixed_m,
        " would never accumulate; drop +laa or raise the cut"));
  }
  OTARO_RETURN_IF_ERROR(CheckBitSet(options.bits));
  if (!options.eval_bits.empty()) OTARO_RETURN_IF_ERROR(CheckBitSet(options.eval_bits));
  OTARO_RETURN_IF_ERROR(CheckZeroShotTasks(options.zero_shot_tasks));
  if (!options.zero_shot_tasks.empty() && options.zero_shot_dir.empty()) {
    return absl::InvalidArgumentError(
        "zero_shot_dir is required with zero_shot_tasks (the shared data's eval/ folder)");
  }
  if (options.zero_shot_max_items < 0) {
    return absl::InvalidArgumentError(absl::StrCat("zero_shot_max_items must be >= 0 (0 = all), got ",
                                                   options.zero_shot_max_items));
  }
  OTARO_RETURN_IF_ERROR(ValidateBpsOptions(options.bps));
  OTARO_RETURN_IF_ERROR(ValidateLaaOptions(options.laa));
  OTARO_RETURN_IF_ERROR(ValidateOptimizerOptions(options.optimizer));
  // The schedule is checked again against the real step count once the data
  // is read (steps = 0 derives it from the epochs).
  OTARO_RETURN_IF_ERROR(ValidateLrSchedule(
      options.schedule, options.steps > 0 ? options.steps : std::max<int64_t>(
                                                                 options.schedule.warmup_steps, 1)));
  if (options.seq_len < 2 || options.seq_len > (1 << 16)) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len must be in 2..65536, got ", options.seq_len));
  }
  if (options.batch_size < 1 || options.batch_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size must be in 1..4096, got ", options.batch_size));
  }
  if (options.grad_accumulation < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("grad_accumulation must be >= 1, got ", options.grad_accumulation));
  }
  if (options.steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat("steps must be >= 0, got ", options.steps));
  }
  if (!(options.epochs >= 0 && options.epochs <= 1000)) {
    return absl::InvalidArgumentError(
        absl::StrCat("epochs must be in [0, 1000] (0 = unset), got ", options.epochs));
  }
  if (options.eval_data_path.empty() &&
      !(options.eval_fraction > 0 && options.eval_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval_fraction must be in (0, 1), got ", options.eval_fraction));
  }
  if (!(options.clip_grad_norm >= 0)) {
    return absl::InvalidArgumentError("clip_grad_norm must be >= 0 (0 = off)");
  }
  if (options.eval_settle_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("eval_settle_steps must be >= 0, got ", options.eval_settle_steps));
  }
  if (options.eval_every < 0 || options.checkpoint_every < 0 || options.max_eval_batches < 0) {
    return absl::InvalidArgumentError(
        "eval_every, checkpoint_every and max_eval_batches must be >= 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<TuneResult> RunTuning(const TuneOptions& options, const TuneCallbacks& callbacks,
                                     const std::atomic<bool>* cancel) {
  TuningRun run(options, callbacks, cancel);
  return run.Run();
}

}  // namespace otaro::trainer
