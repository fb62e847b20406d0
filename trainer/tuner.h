// One OTARo tuning run, start to finish: load the float32 masters, pick a
// bit-width per batch (BPS or a baseline strategy), forward at Q(W, b) and
// backward with the straight-through estimator, update through LAA and the
// optimizer, evaluate at every precision, checkpoint, and export the SEFP
// model the server loads. `otaro tune` and the server's tuning worker both run
// exactly this; they differ only in how they show the events.
//
// Output folder layout (all written crash-safely):
//   checkpoints/step-<N>/master.safetensors     float32 masters (a loadable model)
//   checkpoints/step-<N>/optimizer.safetensors  optimizer moments, LAA accumulator
//   checkpoints/step-<N>/state.json             step, policy, LAA, data position, metrics
//   checkpoints/LATEST                          name of the newest complete checkpoint
//   steps.jsonl                                 one line per step (step, bits, loss, lr, ...;
//                                               on LAA flushes the loss change, see StepMetrics)
//   evaluation.json                             the final per-bit-width table
//                                               (held-out loss; zero-shot accuracy), each
//                                               point naming its precision, reconstruction
//                                               and the model it scores
//   evaluation_start.json                       the same before tuning (evaluate_at_start)
//   model.sefp                                  the tuned model, SEFP (what gets served)
// A checkpoint folder is written as step-<N>.partial and renamed when complete,
// so a crash never leaves a half-written checkpoint that LATEST points to.
//
// Fairness rules every strategy is held to (../shared/design/OTARO.md, issue 15):
//   Clipping: max norm clip_grad_norm applies to the gradient the optimizer
//     receives. An immediate update is the step's gradient, clipped; an LAA
//     flush is the reduced accumulator (sum or mean of raw gradients), clipped
//     as a whole, so a summed flush obeys the same bound as every other step.
//     Gradients that are only accumulated are not clipped one by one (as with
//     PyTorch's gradient accumulation). clip_grad_norm = 0 turns clipping off.
//   Settling: the final evaluation never sees an LAA flush transient. At the end
//     of step total_steps - eval_settle_steps the accumulator is drained (what is
//     pending is applied, "laa_drain"), and the last eval_settle_steps steps
//     apply every gradient at once (LAA paused, "laa_paused"), so the evaluated
//     and exported weights are at least eval_settle_steps steps past the last
//     flush and hold no pending gradient. Strategies without LAA are unaffected.
//     eval_settle_steps = 0 drains after the last step (the old behaviour).
//     Periodic evaluations (eval_every) never change training: they report
//     laa_pending and steps_since_laa_flush so a point taken in a transient can
//     be recognised.
//   Flush effect: every flush re-measures the loss of the batch it was taken on
//     (same batch, same precision) after the update, and the step's line in
//     steps.jsonl carries flush_loss_before / flush_loss_after / flush_loss_delta.
#ifndef OTARO_TRAINER_TUNER_H_
#define OTARO_TRAINER_TUNER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sefp/format.h"
#include "trainer/data/data_report.h"
#include "trainer/data/data_source.h"
#include "trainer/optim/optimizer.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/strategy/bit_width_path_search.h"
#include "trainer/strategy/low_precision_accumulator.h"

namespace otaro::trainer {

struct TuneOptions {
  // Float source of the masters: HF folder, GGUF, llama2.c or a master
  // checkpoint (never a SEFP checkpoint; see engine::OpenModelSource).
  std::string model_path;
  std::string output_dir;

  // Data: training file or folder, its format, and the held-out text for
  // evaluation (empty: hold out eval_fraction of the training data).
  std::string data_path;
  data::DataFormat data_format = data::DataFormat::kAuto;
  std::string eval_data_path;
  double eval_fraction = 0.05;
  int64_t max_eval_batches = 16;
  int64_t seq_len = 128;
  int64_t batch_size = 4;
  int64_t grad_accumulation = 1;  // micro-batches per optimizer step

  // Length: `steps` optimizer steps or `epochs` passes over the data,
  // whichever ends first; 0 = unset (both unset: one epoch).
  int64_t steps = 0;
  double epochs = 0;

  // otaro | bps | uniform | fixed:m | fp, or uniform+laa | fixed:m+laa (the
  // baselines with OTARo's update mechanism; trainer/strategy/strategy.h).
  std::string strategy = "otaro";
  std::vector<int> bits = {3, 4, 5, 6, 7, 8};
  // Precisions evaluated (besides unquantized); empty = `bits`.
  std::vector<int> eval_bits;
  BpsOptions bps;
  LaaOptions laa;
  OptimizerOptions optimizer;
  LrSchedule schedule;
  // Max global norm of every applied update, LAA flushes included (see the
  // clipping rule above); 0 = off.
  double clip_grad_norm = 1.0;
  // LAA runs only: steps trained after the accumulator is drained and before
  // the final evaluation (the settling rule above).
  int64_t eval_settle_steps = 20;
  sefp::Reconstruction reconstruction = sefp::Reconstruction::kMidpoint;

