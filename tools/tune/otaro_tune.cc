// otaro-tune: an offline OTARo tuning run (`otaro tune ...` through the otaro
// CLI). It runs trainer::RunTuning, the same code as the server's tuning
// worker, and shows it as a progress bar, a per-step JSONL log (written by the
// trainer into OUT/steps.jsonl) and a final per-bit-width table.
//
//   otaro tune --model PATH --data PATH --out DIR [options]
//   otaro tune --recipe FILE --model PATH --out DIR [--data-dir DIR] [options]
// A recipe (common/recipe/recipe.h) sets options first; each of its keys is the
// flag of the same name (heldout: --eval-data), its relative data paths are
// read from --data-dir (default: the current folder), and every flag given on
// the command line overrides it.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/recipe/recipe.h"
#include "sefp/format.h"
#include "trainer/data/data_source.h"
#include "trainer/strategy/strategy.h"
#include "trainer/tuner.h"

namespace {

using otaro::trainer::TuneOptions;

std::atomic<bool> g_cancel{false};

void OnSignal(int) { g_cancel.store(true); }

// One command-line option: its name, the value it takes (empty for a switch)
// and how it sets TuneOptions. The usage text is generated from this table.
struct Flag {
  const char* name;
  const char* value;  // "" = a switch
  const char* help;
  std::function<absl::Status(const std::string& value, TuneOptions* options)> set;
};

absl::Status Bad(const std::string& flag, const std::string& value, const std::string& want) {
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " ", value, ": expected ", want));
}

template <typename T>
std::function<absl::Status(const std::string&, TuneOptions*)> Int(const char* flag,
                                                                  T TuneOptions::*field) {
  return [flag, field](const std::string& v, TuneOptions* o) {
    int64_t x;
    if (!absl::SimpleAtoi(v, &x)) return Bad(flag, v, "an integer");
    o->*field = static_cast<T>(x);
    return absl::OkStatus();
  };
}

absl::Status ParseDouble(const char* flag, const std::string& v, double* out) {
  if (!absl::SimpleAtod(v, out)) return Bad(flag, v, "a number");
  return absl::OkStatus();
}

