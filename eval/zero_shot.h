// Zero-shot multiple-choice evaluation in the style of EleutherAI's
// lm-evaluation-harness (lm-eval): each choice is scored by the log-likelihood
// of its continuation given the context, under any Backend at a SEFP precision.
//
// Tokenisation follows lm-eval's HFLM._encode_pair:
//   continuation = delimiter + choice   (lm-eval's target_delimiter, " ")
//   trailing whitespace of the context moves to the front of the continuation
//   context_tokens = [BOS if the tokenizer adds one] + Encode(context)
//   continuation_tokens = (BOS + Encode(context + continuation))[len(context_tokens):]
// so a continuation's tokens are those of the whole string beyond the context's
// tokens, and the context's tokens are the same for every choice that shares
// the context. An empty context (with no BOS) becomes [BOS] or else [EOS], as
// lm-eval uses its end-of-text token. (lm-eval itself adds no BOS for most
// Hugging Face models; we follow the tokenizer's add_bos, as the engine and
// `otaro eval ppl` do: SmolLM2 adds none, llama SentencePiece models add one.)
// A sequence longer than the KV cache allows loses context tokens from the left,
// as lm-eval truncates to max_length.
//
// Metrics, per task (one question):
//   acc       argmax_i sum log p(continuation_i), the first maximum on ties
//   acc_norm  argmax_i sum log p(continuation_i) / length_i, length_i = Unicode
//             code points of choice i without the delimiter (lm-eval's
//             len(choice), bytes for ASCII text)
//   with a single choice (LAMBADA): correct iff every continuation token is the
//   model's greedy (argmax) token; acc_norm is then the same as acc.
// Standard errors are lm-eval's: sample standard deviation (n - 1) / sqrt(n),
// i.e. sqrt(p (1 - p) / (n - 1)).
//
// Cost: the context of each task runs once; each choice then rewinds the KV
// sequence to the end of the context (SequenceStep::start_position) and runs
// only its own tokens. Several tasks share each Forward (one KV sequence each),
// so the linear layers see many rows at once.
#ifndef OTARO_EVAL_ZERO_SHOT_H_
#define OTARO_EVAL_ZERO_SHOT_H_

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/runtime/backend.h"
#include "engine/tokenizer/tokenizer.h"

namespace otaro::eval {

// One question. Either one context shared by every choice (contexts.size() ==
// 1), or one context per choice with a shared continuation text (WinoGrande's
// "partial evaluation": contexts.size() == choices.size()).
struct MultipleChoiceTask {
  std::vector<std::string> contexts;
  // What follows the context, without the delimiter (" " is put between).
  std::vector<std::string> choices;
  std::string delimiter = " ";
  int gold = 0;  // index into choices
  // Where it came from ("path:line"), for error messages.
  std::string where;
};

// The score of one task.
struct TaskScore {
  std::vector<double> loglikelihoods;  // per choice, natural log
  std::vector<bool> greedy;            // per choice: every token is the argmax
  std::vector<int64_t> num_tokens;     // continuation tokens per choice
  int prediction = -1;                 // acc's choice
  int prediction_norm = -1;            // acc_norm's choice
  bool correct = false;
  bool correct_norm = false;
};

struct ZeroShotResult {
  int64_t count = 0;
  int64_t correct = 0;
  int64_t correct_norm = 0;
  double acc = NAN;
  double acc_norm = NAN;
  double acc_stderr = NAN;
  double acc_norm_stderr = NAN;
  // Mean over tasks of the gold continuation's log-likelihood; for LAMBADA
  // lm-eval's perplexity is exp(-mean_gold_loglikelihood).
  double mean_gold_loglikelihood = NAN;
  int64_t forward_tokens = 0;  // positions run through the model
};

struct ZeroShotOptions {
  // Evaluate only the first `limit` tasks (lm-eval's --limit); 0 = all.
  int64_t limit = 0;
  // Tasks per Forward (one KV sequence each) and the most context tokens one
  // Forward may carry; a task longer than that still runs (alone).
  int64_t max_batch_tasks = 16;
  int64_t max_batch_tokens = 2048;
  // Called after each batch: (tasks done, tasks in all, result so far).
  std::function<void(int64_t, int64_t, const ZeroShotResult&)> progress;
  // If set: one entry per evaluated task, in order.
  std::vector<TaskScore>* scores = nullptr;
};

// InvalidArgument for a precision the backend cannot run, a malformed task
// (no choices, gold out of range, an empty choice, a context count that is
// neither 1 nor the number of choices: the message names task.where), or a
// continuation that does not fit in the KV cache. Frees its KV sequences
// whatever happens.
absl::StatusOr<ZeroShotResult> EvaluateZeroShot(engine::Backend& backend,
                                                const engine::tokenizer::Tokenizer& tokenizer,
                                                const std::vector<MultipleChoiceTask>& tasks,
                                                int precision, const ZeroShotOptions& options = {});

// ---- Data sets -------------------------------------------------------------

// MosaicML llm-foundry JSONL, one {"query", "choices", "gold"} object a line.
// Each context is query + query_suffix.
absl::StatusOr<std::vector<MultipleChoiceTask>> LoadMosaicMultipleChoice(
    const std::string& path, const std::string& query_suffix = "");
// WinoGrande's original JSONL {sentence with one "_", option1, option2,
// answer "1"|"2"}: contexts = sentence before "_" + option, choice = the rest
// of the sentence, stripped (lm-eval's partial evaluation).
absl::StatusOr<std::vector<MultipleChoiceTask>> LoadWinogrande(const std::string& path);
// llama.cpp's HellaSwag text: 6 lines a task (context, gold label 0-3, four
// endings), each text passed through lm-eval's hellaswag preprocess (strip,
// " [title]" -> ". ", drop "[...]", "  " -> " ").
absl::StatusOr<std::vector<MultipleChoiceTask>> LoadHellaswag(const std::string& path);
// LAMBADA JSONL {context, continuation}: one choice, scored greedily.
absl::StatusOr<std::vector<MultipleChoiceTask>> LoadLambada(const std::string& path);

// The task names the CLI knows, in a stable order.
const std::vector<std::string>& KnownTaskNames();
// Loads a named task from `data_dir` (the shared data's eval/ folder) with its
// lm-eval style prompt (see zero_shot.cc for each task's file and format).
// NotFound for an unknown name, with the known names.
absl::StatusOr<std::vector<MultipleChoiceTask>> LoadNamedTask(const std::string& name,
                                                              const std::string& data_dir);

}  // namespace otaro::eval

#endif  // OTARO_EVAL_ZERO_SHOT_H_
