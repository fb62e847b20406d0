#include "client/tune_command.h"

#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/recipe/recipe.h"
#include "google/protobuf/util/json_util.h"
#include "otaro/v1/tuning.grpc.pb.h"

namespace otaro::client {
namespace {

constexpr char kUsage[] =
    "usage: otaro tune create KEY=VALUE... | list | get ID | cancel ID | events ID | resume ID\n"
    "       otaro tune --model ... (an offline run: otaro tune --help)\n"
    "\n"
    "create keys (all optional but data or upload; defaults in docs/OTARO.md):\n"
    "  data=PATH (inside the server's tuning.data_dir)   upload=LOCAL_FILE (sent inline)\n"
    "  format=text|alpaca|chat   name=LABEL   base=VERSION   auto_publish=true\n"
    "  strategy=otaro|bps|uniform|fixed:M|fp|uniform+laa|fixed:M+laa   bits=3,4,5,6,7,8\n"
    "  steps=N   epochs=F\n"
    "  lr=F   optimizer=sgd|adamw   schedule=constant|cosine   warmup=N   min_lr=F\n"
    "  weight_decay=F   clip=F   batch=N   seq_len=N   grad_accum=N   seed=N\n"
    "  lambda=F   bps_loss=latest|ema   laa_n=N   laa_ultra_low=M   laa_reduce=sum|mean\n"
    "  eval_every=N   checkpoint_every=N   heldout=PATH   eval_items=N\n"
    "  eval_bits=8,7,6,5,4,3,2  (precisions evaluated besides fp32, with the bit set's)\n"
    "  eval_settle=N  (LAA: drain N steps before the end, apply at once after; default 20)\n"
    "  zero_shot=arc_easy,piqa,...  (zero-shot acc / acc_norm of the final model, every\n"
    "                                precision; eval_items=N caps the questions per set)\n"
    "  reconstruction=midpoint|truncate\n"
    "  recipe=FILE  (a tuning recipe, e.g. deploy/recipes/smollm2-otaro.yaml: read here and sent\n"
    "               as the keys above; keys given beside it override the recipe's)\n";

int Usage(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "otaro tune: %s\n\n", error.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

std::string StateName(otaro::v1::JobState state) {
  return otaro::v1::JobState_Name(state).substr(std::string("JOB_STATE_").size());
}

// Fills the request from KEY=VALUE words; an error names the word.
absl::Status ParseCreate(const std::vector<std::string>& words,
                         otaro::v1::CreateTuningJobRequest* request) {
  auto* h = request->mutable_hyperparameters();
  auto number = [](const std::string& key, const std::string& v, double* out) {
    return absl::SimpleAtod(v, out) ? absl::OkStatus()
                                    : absl::InvalidArgumentError(key + "=" + v + ": not a number");
  };
  auto integer = [](const std::string& key, const std::string& v, uint64_t* out) {
    return absl::SimpleAtoi(v, out)
               ? absl::OkStatus()
               : absl::InvalidArgumentError(key + "=" + v + ": not a whole number");
  };
  for (const std::string& word : words) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError("expected KEY=VALUE, got '" + word + "'");
    }
    const std::string key = word.substr(0, eq), v = word.substr(eq + 1);
    double d = 0;
    uint64_t n = 0;
    absl::Status s;
    if (key == "data") {
      request->mutable_dataset()->set_path(v);
    } else if (key == "upload") {
      std::ifstream in(v, std::ios::binary);
      if (!in) return absl::NotFoundError("upload=" + v + ": cannot read the file");
      std::stringstream bytes;
      bytes << in.rdbuf();
      request->mutable_dataset()->set_inline_data(bytes.str());
    } else if (key == "format") {
      static const std::map<std::string, otaro::v1::DatasetFormat> formats = {
          {"text", otaro::v1::DATASET_FORMAT_TEXT},
          {"alpaca", otaro::v1::DATASET_FORMAT_ALPACA},
          {"chat", otaro::v1::DATASET_FORMAT_CHAT}};
      if (!formats.count(v)) return absl::InvalidArgumentError("format: text, alpaca or chat");
      request->mutable_dataset()->set_format(formats.at(v));
    } else if (key == "name") {
      request->set_display_name(v);
    } else if (key == "base") {
      if (!(s = integer(key, v, &n)).ok()) return s;
      request->mutable_base_version()->set_version(n);
    } else if (key == "auto_publish") {
      request->set_auto_publish(v == "true" || v == "1");
    } else if (key == "strategy") {
      // "fixed:4+laa", "uniform+laa": the baseline updated through LAA (the
      // server says which strategies take it).
      absl::string_view name = v;
      h->clear_laa();
      if (absl::ConsumeSuffix(&name, "+laa")) h->set_laa(true);
      if (name == "otaro") h->set_strategy(otaro::v1::STRATEGY_OTARO);
      else if (name == "bps") h->set_strategy(otaro::v1::STRATEGY_BPS);
      else if (name == "uniform") h->set_strategy(otaro::v1::STRATEGY_UNIFORM);
      else if (name == "fp") h->set_strategy(otaro::v1::STRATEGY_FP);
      else if (absl::ConsumePrefix(&name, "fixed:") && absl::SimpleAtoi(name, &n)) {
        h->set_strategy(otaro::v1::STRATEGY_FIXED);
        h->set_fixed_mantissa_bits(static_cast<uint32_t>(n));
      } else {
        return absl::InvalidArgumentError(
            "strategy: otaro, bps, uniform, fixed:M or fp (uniform+laa, fixed:M+laa: with LAA)");
      }
    } else if (key == "bits") {
      h->clear_bit_set();  // a later bits= replaces an earlier one (a recipe's)
      for (absl::string_view part : absl::StrSplit(v, ',')) {
        uint32_t b;
        if (!absl::SimpleAtoi(part, &b)) return absl::InvalidArgumentError("bits: e.g. 3,4,5,6,7,8");
        h->add_bit_set(b);
      }
    } else if (key == "steps") {
      if (!(s = integer(key, v, &n)).ok()) return s;
      h->set_max_steps(n);
    } else if (key == "epochs") {
      if (!(s = number(key, v, &d)).ok()) return s;
      h->set_epochs(static_cast<float>(d));
    } else if (key == "lr" || key == "min_lr" || key == "weight_decay" || key == "clip" ||
               key == "lambda") {
      if (!(s = number(key, v, &d)).ok()) return s;
      const float f = static_cast<float>(d);
      if (key == "lr") h->set_learning_rate(f);
      if (key == "min_lr") h->set_min_learning_rate(f);
      if (key == "weight_decay") h->set_weight_decay(f);
      if (key == "clip") h->set_max_grad_norm(f);
      if (key == "lambda") h->set_bps_lambda(f);
    } else if (key == "optimizer") {
      if (v != "sgd" && v != "adamw") return absl::InvalidArgumentError("optimizer: sgd or adamw");
      h->set_optimizer(v == "sgd" ? otaro::v1::OPTIMIZER_SGD : otaro::v1::OPTIMIZER_ADAMW);
    } else if (key == "schedule") {
      if (v != "constant" && v != "cosine") {
        return absl::InvalidArgumentError("schedule: constant or cosine");
      }
      h->set_lr_schedule(v == "constant" ? otaro::v1::LR_SCHEDULE_CONSTANT
                                         : otaro::v1::LR_SCHEDULE_COSINE);
    } else if (key == "bps_loss") {
      if (v != "latest" && v != "ema") return absl::InvalidArgumentError("bps_loss: latest or ema");
      h->set_bps_loss(v == "latest" ? otaro::v1::BPS_LOSS_LATEST : otaro::v1::BPS_LOSS_EMA);
    } else if (key == "laa_reduce") {
      if (v != "sum" && v != "mean") return absl::InvalidArgumentError("laa_reduce: sum or mean");
      h->set_laa_reduce(v == "sum" ? otaro::v1::LAA_REDUCE_SUM : otaro::v1::LAA_REDUCE_MEAN);
    } else if (key == "reconstruction") {
      if (v != "midpoint" && v != "truncate") {
        return absl::InvalidArgumentError("reconstruction: midpoint or truncate");
      }
      h->set_reconstruction(v == "midpoint" ? otaro::v1::RECONSTRUCTION_MIDPOINT
                                            : otaro::v1::RECONSTRUCTION_TRUNCATE);
    } else if (key == "heldout") {
      request->mutable_evaluation()->set_heldout_text_path(v);
    } else if (key == "eval_bits") {
      request->mutable_evaluation()->clear_mantissa_bits();
      for (absl::string_view part : absl::StrSplit(v, ',')) {
        uint32_t b;
        if (!absl::SimpleAtoi(part, &b)) {
          return absl::InvalidArgumentError("eval_bits: e.g. 8,7,6,5,4,3,2");
        }
        request->mutable_evaluation()->add_mantissa_bits(b);
      }
    } else if (key == "zero_shot") {
      request->mutable_evaluation()->clear_zero_shot_tasks();
      for (absl::string_view task : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        request->mutable_evaluation()->add_zero_shot_tasks(std::string(task));
      }
    } else {
      static const std::map<std::string, std::function<void(uint64_t)>> integers = {
          {"warmup", [h](uint64_t x) { h->set_warmup_steps(static_cast<uint32_t>(x)); }},
          {"batch", [h](uint64_t x) { h->set_batch_size(static_cast<uint32_t>(x)); }},
          {"seq_len", [h](uint64_t x) { h->set_seq_len(static_cast<uint32_t>(x)); }},
          {"grad_accum", [h](uint64_t x) { h->set_gradient_accumulation(static_cast<uint32_t>(x)); }},
          {"seed", [h](uint64_t x) { h->set_seed(x); }},
          {"laa_n", [h](uint64_t x) { h->set_laa_accumulation_steps(static_cast<uint32_t>(x)); }},
          {"laa_ultra_low", [h](uint64_t x) { h->set_laa_ultra_low_max_bits(static_cast<uint32_t>(x)); }},
          {"eval_every", [h](uint64_t x) { h->set_eval_every_steps(x); }},
          {"eval_settle", [h](uint64_t x) { h->set_eval_settle_steps(static_cast<uint32_t>(x)); }},
          {"checkpoint_every", [h](uint64_t x) { h->set_checkpoint_every_steps(x); }},
      };
      // eval_items lives outside the hyperparameters.
      if (key == "eval_items") {
        if (!(s = integer(key, v, &n)).ok()) return s;
        request->mutable_evaluation()->set_max_items(static_cast<uint32_t>(n));
        continue;
      }
      auto it = integers.find(key);
      if (it == integers.end()) return absl::InvalidArgumentError("unknown key '" + key + "'");
      if (!(s = integer(key, v, &n)).ok()) return s;
      it->second(n);
    }
  }
  return absl::OkStatus();
}

// ParseCreate after the settings of recipe=FILE (common/recipe/recipe.h), so
// the other words override the recipe; a recipe setting's error names its
// file and field.
absl::Status ParseCreateWithRecipe(const std::vector<std::string>& words,
                                   otaro::v1::CreateTuningJobRequest* request) {
  std::vector<std::string> rest;
  for (const std::string& word : words) {
    if (!absl::StartsWith(word, "recipe=")) {
      rest.push_back(word);
      continue;
    }
    const std::string path = word.substr(std::strlen("recipe="));
    auto settings = otaro::recipe::ReadRecipe(path);
    if (!settings.ok()) return settings.status();
    for (const otaro::recipe::Setting& setting : *settings) {
      if (absl::Status s = ParseCreate({setting.key + "=" + setting.value}, request); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("recipe ", path, ": ", setting.path, ": ", s.message()));
      }
    }
  }
  return ParseCreate(rest, request);
}

