// otaro-eval: offline model evaluation. Run as `otaro eval ...` through the
// otaro CLI, or directly.
//
//   otaro eval ppl MODEL TEXT_FILE [--bits 8,7,6,5,4,3,2] [--fp] [--window 512]
//       [--stride 512] [--max_tokens N] [--threads 0] [--json] [--quantize_lm_head]
//
// Sliding-window perplexity (eval/perplexity.h) of MODEL over a UTF-8
// text file at each SEFP precision, and in float32 with --fp. The whole file is
// tokenized once (BOS prepended once if the tokenizer adds BOS; CRLF normalised
// to LF), optionally capped to its first --max_tokens tokens.
//
//   otaro eval zeroshot --model MODEL --task arc_easy,piqa,... [--bits 8,6,4]
//       [--fp] [--limit N] [--data-dir ../shared/data/eval] [--threads 0] [--json]
//
// Zero-shot multiple-choice accuracy (acc / acc_norm, lm-eval style; see
// eval/zero_shot.h) of MODEL on each task at each precision.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/utf8.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/loader.h"
#include "nlohmann/json.hpp"
#include "sefp/format.h"
#include "eval/perplexity.h"
#include "eval/precision_sweep.h"
#include "eval/zero_shot.h"

namespace {

using otaro::engine::LlamaModel;
using otaro::engine::LoadModel;
using otaro::engine::LoadOptions;
using otaro::engine::Token;

constexpr char kUsage[] =
    "usage: otaro eval ppl MODEL TEXT_FILE [options]\n"
    "       otaro eval zeroshot --model MODEL --task NAMES [options]   (zeroshot --help)\n"
    "\n"
    "Perplexity of MODEL (SEFP checkpoint, Hugging Face folder, GGUF, llama2.c)\n"
    "over a UTF-8 text file, at each SEFP precision and optionally in float32.\n"
    "\n"
    "options:\n"
    "  --bits LIST        mantissa bits to evaluate, comma separated (default 8,7,6,5,4,3,2;\n"
    "                     E5M4 accepted; empty with --fp: float32 only)\n"
    "  --fp               also evaluate the unquantized float32 model (for a SEFP\n"
    "                     checkpoint: its E5M8 weights decoded to float32)\n"
    "  --lm_head P        how the lm_head is read: E5M8..E5M2, request (each\n"
    "                     evaluated precision) or float32 (default E5M8, as served)\n"
    "  --window N         tokens per window (default 512)\n"
    "  --stride N         tokens the window advances by, 1..window (default 512;\n"
    "                     stride == window: non-overlapping windows)\n"
    "  --max_tokens N     evaluate only the first N tokens of the file (default: all)\n"
    "  --threads N        CPU threads, 0 = all cores (default 0)\n"
    "  --json             print one JSON object instead of the table\n";

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "otaro eval: %s\n\n", error.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

struct Args {
  std::string model, text;
  std::vector<int> bits = {8, 7, 6, 5, 4, 3, 2};
  bool fp = false;
  std::string lm_head = "E5M8";
  int64_t window = 512;
  int64_t stride = 512;
  int64_t max_tokens = 0;  // 0 = all
  int threads = 0;
  bool json = false;
};

// "" on success, else the error.
std::string ParseArgs(const std::vector<std::string>& argv, Args* args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string arg = argv[i];
    if (arg.size() < 2 || arg.rfind("--", 0) != 0) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "fp" || name == "json") {
      bool flag = true;
      if (has_value && !absl::SimpleAtob(value, &flag)) {
        return absl::StrCat("--", name, ": not a boolean: '", value, "'");
      }
      (name == "fp" ? args->fp : args->json) = flag;
      continue;
    }
    if (name != "bits" && name != "window" && name != "stride" && name != "max_tokens" &&
        name != "threads" && name != "lm_head") {
      return absl::StrCat("unknown option --", name);
    }
    if (!has_value) {
      if (i + 1 >= argv.size()) return absl::StrCat("--", name, " needs a value");
      value = argv[++i];
    }
    if (name == "lm_head") {
      if (absl::Status s = otaro::engine::LmHeadPrecision::Parse(value).status(); !s.ok()) {
        return absl::StrCat("--lm_head: ", s.message());
      }
      args->lm_head = value;
      continue;
    }
    if (name == "bits") {
      args->bits.clear();
      if (value.empty()) continue;
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        absl::StatusOr<int> m = otaro::sefp::ParsePrecision(part);
        if (!m.ok()) return absl::StrCat("--bits: ", m.status().message());
        args->bits.push_back(*m);
      }
      continue;
    }
    int64_t number;
    if (!absl::SimpleAtoi(value, &number) || number < 0) {
      return absl::StrCat("--", name, ": not a non-negative integer: '", value, "'");
    }
    if (name == "window") args->window = number;
    if (name == "stride") args->stride = number;
    if (name == "max_tokens") args->max_tokens = number;
    if (name == "threads") args->threads = static_cast<int>(number);
  }
  if (positional.size() != 2) {
    return absl::StrCat("expected MODEL and TEXT_FILE, got ", positional.size(), " argument(s)");
  }
  args->model = positional[0];
  args->text = positional[1];
  if (args->window < 2) return "--window must be at least 2";
  if (args->stride < 1 || args->stride > args->window) {
    return absl::StrCat("--stride must be in 1..window (", args->window, ")");
  }
  if (args->max_tokens == 1) return "--max_tokens must be 0 (all) or at least 2";
  if (args->bits.empty() && !args->fp) return "nothing to evaluate: --bits is empty and no --fp";
  return "";
}