std::vector<Flag> Flags() {
  using otaro::trainer::LaaOptions;
  return {
      {"model", "PATH", "float model to tune: HF folder, GGUF, llama2.c or master checkpoint",
       [](const std::string& v, TuneOptions* o) { o->model_path = v; return absl::OkStatus(); }},
      {"data", "PATH", "training data: text file or folder, Alpaca or chat JSON(L)",
       [](const std::string& v, TuneOptions* o) { o->data_path = v; return absl::OkStatus(); }},
      {"out", "DIR", "output folder (checkpoints, steps.jsonl, evaluation.json, model.sefp)",
       [](const std::string& v, TuneOptions* o) { o->output_dir = v; return absl::OkStatus(); }},
      {"format", "auto|text|alpaca|chat", "data format (default auto)",
       [](const std::string& v, TuneOptions* o) {
         auto f = otaro::trainer::data::ParseDataFormat(v);
         if (!f.ok()) return f.status();
         o->data_format = *f;
         return absl::OkStatus();
       }},
      {"eval-data", "PATH", "held-out data (default: the tail of --data, see --eval-fraction)",
       [](const std::string& v, TuneOptions* o) { o->eval_data_path = v; return absl::OkStatus(); }},
      {"eval-fraction", "F", "fraction of --data held out when no --eval-data (default 0.05)",
       [](const std::string& v, TuneOptions* o) {
         return ParseDouble("eval-fraction", v, &o->eval_fraction);
       }},
      {"eval-batches", "N", "cap on evaluation batches, 0 = all (default 16)",
       Int("eval-batches", &TuneOptions::max_eval_batches)},
      {"eval-items", "N", "as a tuning job's eval_items: --eval-batches N and N zero-shot questions",
       [](const std::string& v, TuneOptions* o) {
         int64_t x;
         if (!absl::SimpleAtoi(v, &x) || x < 0) return Bad("eval-items", v, "an integer >= 0");
         o->max_eval_batches = x;
         o->zero_shot_max_items = x;
         return absl::OkStatus();
       }},
      {"zero-shot", "LIST", "zero-shot sets scored at every precision, e.g. arc_easy,piqa",
       [](const std::string& v, TuneOptions* o) {
         o->zero_shot_tasks = absl::StrSplit(v, ',', absl::SkipEmpty());
         return absl::OkStatus();
       }},
      {"zero-shot-dir", "DIR", "folder of the zero-shot sets (the shared data's eval/)",
       [](const std::string& v, TuneOptions* o) { o->zero_shot_dir = v; return absl::OkStatus(); }},
      {"strategy", "S",
       "otaro | bps | uniform | fixed:M | fp, or uniform+laa | fixed:M+laa (default otaro)",
       [](const std::string& v, TuneOptions* o) { o->strategy = v; return absl::OkStatus(); }},
      {"bits", "LIST", "bit set B, e.g. 3,4,5,6,7,8 or 3-8 (default 3-8)",
       [](const std::string& v, TuneOptions* o) {
         auto bits = otaro::trainer::ParseBitSet(v);
         if (!bits.ok()) return bits.status();
         o->bits = *bits;
         return absl::OkStatus();
       }},
      {"eval-bits", "LIST", "precisions evaluated besides fp32 (default: --bits)",
       [](const std::string& v, TuneOptions* o) {
         auto bits = otaro::trainer::ParseBitSet(v);
         if (!bits.ok()) return bits.status();
         o->eval_bits = *bits;
         return absl::OkStatus();
       }},
      {"eval-at-start", "", "also evaluate the untouched model (reported as step 0)",
       [](const std::string&, TuneOptions* o) {
         o->evaluate_at_start = true;
         return absl::OkStatus();
       }},
      {"steps", "N", "optimizer steps (with --epochs: whichever ends first)",
       Int("steps", &TuneOptions::steps)},
      {"epochs", "F", "passes over the data (default 1 when --steps is not given)",
       [](const std::string& v, TuneOptions* o) { return ParseDouble("epochs", v, &o->epochs); }},
      {"seq-len", "N", "tokens per row (default 128)", Int("seq-len", &TuneOptions::seq_len)},
      {"batch", "N", "rows per micro-batch (default 4)", Int("batch", &TuneOptions::batch_size)},
      {"grad-accum", "N", "micro-batches per optimizer step (default 1)",
       Int("grad-accum", &TuneOptions::grad_accumulation)},
      {"optimizer", "sgd|adamw", "optimizer (default sgd, as the paper)",
       [](const std::string& v, TuneOptions* o) {
         auto kind = otaro::trainer::ParseOptimizerKind(v);
         if (!kind.ok()) return kind.status();
         o->optimizer.kind = *kind;
         return absl::OkStatus();
       }},
      {"lr", "F", "learning rate (default 1e-5)",
       [](const std::string& v, TuneOptions* o) {
         return ParseDouble("lr", v, &o->schedule.lr);
       }},
      {"weight-decay", "F", "decoupled weight decay (default 0)",
       [](const std::string& v, TuneOptions* o) {
         return ParseDouble("weight-decay", v, &o->optimizer.weight_decay);
       }},
      {"schedule", "constant|cosine", "learning-rate schedule (default constant)",
       [](const std::string& v, TuneOptions* o) {
         auto kind = otaro::trainer::ParseLrScheduleKind(v);
         if (!kind.ok()) return kind.status();
         o->schedule.kind = *kind;
         return absl::OkStatus();
       }},
      {"warmup", "N", "linear warmup steps of the cosine schedule (default 0)",
       [](const std::string& v, TuneOptions* o) {
         int64_t x;
         if (!absl::SimpleAtoi(v, &x)) return Bad("warmup", v, "an integer");
         o->schedule.warmup_steps = x;
         return absl::OkStatus();
       }},
      {"min-lr", "F", "final learning rate of the cosine schedule (default 0)",
       [](const std::string& v, TuneOptions* o) {
         return ParseDouble("min-lr", v, &o->schedule.min_lr);
       }},
      {"clip", "F",
       "clip the norm of every applied update (LAA flushes too) to F, 0 = off (default 1)",
       [](const std::string& v, TuneOptions* o) {
         return ParseDouble("clip", v, &o->clip_grad_norm);
       }},
      {"lambda", "F", "BPS exploration weight (default 5)",
       [](const std::string& v, TuneOptions* o) { return ParseDouble("lambda", v, &o->bps.lambda); }},
      {"bps-loss", "latest|ema", "BPS loss L_b (default latest)",
       [](const std::string& v, TuneOptions* o) {
         auto mode = otaro::trainer::ParseBpsLossMode(v);
         if (!mode.ok()) return mode.status();
         o->bps.loss = *mode;
         return absl::OkStatus();
       }},
      {"laa-n", "N", "LAA: apply the accumulator every N ultra-low steps (default 10)",
       [](const std::string& v, TuneOptions* o) {
         int64_t x;
         if (!absl::SimpleAtoi(v, &x)) return Bad("laa-n", v, "an integer");
         o->laa.n = static_cast<int>(x);
         return absl::OkStatus();
       }},
      {"laa-ultra-low", "M", "LAA: bit-widths <= M accumulate (default 4)",
       [](const std::string& v, TuneOptions* o) {
         int64_t x;
         if (!absl::SimpleAtoi(v, &x)) return Bad("laa-ultra-low", v, "an integer");
         o->laa.ultra_low_max_bits = static_cast<int>(x);
         return absl::OkStatus();
       }},
      {"laa-reduce", "sum|mean", "LAA: apply the sum (paper) or the mean (default sum)",
       [](const std::string& v, TuneOptions* o) {
         auto reduce = otaro::trainer::ParseLaaReduce(v);
         if (!reduce.ok()) return reduce.status();
         o->laa.reduce = *reduce;
         return absl::OkStatus();
       }},
      {"eval-settle", "N",
       "LAA: drain the accumulator N steps before the end, apply at once after (default 20)",
       Int("eval-settle", &TuneOptions::eval_settle_steps)},
      {"reconstruction", "midpoint|truncate", "SEFP reconstruction (default midpoint)",
       [](const std::string& v, TuneOptions* o) {
         auto mode = otaro::sefp::ParseReconstruction(v);
         if (!mode.ok()) return mode.status();
         o->reconstruction = *mode;
         return absl::OkStatus();
       }},
      {"eval-every", "N", "evaluate every N steps (default: only at the end)",
       Int("eval-every", &TuneOptions::eval_every)},
      {"checkpoint-every", "N", "checkpoint every N steps (default: only at the end)",
       Int("checkpoint-every", &TuneOptions::checkpoint_every)},
      {"keep-checkpoints", "N", "checkpoint folders kept (default 2)",
       Int("keep-checkpoints", &TuneOptions::keep_checkpoints)},
      {"resume", "", "continue from OUT/checkpoints/LATEST",
       [](const std::string&, TuneOptions* o) { o->resume = true; return absl::OkStatus(); }},
      {"seed", "N", "data order and uniform draws (default 1)", Int("seed", &TuneOptions::seed)},
      {"threads", "N", "CPU threads, 0 = all cores (default 0)",
       Int("threads", &TuneOptions::threads)},
      {"device", "cpu|cuda", "where training runs (default cpu; cuda: GPU 0, builds with --define=otaro_cuda_trainer=on)",
       [](const std::string& v, TuneOptions* o) { o->device = v; return absl::OkStatus(); }},
  };
}