std::string PrecisionLabel(const otaro::v1::PrecisionEvaluation& row) {
  return row.mantissa_bits() ? absl::StrCat("E5M", row.mantissa_bits()) : std::string("fp32");
}

// What every row of `table` was measured on: "truncate, version 2" or
// "midpoint, tuned from version 1", and where LAA stood.
std::string EvaluationLabel(const otaro::v1::EvaluationTable& table) {
  const std::string name = otaro::v1::Reconstruction_Name(table.reconstruction());
  absl::string_view reconstruction = name;
  absl::ConsumePrefix(&reconstruction, "RECONSTRUCTION_");
  std::string label = absl::AsciiStrToLower(reconstruction);
  if (table.model_version() != 0) {
    absl::StrAppend(&label, ", version ", table.model_version());
  } else if (table.base_version() != 0) {
    absl::StrAppend(&label, ", tuned from version ", table.base_version());
  }
  if (table.laa_pending() != 0 || table.steps_since_laa_flush() > 0) {
    absl::StrAppend(&label, ", LAA ", table.laa_pending(), " pending, last flush ",
                    table.steps_since_laa_flush(), " steps before");
  }
  return label;
}

// One line per zero-shot set of `table`: "<indent><task>  acc fp32=0.25 E5M8=0.30 ...
// acc_norm ...", in percent.
void PrintZeroShot(const otaro::v1::EvaluationTable& table, const char* indent) {
  std::map<std::string, std::pair<std::string, std::string>> lines;  // task -> acc, acc_norm
  for (const auto& row : table.rows()) {
    for (const auto& [task, acc] : row.accuracy()) {
      absl::StrAppend(&lines[task].first, " ", PrecisionLabel(row), "=",
                      absl::StrFormat("%.1f", 100 * acc));
    }
    for (const auto& [task, acc] : row.accuracy_norm()) {
      absl::StrAppend(&lines[task].second, " ", PrecisionLabel(row), "=",
                      absl::StrFormat("%.1f", 100 * acc));
    }
  }
  for (const auto& [task, line] : lines) {
    std::printf("%szero-shot %s  acc%%%s  acc_norm%%%s\n", indent, task.c_str(),
                line.first.c_str(), line.second.c_str());
  }
}