// One line on stderr, redrawn in place on a terminal.
void Progress(const std::string& line, bool final_line) {
  static const bool tty = ::isatty(::fileno(stderr));
  if (tty) {
    std::fprintf(stderr, "\r%-78s", line.c_str());
    if (final_line) std::fputc('\n', stderr);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

struct Row {
  std::string precision;  // "E5M8" .. "E5M2", "fp32"
  otaro::eval::PerplexityResult result;
  double seconds = 0;
};

absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& path, bool quantize,
                                                  const std::string& lm_head) {
  LoadOptions options;
  options.quantize = quantize;
  OTARO_ASSIGN_OR_RETURN(options.lm_head, otaro::engine::LmHeadPrecision::Parse(lm_head));
  int64_t last = -1;
  options.progress = [&](int64_t done, int64_t total, absl::string_view) {
    const int64_t decile = done * 10 / std::max<int64_t>(total, 1);
    if (decile != last) {
      last = decile;
      Progress(absl::StrFormat("loading %s (%s): %lld/%lld tensors", path,
                               quantize ? "SEFP" : "float32", static_cast<long long>(done),
                               static_cast<long long>(total)),
               done == total);
    }
  };
  return LoadModel(path, options);
}

// The KV budget perplexity needs: room for one window, at least the default.
int64_t PerplexityKvBudget(const LlamaModel& model, const Args& args) {
  const auto& c = model.config;
  const int64_t per_token = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4;
  return std::max<int64_t>(otaro::engine::KvCacheOptions().budget_bytes,
                           per_token * (args.window + 64));
}

absl::StatusOr<Row> Evaluate(otaro::engine::Backend& backend, const Args& args,
                             const std::vector<Token>& tokens, int m, const std::string& label) {
  Row row;
  row.precision = label;
  otaro::eval::PerplexityOptions popts;
  const absl::Time start = absl::Now();
  popts.progress = [&](int64_t done, int64_t total, const otaro::eval::PerplexityResult& r) {
    const double s = absl::ToDoubleSeconds(absl::Now() - start);
    Progress(absl::StrFormat("%s: window %lld/%lld, %lld tokens scored, ppl %.4f, %.1f tokens/s",
                             label, static_cast<long long>(done), static_cast<long long>(total),
                             static_cast<long long>(r.tokens), r.Perplexity(),
                             r.forward_tokens / std::max(s, 1e-9)),
             done == total);
  };
  auto result = otaro::eval::EvaluatePerplexity(backend, tokens, m, args.window, args.stride,
                                                popts);
  if (!result.ok()) return result.status();
  row.result = *result;
  row.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return row;
}

int RunPpl(const Args& args) {
  // The text.
  std::ifstream in(args.text, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "otaro eval: cannot open %s: %s\n", args.text.c_str(),
                 std::strerror(errno));
    return 1;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  const size_t file_bytes = text.size();
  if (!otaro::IsValidUtf8(text)) {
    std::fprintf(stderr, "otaro eval: %s is not valid UTF-8\n", args.text.c_str());
    return 1;
  }
  size_t crlf = 0;
  for (size_t p = text.find("\r\n"); p != std::string::npos; p = text.find("\r\n", p + 2)) ++crlf;
  if (crlf > 0) text = absl::StrReplaceAll(text, {{"\r\n", "\n"}});

  // The models: SEFP for --bits, float32 for --fp (loaded one at a time).
  std::unique_ptr<LlamaModel> model;
  {
    auto loaded = Load(args.model, /*quantize=*/!args.bits.empty(), args.lm_head);
    if (!loaded.ok()) {
      std::fprintf(stderr, "otaro eval: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    model = std::move(*loaded);
  }
  if (model->tokenizer == nullptr) {
    std::fprintf(stderr, "otaro eval: %s has no tokenizer\n", args.model.c_str());
    return 1;
  }
  const auto& tok = *model->tokenizer;
  Progress(absl::StrFormat("tokenizing %zu bytes", text.size()), true);
  const absl::Time tok_start = absl::Now();
  std::vector<Token> tokens;
  const bool bos = tok.add_bos() && tok.bos_id() >= 0;
  if (bos) tokens.push_back(tok.bos_id());
  {
    std::vector<Token> body = tok.Encode(text);
    tokens.insert(tokens.end(), body.begin(), body.end());
  }
  const double tok_seconds = absl::ToDoubleSeconds(absl::Now() - tok_start);
  const int64_t file_tokens = static_cast<int64_t>(tokens.size());
  if (args.max_tokens > 0 && file_tokens > args.max_tokens) tokens.resize(args.max_tokens);
  if (tokens.size() < 2) {
    std::fprintf(stderr, "otaro eval: %s gives %zu token(s); perplexity needs at least 2\n",
                 args.text.c_str(), tokens.size());
    return 1;
  }
  const int64_t max_context = model->config.max_position;
  if (max_context > 0 && args.window > max_context) {
    std::fprintf(stderr, "otaro eval: --window %lld is longer than the model's context (%lld)\n",
                 static_cast<long long>(args.window), static_cast<long long>(max_context));
    return 2;
  }

  const std::string tokenizer_desc = absl::StrFormat(
      "%s%s, vocab %d, BOS %s",
      tok.kind() == otaro::engine::tokenizer::ModelKind::kSentencePiece ? "SentencePiece"
                                                                         : "byte-level BPE",
      tok.pre_tokenizer().name.empty() ? "" : absl::StrCat(" (", tok.pre_tokenizer().name, ")"),
      tok.vocab_size(), bos ? absl::StrCat("added once (id ", tok.bos_id(), ")") : "not added");
  const std::string model_desc = absl::StrFormat(
      "%s (%s, %lld layers, hidden %lld, context %lld, %s reconstruction)", args.model,
      model->source_format, static_cast<long long>(model->config.num_layers),
      static_cast<long long>(model->config.hidden_size), static_cast<long long>(max_context),
      otaro::sefp::ReconstructionName(model->reconstruction));
  const std::string text_desc =
      absl::StrFormat("%s (%zu bytes, UTF-8%s)", args.text, file_bytes,
                      crlf > 0 ? absl::StrFormat("; %zu CRLF line ends normalised to LF", crlf)
                               : "");
  const std::string tokens_desc =
      static_cast<int64_t>(tokens.size()) < file_tokens
          ? absl::StrFormat("first %zu of the file's %lld (capped by --max_tokens %lld)",
                            tokens.size(), static_cast<long long>(file_tokens),
                            static_cast<long long>(args.max_tokens))
          : absl::StrFormat("%zu (the whole file)", tokens.size());
  const std::string window_desc = absl::StrFormat(
      "%lld, stride %lld (%s)", static_cast<long long>(args.window),
      static_cast<long long>(args.stride),
      args.stride == args.window
          ? "non-overlapping; the first token of each window is not scored"
          : "each window scores the tokens the previous one did not");
  Progress(absl::StrFormat("tokenized in %.1f s: %lld tokens; evaluating %zu", tok_seconds,
                           static_cast<long long>(file_tokens), tokens.size()),
           true);

  // The model loaded above (for its tokenizer) is the sweep's first; the
  // other representation, if asked for, is loaded when its turn comes.
  const std::string model_format = model->source_format;
  const bool loaded_quantized = !args.bits.empty();
  std::vector<int> bits = args.bits;
  if (args.fp) bits.push_back(0);
  otaro::eval::PrecisionSweep sweep;
  sweep.backend.num_threads = args.threads;
  sweep.backend.kv_cache.budget_bytes = PerplexityKvBudget(*model, args);
  sweep.build_model = [&](bool quantized) -> absl::StatusOr<std::unique_ptr<LlamaModel>> {
    if (model != nullptr && quantized == loaded_quantized) return std::move(model);
    model.reset();
    return Load(args.model, quantized, quantized ? args.lm_head : "float32");
  };
  std::vector<Row> rows;
  absl::Status swept = otaro::eval::SweepPrecisions(
      sweep, bits, [&](const otaro::eval::SweepPoint& at) -> absl::Status {
        const std::string label = at.bits == 0 ? "fp32" : absl::StrCat("E5M", at.bits);
        auto row = Evaluate(at.backend, args, tokens, at.precision, label);
        if (!row.ok()) {
          return absl::Status(row.status().code(), absl::StrCat(label, ": ", row.status().message()));
        }
        rows.push_back(*row);
        return absl::OkStatus();
      });
  if (!swept.ok()) {
    std::fprintf(stderr, "otaro eval: %s\n", swept.ToString().c_str());
    return 1;
  }
  int threads = 0;
  threads = args.threads > 0 ? args.threads : static_cast<int>(std::thread::hardware_concurrency());
  const std::string fp_note =
      args.fp && model_format == "sefp"
          ? "fp32 = the SEFP checkpoint's E5M8 weights decoded to float32 (it holds no other)"
          : "";

  if (args.json) {
    nlohmann::json j;
    j["model"] = args.model;
    j["model_format"] = model_format;
    j["text"] = args.text;
    j["text_bytes"] = file_bytes;
    j["crlf_normalised"] = crlf;
    j["tokenizer"] = tokenizer_desc;
    j["bos_added"] = bos;
    j["window"] = args.window;
    j["stride"] = args.stride;
    j["file_tokens"] = file_tokens;
    j["evaluated_tokens"] = tokens.size();
    j["max_tokens"] = args.max_tokens;
    j["threads"] = threads;
    if (!fp_note.empty()) j["note"] = fp_note;
    for (const Row& r : rows) {
      j["results"].push_back({{"precision", r.precision},
                              {"tokens_scored", r.result.tokens},
                              {"nll_sum", r.result.nll_sum},
                              {"mean_nll", r.result.MeanNll()},
                              {"perplexity", r.result.Perplexity()},
                              {"forward_tokens", r.result.forward_tokens},
                              {"seconds", r.seconds},
                              {"tokens_per_second", r.result.forward_tokens / r.seconds}});
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model      %s\n", model_desc.c_str());
  std::printf("text       %s\n", text_desc.c_str());
  std::printf("tokenizer  %s\n", tokenizer_desc.c_str());
  std::printf("tokens     %s\n", tokens_desc.c_str());
  std::printf("window     %s\n", window_desc.c_str());
  std::printf("threads    %d\n", threads);
  if (!fp_note.empty()) std::printf("note       %s\n", fp_note.c_str());
  std::printf("\n%-9s  %13s  %9s  %11s  %9s\n", "precision", "tokens scored", "mean NLL",
              "perplexity", "tokens/s");
  for (const Row& r : rows) {
    std::printf("%-9s  %13lld  %9.4f  %11.4f  %9.1f\n", r.precision.c_str(),
                static_cast<long long>(r.result.tokens), r.result.MeanNll(),
                r.result.Perplexity(), r.result.forward_tokens / r.seconds);
  }
  std::printf("(mean NLL in nats per scored token; tokens/s = positions run through the model "
              "per second of wall time)\n");
  return 0;
}

// ---- otaro eval zeroshot ------------------------------------------------------

constexpr char kZeroShotUsage[] =
    "usage: otaro eval zeroshot --model MODEL --task NAMES [options]\n"
    "\n"
    "Zero-shot multiple-choice accuracy of MODEL, lm-evaluation-harness style: each\n"
    "choice scored by the log-likelihood of its continuation; acc = argmax of the\n"
    "sum, acc_norm = argmax of the sum per character (LAMBADA: greedy match).\n"
    "\n"
    "options:\n"
    "  --task NAMES       comma separated: arc_easy, arc_challenge, obqa, piqa, boolq,\n"
    "                     winogrande, hellaswag, mathqa, lambada\n"
    "  --bits LIST        mantissa bits, comma separated (default 8,6,5,4,3; empty with --fp:\n"
    "                     float32 only)\n"
    "  --fp               also evaluate the unquantized float32 model\n"
    "  --lm_head P        how the lm_head is read: E5M8..E5M2, request (each\n"
    "                     evaluated precision) or float32 (default E5M8, as served)\n"
    "  --limit N          only the first N questions of each task (default: all)\n"
    "  --data-dir DIR     the shared data's eval/ folder (default ../shared/data/eval)\n"
    "  --batch N          questions per forward step (default 16)\n"
    "  --threads N        CPU threads, 0 = all cores (default 0)\n"
    "  --json             print one JSON object instead of the table\n";

struct ZeroShotArgs {
  std::string model;
  std::vector<std::string> tasks;
  std::vector<int> bits = {8, 6, 5, 4, 3};
  bool fp = false;
  std::string lm_head = "E5M8";
  int64_t limit = 0;
  std::string data_dir = "../shared/data/eval";
  int64_t batch = 16;
  int threads = 0;
  bool json = false;
};

// "" on success, else the error.
std::string ParseZeroShotArgs(const std::vector<std::string>& argv, ZeroShotArgs* args) {
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg.size() < 3 || arg.rfind("--", 0) != 0) {
      return absl::StrCat("unexpected argument '", arg, "' (options only; see --help)");
    }
    std::string name = arg.substr(2), value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "data_dir") name = "data-dir";
    if (name == "fp" || name == "json") {
      bool flag = true;
      if (has_value && !absl::SimpleAtob(value, &flag)) {
        return absl::StrCat("--", name, ": not a boolean: '", value, "'");
      }
      (name == "fp" ? args->fp : args->json) = flag;
      continue;
    }
    if (name != "model" && name != "task" && name != "bits" && name != "limit" &&
        name != "data-dir" && name != "batch" && name != "threads" && name != "lm_head") {
      return absl::StrCat("unknown option --", name);
    }
    if (!has_value) {
      if (i + 1 >= argv.size()) return absl::StrCat("--", name, " needs a value");
      value = argv[++i];
    }
    if (name == "model") {
      args->model = value;
    } else if (name == "data-dir") {
      args->data_dir = value;
    } else if (name == "task") {
      for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        const std::string task(part);
        const auto& known = otaro::eval::KnownTaskNames();
        if (std::find(known.begin(), known.end(), task) == known.end()) {
          return absl::StrCat("--task: unknown task '", task, "' (known: ",
                              absl::StrJoin(known, ", "), ")");
        }
        args->tasks.push_back(task);
      }
    } else if (name == "lm_head") {
      if (absl::Status s = otaro::engine::LmHeadPrecision::Parse(value).status(); !s.ok()) {
        return absl::StrCat("--lm_head: ", s.message());
      }
      args->lm_head = value;
    } else if (name == "bits") {
      args->bits.clear();
      for (absl::string_view part : absl::StrSplit(value, ',', absl::SkipEmpty())) {
        absl::StatusOr<int> m = otaro::sefp::ParsePrecision(part);
        if (!m.ok()) return absl::StrCat("--bits: ", m.status().message());
        args->bits.push_back(*m);
      }
    } else {
      int64_t number;
      if (!absl::SimpleAtoi(value, &number) || number < 0) {
        return absl::StrCat("--", name, ": not a non-negative integer: '", value, "'");
      }
      if (name == "limit") args->limit = number;
      if (name == "batch") args->batch = number;
      if (name == "threads") args->threads = static_cast<int>(number);
    }
  }
  if (args->model.empty()) return "--model is required";
  if (args->tasks.empty()) return "--task is required";
  if (args->batch < 1) return "--batch must be at least 1";
  if (args->bits.empty() && !args->fp) return "nothing to evaluate: --bits is empty and no --fp";
  return "";
}

struct ZeroShotCell {
  std::string task, precision;
  otaro::eval::ZeroShotResult result;
  double seconds = 0;
};

absl::StatusOr<ZeroShotCell> EvaluateZeroShotCell(
    const LlamaModel& model, otaro::engine::Backend& backend, const ZeroShotArgs& args,
    const std::string& task, const std::vector<otaro::eval::MultipleChoiceTask>& questions, int m,
    const std::string& label) {
  ZeroShotCell cell{task, label, {}, 0};
  otaro::eval::ZeroShotOptions zopts;
  zopts.limit = args.limit;
  zopts.max_batch_tasks = args.batch;
  const absl::Time start = absl::Now();
  zopts.progress = [&](int64_t done, int64_t total, const otaro::eval::ZeroShotResult& r) {
    const double s = absl::ToDoubleSeconds(absl::Now() - start);
    Progress(absl::StrFormat("%s %s: %lld/%lld, acc %.4f, acc_norm %.4f, %.1f tokens/s",
                             task, label, static_cast<long long>(done),
                             static_cast<long long>(total), r.acc, r.acc_norm,
                             r.forward_tokens / std::max(s, 1e-9)),
             done == total);
  };
  auto result = otaro::eval::EvaluateZeroShot(backend, *model.tokenizer, questions, m, zopts);
  if (!result.ok()) return result.status();
  cell.result = *result;
  cell.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return cell;
}

int RunZeroShot(const ZeroShotArgs& args) {
  std::vector<std::vector<otaro::eval::MultipleChoiceTask>> questions;
  for (const std::string& task : args.tasks) {
    auto loaded = otaro::eval::LoadNamedTask(task, args.data_dir);
    if (!loaded.ok()) {
      std::fprintf(stderr, "otaro eval: %s: %s\n", task.c_str(),
                   loaded.status().ToString().c_str());
      return 1;
    }
    questions.push_back(std::move(*loaded));
  }
  std::vector<ZeroShotCell> cells;
  std::string model_desc;
  std::vector<int> bits = args.bits;
  if (args.fp) bits.push_back(0);
  otaro::eval::PrecisionSweep sweep;
  sweep.backend.num_threads = args.threads;
  sweep.build_model = [&](bool quantize) -> absl::StatusOr<std::unique_ptr<LlamaModel>> {
    auto model = Load(args.model, quantize, args.lm_head);
    if (!model.ok()) return model.status();
    if ((*model)->tokenizer == nullptr) {
      return absl::FailedPreconditionError(args.model + " has no tokenizer");
    }
    const LlamaModel& m = **model;
    model_desc = absl::StrFormat("%s (%s, %lld layers, hidden %lld, BOS %s)", args.model,
                                 m.source_format, static_cast<long long>(m.config.num_layers),
                                 static_cast<long long>(m.config.hidden_size),
                                 m.tokenizer->add_bos() ? "added" : "not added");
    return model;
  };
  absl::Status swept = otaro::eval::SweepPrecisions(
      sweep, bits, [&](const otaro::eval::SweepPoint& at) -> absl::Status {
        const std::string label = at.bits == 0 ? "fp32" : absl::StrCat("E5M", at.bits);
        for (size_t t = 0; t < args.tasks.size(); ++t) {
          auto cell = EvaluateZeroShotCell(at.model, at.backend, args, args.tasks[t], questions[t],
                                           at.precision, label);
          if (!cell.ok()) {
            return absl::Status(cell.status().code(), absl::StrCat(args.tasks[t], " ", label, ": ",
                                                                   cell.status().message()));
          }
          cells.push_back(*cell);
        }
        return absl::OkStatus();
      });
  if (!swept.ok()) {
    std::fprintf(stderr, "otaro eval: %s\n", swept.ToString().c_str());
    return 1;
  }
  const int threads =
      args.threads > 0 ? args.threads : static_cast<int>(std::thread::hardware_concurrency());

  if (args.json) {
    nlohmann::json j;
    j["model"] = args.model;
    j["data_dir"] = args.data_dir;
    j["limit"] = args.limit;
    j["threads"] = threads;
    for (const ZeroShotCell& c : cells) {
      const auto& r = c.result;
      j["results"].push_back({{"task", c.task},
                              {"precision", c.precision},
                              {"count", r.count},
                              {"acc", r.acc},
                              {"acc_stderr", r.acc_stderr},
                              {"acc_norm", r.acc_norm},
                              {"acc_norm_stderr", r.acc_norm_stderr},
                              {"mean_gold_loglikelihood", r.mean_gold_loglikelihood},
                              {"forward_tokens", r.forward_tokens},
                              {"seconds", c.seconds}});
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::vector<std::string> labels;
  for (const ZeroShotCell& c : cells) {
    if (std::find(labels.begin(), labels.end(), c.precision) == labels.end()) {
      labels.push_back(c.precision);
    }
  }
  std::printf("model      %s\n", model_desc.c_str());
  std::printf("data       %s%s\n", args.data_dir.c_str(),
              args.limit > 0 ? absl::StrFormat(" (first %lld questions of each task)",
                                               static_cast<long long>(args.limit))
                                   .c_str()
                             : "");
  std::printf("threads    %d\n\n", threads);
  std::printf("%-14s %6s", "task", "n");
  for (const std::string& l : labels) std::printf("  %13s", l.c_str());
  std::printf("\n");
  double max_stderr = 0;
  for (const std::string& task : args.tasks) {
    int64_t n = 0;
    for (const ZeroShotCell& c : cells) {
      if (c.task == task) n = c.result.count;
    }
    std::printf("%-14s %6lld", task.c_str(), static_cast<long long>(n));
    for (const std::string& l : labels) {
      for (const ZeroShotCell& c : cells) {
        if (c.task != task || c.precision != l) continue;
        const bool greedy = task == "lambada";  // one choice: acc_norm is acc
        std::printf("  %13s",
                    greedy ? absl::StrFormat("%5.1f /     -", 100 * c.result.acc).c_str()
                           : absl::StrFormat("%5.1f / %5.1f", 100 * c.result.acc,
                                             100 * c.result.acc_norm)
                                 .c_str());
        max_stderr = std::max({max_stderr, c.result.acc_stderr, c.result.acc_norm_stderr});
      }
    }
    std::printf("\n");
  }
  std::printf("(acc / acc_norm in %%; standard error up to %.1f points; lambada: greedy-match "
              "accuracy)\n",
              100 * max_stderr);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "zeroshot") {
    args.erase(args.begin());
    for (const std::string& a : args) {
      if (a == "--help" || a == "-h") {
        std::fputs(kZeroShotUsage, stdout);
        return 0;
      }
    }
    ZeroShotArgs parsed;
    if (std::string error = ParseZeroShotArgs(args, &parsed); !error.empty()) {
      std::fprintf(stderr, "otaro eval zeroshot: %s\n\n%s", error.c_str(), kZeroShotUsage);
      return 2;
    }
    return RunZeroShot(parsed);
  }
  if (args[0] != "ppl") return Usage(absl::StrCat("unknown subcommand '", args[0], "'"));
  args.erase(args.begin());
  for (const std::string& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  Args parsed;
  if (std::string error = ParseArgs(args, &parsed); !error.empty()) return Usage(error);
  return RunPpl(parsed);
}