std::string UsageText() {
  std::string text =
      "usage: otaro tune --model PATH --data PATH --out DIR [options]\n"
      "       otaro tune --recipe FILE --model PATH --out DIR [--data-dir DIR] [options]\n\n"
      "OTARo fine-tuning (BPS + LAA, docs in ../shared/design/OTARO.md): tunes the\n"
      "float32 weights once for all SEFP precisions, then writes DIR/model.sefp.\n"
      "Ctrl-C stops at the next step with a checkpoint; --resume continues.\n\noptions:\n";
  for (const Flag& flag : Flags()) {
    std::string left = absl::StrCat("  --", flag.name, *flag.value ? " " : "", flag.value);
    absl::StrAppend(&text, absl::StrFormat("%-34s %s\n", left, flag.help));
  }
  absl::StrAppend(&text, absl::StrFormat("%-34s %s\n", "  --recipe FILE",
                                         "settings from a recipe (deploy/recipes/); flags override"));
  absl::StrAppend(&text, absl::StrFormat("%-34s %s\n", "  --data-dir DIR",
                                         "folder the recipe's relative data paths are in"));
  absl::StrAppend(&text, absl::StrFormat("%-34s %s\n", "  --quiet", "no progress bar"));
  return text;
}

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "otaro tune: %s\n\n", error.c_str());
  std::fputs(UsageText().c_str(), stderr);
  return 2;
}