void PrintJob(const otaro::v1::TuningJob& job) {
  std::printf("job %s (%s)\n", job.id().c_str(),
              job.display_name().empty() ? "unnamed" : job.display_name().c_str());
  std::printf("  state     %s%s\n", StateName(job.state()).c_str(),
              job.error().empty() ? "" : ("  error: " + job.error()).c_str());
  std::printf("  progress  step %llu / %llu, %llu tokens\n",
              static_cast<unsigned long long>(job.step()),
              static_cast<unsigned long long>(job.total_steps()),
              static_cast<unsigned long long>(job.trained_tokens()));
  std::printf("  created   %s  started %s  finished %s  eta %s\n",
              FormatUnixTime(job.created_unix_seconds()).c_str(), FormatUnixTime(job.started_unix_seconds()).c_str(),
              FormatUnixTime(job.finished_unix_seconds()).c_str(),
              FormatUnixTime(job.estimated_finish_unix_seconds()).c_str());
  std::printf("  versions  base %llu  result %s\n",
              static_cast<unsigned long long>(job.base_version().version()),
              job.result_version().version() ? absl::StrCat(job.result_version().version()).c_str()
                                             : "-");
  for (const auto& c : job.checkpoints()) {
    std::string evaluation;
    for (const auto& row : c.evaluation().rows()) {
      absl::StrAppend(&evaluation, row.mantissa_bits() ? absl::StrCat(" E5M", row.mantissa_bits())
                                                       : std::string(" fp32"),
                      "=", absl::SixDigits(row.perplexity()));
    }
    std::printf("  checkpoint step %llu  train loss %.4f%s%s%s\n",
                static_cast<unsigned long long>(c.step()), c.train_loss(),
                evaluation.empty() ? "" : "  ppl", evaluation.c_str(),
                evaluation.empty() ? "" : absl::StrCat("  (", EvaluationLabel(c.evaluation()), ")").c_str());
    PrintZeroShot(c.evaluation(), "    ");
  }
}