  int64_t eval_every = 0;        // steps between evaluations (0: only at the end)
  int64_t checkpoint_every = 0;  // steps between checkpoints (0: only at the end)
  bool resume = false;           // continue from output_dir/checkpoints/LATEST
  // Evaluate the untouched model before the first step too (reported as step
  // 0): the baseline a tuned model must beat to be auto-published.
  bool evaluate_at_start = false;
  // Zero-shot multiple-choice sets by name (eval/zero_shot.h,
  // KnownTaskNames), read from zero_shot_dir (the shared data's eval/ folder)
  // before training starts. Their acc / acc_norm are measured at every
  // evaluated precision on the engine's CPU backend running the model built
  // from the masters as they are exported (SEFP for bits 2..8, float32 for 0),
  // in the evaluation before tuning (evaluate_at_start) and the final one;
  // periodic evaluations (eval_every) keep to the held-out loss, as each
  // zero-shot pass builds the model twice and runs every set at every width.
  std::vector<std::string> zero_shot_tasks;
  std::string zero_shot_dir;
  int64_t zero_shot_max_items = 0;  // the first N questions of each set; 0 = all
  uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  // Where forward and backward run: "cpu" or "cuda" (GPU 0; needs a build with
  // CUDA and a GPU, else ValidateTuneOptions says FAILED_PRECONDITION; see
  // trainer/training_device.h).
  std::string device = "cpu";
  int keep_checkpoints = 2;  // older checkpoint folders are deleted
  // Bytes of training memory the run may take (0: no limit). Checked before
  // training starts from the model and batch shape.
  int64_t max_memory_bytes = 0;
};

// Zero-shot accuracy on one set at one precision (eval/zero_shot.h).
struct ZeroShotScore {
  double acc = 0;
  double acc_norm = 0;
  int64_t questions = 0;
};

// Loss at one precision on the held-out data, and the zero-shot scores when
// the evaluation ran them. bits == 0 means unquantized.
struct EvalPoint {
  int bits = 0;
  double loss = 0;
  double perplexity = 0;
  int64_t tokens = 0;
  std::map<std::string, ZeroShotScore> zero_shot;  // by task name
};
struct Evaluation {
  int64_t step = 0;
  std::vector<EvalPoint> points;
  // How the quantized points were reconstructed (the run's reconstruction).
  sefp::Reconstruction reconstruction = sefp::Reconstruction::kMidpoint;
  // LAA state of the evaluated weights: gradients accumulated but not applied,
  // and steps since the last flush (-1: none yet, or LAA is off).
  int laa_pending = 0;
  int64_t steps_since_laa_flush = -1;
};

struct StepMetrics {
  int64_t step = 0;           // optimizer steps done (1-based after the first)
  int64_t total_steps = 0;
  int bits = 0;               // 0 = unquantized
  double loss = 0;            // mean over the step's micro-batches
  double learning_rate = 0;
  double grad_norm = 0;       // this step's gradient, before clipping
  bool accumulated = false;   // LAA kept this step's gradient for later
  bool laa_flush = false;     // this step applied the LAA accumulator
  bool laa_drain = false;     // ... as the drain before the settle steps (or the end)
  bool laa_paused = false;    // a settle step: LAA paused, the gradient applied at once
  // On a flush: the applied accumulator's norm before clipping, and the loss
  // of this step's batch at this step's precision just before and just after
  // the flush (the flush's own effect: nothing else changes the weights between).
  double flush_norm = 0;
  double flush_loss_before = 0;
  double flush_loss_after = 0;
  int64_t tokens = 0;         // scored tokens trained on so far
  double tokens_per_second = 0;
  double elapsed_seconds = 0;
};

struct CheckpointRecord {
  int64_t step = 0;
  std::string path;  // the checkpoint folder
  double train_loss = 0;
  std::optional<Evaluation> evaluation;
};

// What a run reports as it goes. Every callback is optional and runs on the
// tuning thread: keep them quick.
struct TuneCallbacks {
  std::function<void(const std::string& message)> on_status;  // phases: loading, ...
  std::function<void(const data::DataReport& report)> on_dataset;
  std::function<void(const StepMetrics& metrics)> on_step;
  std::function<void(const Evaluation& evaluation)> on_evaluation;
  std::function<void(const CheckpointRecord& checkpoint)> on_checkpoint;
};

struct TuneResult {
  int64_t steps = 0;
  int64_t tokens = 0;
  bool cancelled = false;
  std::string sefp_path;    // output_dir/model.sefp (empty when cancelled)
  std::string master_path;  // the last checkpoint's master.safetensors
  std::optional<Evaluation> final_evaluation;
  std::map<int, int64_t> bit_selections;  // how often each width was picked (0 = fp)
};

// OK iff every name is a known zero-shot set (eval/zero_shot.h) and none
// repeats; else InvalidArgument naming the task and the known ones.
absl::Status CheckZeroShotTasks(const std::vector<std::string>& names);

// Checks everything that can be checked without training (paths, strategy,
// bit set, hyperparameters): the server validates a job with this before
// queueing it.
absl::Status ValidateTuneOptions(const TuneOptions& options);

// Runs a whole tuning run. `cancel` (may be null) is polled at every step
// boundary: when set, the run writes a checkpoint and returns with
// cancelled = true and no exported model.
absl::StatusOr<TuneResult> RunTuning(const TuneOptions& options, const TuneCallbacks& callbacks,
                                     const std::atomic<bool>* cancel);

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_TUNER_H_