std::string PrecisionName(int bits) { return bits == 0 ? "fp32" : absl::StrCat("E5M", bits); }

// One line, redrawn in place on a terminal; a plain line every 10% otherwise.
class ProgressBar {
 public:
  explicit ProgressBar(bool quiet) : quiet_(quiet), tty_(::isatty(STDERR_FILENO)) {}

  void Step(const otaro::trainer::StepMetrics& m) {
    if (quiet_) return;
    const double fraction = static_cast<double>(m.step) / std::max<int64_t>(1, m.total_steps);
    const int width = 24;
    const int filled = static_cast<int>(fraction * width);
    const double eta = m.step > 0 ? m.elapsed_seconds * (m.total_steps - m.step) / m.step : 0;
    const std::string line = absl::StrFormat(
        "[%s%s] %d/%d  %-5s loss %.4f  lr %.2g  %.0f tok/s  eta %.0fs%s",
        std::string(filled, '#'), std::string(width - filled, '.'), m.step, m.total_steps,
        PrecisionName(m.bits), m.loss, m.learning_rate, m.tokens_per_second, eta,
        m.accumulated ? "  (LAA +)" : m.laa_flush ? "  (LAA apply)" : "");
    if (tty_) {
      std::fprintf(stderr, "\r%-110s", line.c_str());
      if (m.step == m.total_steps) std::fputc('\n', stderr);
    } else if (m.step == m.total_steps || m.step * 10 / m.total_steps !=
                                               (m.step - 1) * 10 / m.total_steps) {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
  }

  void Message(const std::string& text) {
    if (quiet_) return;
    std::fprintf(stderr, "%s%s\n", tty_ ? "\r" : "", text.c_str());
  }

 private:
  bool quiet_;
  bool tty_;
};

void PrintEvaluation(const otaro::trainer::Evaluation& evaluation) {
  std::printf("\nheld-out evaluation after step %lld (reconstruction %s; LAA: %d pending, %s)\n",
              static_cast<long long>(evaluation.step),
              std::string(otaro::sefp::ReconstructionName(evaluation.reconstruction)).c_str(),
              evaluation.laa_pending,
              evaluation.steps_since_laa_flush < 0
                  ? "no flush yet"
                  : absl::StrCat("last flush ", evaluation.steps_since_laa_flush, " steps ago")
                        .c_str());
  std::printf("%-10s %12s %12s %10s\n", "precision", "loss", "perplexity", "tokens");
  for (const auto& p : evaluation.points) {
    std::printf("%-10s %12.4f %12.3f %10lld\n", PrecisionName(p.bits).c_str(), p.loss,
                p.perplexity, static_cast<long long>(p.tokens));
  }
}

}  // namespace