void PrintEvent(const otaro::v1::TuningJobEvent& e) {
  std::printf("%6llu  ", static_cast<unsigned long long>(e.sequence()));
  switch (e.event_case()) {
    case otaro::v1::TuningJobEvent::kStateChange:
      std::printf("state %s\n", StateName(e.state_change()).c_str());
      break;
    case otaro::v1::TuningJobEvent::kStep:
      std::printf("step %llu  E5M%u  loss %.4f  lr %.3g  %.0f tok/s%s\n",
                  static_cast<unsigned long long>(e.step().step()), e.step().mantissa_bits(),
                  e.step().loss(), e.step().learning_rate(), e.step().tokens_per_second(),
                  e.step().laa_flush()
                      ? absl::StrFormat("  (LAA %s: batch loss %.4f -> %.4f)",
                                        e.step().laa_drain() ? "drain" : "apply",
                                        e.step().flush_loss_before(), e.step().flush_loss_after())
                            .c_str()
                  : e.step().accumulated() ? "  (LAA +)"
                                           : "");
      break;
    case otaro::v1::TuningJobEvent::kEvaluation: {
      std::printf("evaluation after step %llu (%s):",
                  static_cast<unsigned long long>(e.evaluation().step()),
                  EvaluationLabel(e.evaluation()).c_str());
      for (const auto& row : e.evaluation().rows()) {
        std::printf("  %s ppl %.3f", row.mantissa_bits() ? absl::StrCat("E5M", row.mantissa_bits()).c_str() : "fp32",
                    row.perplexity());
      }
      std::printf("\n");
      PrintZeroShot(e.evaluation(), "        ");
      break;
    }
    case otaro::v1::TuningJobEvent::kCheckpoint:
      std::printf("checkpoint at step %llu (train loss %.4f)\n",
                  static_cast<unsigned long long>(e.checkpoint().step()), e.checkpoint().train_loss());
      break;
    case otaro::v1::TuningJobEvent::kMessage:
      std::printf("%s\n", e.message().c_str());
      break;
    default:
      std::printf("(unknown event)\n");
  }
  std::fflush(stdout);
}

}  // namespace

