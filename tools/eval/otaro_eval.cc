// otaro-eval: offline model evaluation. Run as `otaro eval ...` through the
// otaro CLI, or directly.
//
//   otaro eval ppl MODEL TEXT_FILE [--bits 8,7,6,5,4,3,2] [--fp] [--window 512]
//       [--stride 512] [--max_tokens N] [--threads 0] [--json] [--quantize_lm_head]
//
// Sliding-window perplexity (tools/eval/perplexity.h) of MODEL over a UTF-8
// text file at each SEFP precision, and in float32 with --fp. The whole file is
// tokenized once (BOS prepended once if the tokenizer adds BOS; CRLF normalised
// to LF), optionally capped to its first --max_tokens tokens.
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
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/utf8.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/loader.h"
#include "nlohmann/json.hpp"
#include "sefp/format.h"
#include "tools/eval/perplexity.h"

namespace {

using otaro::engine::LlamaModel;
using otaro::engine::LoadModel;
using otaro::engine::LoadOptions;
using otaro::engine::Token;

constexpr char kUsage[] =
    "usage: otaro eval ppl MODEL TEXT_FILE [options]\n"
    "\n"
    "Perplexity of MODEL (SEFP checkpoint, Hugging Face folder, GGUF, llama2.c)\n"
    "over a UTF-8 text file, at each SEFP precision and optionally in float32.\n"
    "\n"
    "options:\n"
    "  --bits LIST        mantissa bits to evaluate, comma separated (default 8,7,6,5,4,3,2;\n"
    "                     E5M4 accepted; empty with --fp: float32 only)\n"
    "  --fp               also evaluate the unquantized float32 model (for a SEFP\n"
    "                     checkpoint: its E5M8 weights decoded to float32)\n"
    "  --quantize_lm_head also hold the lm_head as SEFP, read at each precision\n"
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
  bool quantize_lm_head = false;
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
    if (name == "fp" || name == "json" || name == "quantize_lm_head") {
      bool flag = true;
      if (has_value && !absl::SimpleAtob(value, &flag)) {
        return absl::StrCat("--", name, ": not a boolean: '", value, "'");
      }
      (name == "fp" ? args->fp : name == "json" ? args->json : args->quantize_lm_head) = flag;
      continue;
    }
    if (name != "bits" && name != "window" && name != "stride" && name != "max_tokens" &&
        name != "threads") {
      return absl::StrCat("unknown option --", name);
    }
    if (!has_value) {
      if (i + 1 >= argv.size()) return absl::StrCat("--", name, " needs a value");
      value = argv[++i];
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
                                                  bool quantize_lm_head = false) {
  LoadOptions options;
  options.quantize = quantize;
  options.quantize_lm_head = quantize && quantize_lm_head;
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

absl::StatusOr<Row> Evaluate(const LlamaModel& model, const Args& args,
                             const std::vector<Token>& tokens, int m, const std::string& label) {
  otaro::engine::cpu::CpuBackendOptions options;
  options.num_threads = args.threads;
  // Room for one window; at least the default budget.
  const auto& c = model.config;
  const int64_t per_token = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4;
  options.kv_cache.budget_bytes =
      std::max<int64_t>(options.kv_cache.budget_bytes, per_token * (args.window + 64));
  auto backend = otaro::engine::cpu::CpuBackend::Create(&model, options);
  if (!backend.ok()) return backend.status();
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
  auto result = otaro::eval::EvaluatePerplexity(**backend, tokens, m, args.window, args.stride,
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
    auto loaded = Load(args.model, /*quantize=*/!args.bits.empty(), args.quantize_lm_head);
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

  std::vector<Row> rows;
  int threads = 0;
  for (int m : args.bits) {
    auto row = Evaluate(*model, args, tokens, m, absl::StrCat("E5M", m));
    if (!row.ok()) {
      std::fprintf(stderr, "otaro eval: E5M%d: %s\n", m, row.status().ToString().c_str());
      return 1;
    }
    rows.push_back(*row);
  }
  if (args.fp) {
    if (!args.bits.empty()) {
      model.reset();
      auto loaded = Load(args.model, /*quantize=*/false);
      if (!loaded.ok()) {
        std::fprintf(stderr, "otaro eval: %s\n", loaded.status().ToString().c_str());
        return 1;
      }
      model = std::move(*loaded);
    }
    auto row = Evaluate(*model, args, tokens, otaro::sefp::kMasterBits, "fp32");
    if (!row.ok()) {
      std::fprintf(stderr, "otaro eval: fp32: %s\n", row.status().ToString().c_str());
      return 1;
    }
    rows.push_back(*row);
  }
  threads = args.threads > 0 ? args.threads : static_cast<int>(std::thread::hardware_concurrency());
  const std::string fp_note =
      args.fp && model->source_format == "sefp"
          ? "fp32 = the SEFP checkpoint's E5M8 weights decoded to float32 (it holds no other)"
          : "";

  if (args.json) {
    nlohmann::json j;
    j["model"] = args.model;
    j["model_format"] = model->source_format;
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

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
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