// Sets one option by flag name ("seq-len" or "seq_len"); an error names it.
absl::Status SetFlag(const std::vector<Flag>& flags, std::string name, const std::string& value,
                     TuneOptions* options) {
  for (char& c : name) c = c == '_' ? '-' : c;
  for (const Flag& f : flags) {
    if (name == f.name) return f.set(value, options);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown option --", name));
}

// The recipe's settings, then nothing else: flags given on the command line
// are applied after, so they win.
absl::Status ApplyRecipe(const std::vector<Flag>& flags, const std::string& path,
                         const std::string& data_dir, TuneOptions* options) {
  auto settings = otaro::recipe::ReadRecipe(path);
  if (!settings.ok()) return settings.status();
  for (const otaro::recipe::Setting& setting : *settings) {
    if (setting.key == "name") continue;  // a job's display name; nothing offline
    std::string value = setting.value;
    if ((setting.key == "data" || setting.key == "heldout") && !data_dir.empty() &&
        !absl::StartsWith(value, "/")) {
      value = absl::StrCat(data_dir, "/", value);
    }
    const std::string flag = setting.key == "heldout" ? "eval-data" : setting.key;
    if (absl::Status s = SetFlag(flags, flag, value, options); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("recipe ", path, ": ", setting.path, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

int main(int argc, char** argv) {
  TuneOptions options;
  bool quiet = false;
  const std::vector<Flag> flags = Flags();
  // (name, value) of every flag, in order; --recipe and --data-dir apart.
  std::vector<std::pair<std::string, std::string>> given;
  std::string recipe, data_dir;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(UsageText().c_str(), stdout);
      return 0;
    }
    if (arg == "--quiet") {
      quiet = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) return Usage(absl::StrCat("unexpected argument '", arg, "'"));
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    for (char& c : name) c = c == '_' ? '-' : c;
    const bool ours = name == "recipe" || name == "data-dir";
    const Flag* flag = nullptr;
    for (const Flag& f : flags) {
      if (name == f.name) flag = &f;
    }
    if (flag == nullptr && !ours) return Usage(absl::StrCat("unknown option --", name));
    if ((ours || *flag->value) && !has_value) {
      if (i + 1 >= argc) return Usage(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    if (name == "recipe") {
      recipe = value;
    } else if (name == "data-dir") {
      data_dir = value;
    } else {
      given.emplace_back(name, value);
    }
  }
  if (!recipe.empty()) {
    if (absl::Status s = ApplyRecipe(flags, recipe, data_dir, &options); !s.ok()) {
      std::fprintf(stderr, "otaro tune: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }
  for (const auto& [name, value] : given) {
    absl::Status status = SetFlag(flags, name, value, &options);
    if (!status.ok()) return Usage(std::string(status.message()));
  }
  if (options.model_path.empty() || options.data_path.empty() || options.output_dir.empty()) {
    return Usage("--model, --data (or a recipe's data.path) and --out are required");
  }
  if (absl::Status valid = otaro::trainer::ValidateTuneOptions(options); !valid.ok()) {
    std::fprintf(stderr, "otaro tune: %s\n", std::string(valid.message()).c_str());
    return 2;
  }

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  ProgressBar bar(quiet);
  otaro::trainer::TuneCallbacks callbacks;
  callbacks.on_status = [&](const std::string& message) { bar.Message(message); };
  callbacks.on_dataset = [&](const otaro::trainer::data::DataReport& report) {
    bar.Message(report.ToString());
  };
  callbacks.on_step = [&](const otaro::trainer::StepMetrics& m) { bar.Step(m); };
  // Intermediate evaluations as they come; the final one once, at the end.
  int64_t last_printed_step = -1;
  callbacks.on_evaluation = [&](const otaro::trainer::Evaluation& e) {
    if (quiet) return;
    PrintEvaluation(e);
    last_printed_step = e.step;
  };
  callbacks.on_checkpoint = [&](const otaro::trainer::CheckpointRecord& c) {
    bar.Message(absl::StrCat("checkpoint ", c.path));
  };

  auto result = otaro::trainer::RunTuning(options, callbacks, &g_cancel);
  if (!result.ok()) {
    std::fprintf(stderr, "otaro tune: %s\n", std::string(result.status().message()).c_str());
    return 1;
  }
  std::vector<std::string> picks;
  for (const auto& [bits, count] : result->bit_selections) {
    picks.push_back(absl::StrCat(PrecisionName(bits), " x", count));
  }
  std::printf("%s after %lld steps, %lld tokens; bit-widths: %s\n",
              result->cancelled ? "cancelled" : "finished", static_cast<long long>(result->steps),
              static_cast<long long>(result->tokens), absl::StrJoin(picks, ", ").c_str());
  if (result->final_evaluation && result->final_evaluation->step != last_printed_step) {
    PrintEvaluation(*result->final_evaluation);
  }
  if (!result->sefp_path.empty()) std::printf("\ntuned model: %s\n", result->sefp_path.c_str());
  std::printf("master weights: %s\n", result->master_path.c_str());
  return result->cancelled ? 130 : 0;
}