std::string FormatUnixTime(int64_t unix_seconds) {
  if (unix_seconds <= 0) return "-";
  char text[32];
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm;
  gmtime_r(&t, &tm);
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%SZ", &tm);
  return text;
}

bool IsTuneServerCommand(const std::string& word) {
  return word == "create" || word == "list" || word == "get" || word == "cancel" ||
         word == "events" || word == "resume";
}

int TuneCommand(const ConnectionOptions& options, const std::vector<std::string>& words,
                bool json) {
  if (words.empty() || !IsTuneServerCommand(words[0])) return Usage("");
  const std::string& action = words[0];
  const std::vector<std::string> rest(words.begin() + 1, words.end());
  const bool needs_id = action != "create" && action != "list";
  if (needs_id && rest.size() != 1) return Usage(action + " needs one job id");
  if (action == "list" && !rest.empty()) return Usage("list takes no arguments");

  auto stub = otaro::v1::Tuning::NewStub(Connect(options));
  const std::string what = "tune " + action;
  auto fail = [&](const grpc::Status& status) {
    std::fprintf(stderr, "otaro: %s\n", DescribeError(options, what.c_str(), status).c_str());
    return 1;
  };
  auto print = [&](const google::protobuf::Message& message,
                   const std::function<void()>& human) {
    if (!json) {
      human();
      return 0;
    }
    std::string text;
    google::protobuf::util::JsonPrintOptions print_options;
    print_options.add_whitespace = true;
    (void)google::protobuf::util::MessageToJsonString(message, &text, print_options);
    std::printf("%s", text.c_str());
    return 0;
  };

  otaro::v1::TuningJob job;
  if (action == "create" || action == "resume") {
    otaro::v1::CreateTuningJobRequest request;
    if (action == "resume") {
      request.set_resume_job_id(rest[0]);
    } else if (absl::Status parsed = ParseCreateWithRecipe(rest, &request); !parsed.ok()) {
      return Usage(std::string(parsed.message()));
    }
    auto context = NewContext(options);
    grpc::Status status = stub->CreateTuningJob(context.get(), request, &job);
    if (!status.ok()) return fail(status);
    return print(job, [&] { PrintJob(job); });
  }
  if (action == "get" || action == "cancel") {
    auto context = NewContext(options);
    grpc::Status status;
    if (action == "get") {
      otaro::v1::GetTuningJobRequest request;
      request.set_id(rest[0]);
      status = stub->GetTuningJob(context.get(), request, &job);
    } else {
      otaro::v1::CancelTuningJobRequest request;
      request.set_id(rest[0]);
      status = stub->CancelTuningJob(context.get(), request, &job);
    }
    if (!status.ok()) return fail(status);
    return print(job, [&] { PrintJob(job); });
  }
  if (action == "list") {
    otaro::v1::ListTuningJobsResponse response;
    auto context = NewContext(options);
    grpc::Status status = stub->ListTuningJobs(context.get(), {}, &response);
    if (!status.ok()) return fail(status);
    return print(response, [&] {
      std::printf("%-28s %-12s %-13s %-8s %-21s %s\n", "ID", "STATE", "STEP", "RESULT", "CREATED",
                  "NAME");
      for (const auto& j : response.jobs()) {
        std::printf("%-28s %-12s %-13s %-8s %-21s %s\n", j.id().c_str(),
                    StateName(j.state()).c_str(),
                    absl::StrCat(j.step(), "/", j.total_steps()).c_str(),
                    j.result_version().version() ? absl::StrCat("v", j.result_version().version()).c_str() : "-",
                    FormatUnixTime(j.created_unix_seconds()).c_str(), j.display_name().c_str());
      }
    });
  }
  // events: follows the job until it ends (no deadline: a job can take hours).
  otaro::v1::StreamTuningJobEventsRequest request;
  request.set_id(rest[0]);
  grpc::ClientContext context;
  if (!options.token.empty()) context.AddMetadata("authorization", "Bearer " + options.token);
  auto reader = stub->StreamTuningJobEvents(&context, request);
  otaro::v1::TuningJobEvent event;
  while (reader->Read(&event)) {
    if (json) {
      std::string text;
      (void)google::protobuf::util::MessageToJsonString(event, &text);
      std::printf("%s\n", text.c_str());
      std::fflush(stdout);
    } else {
      PrintEvent(event);
    }
  }
  grpc::Status status = reader->Finish();
  return status.ok() ? 0 : fail(status);
}

}  // namespace otaro::client
