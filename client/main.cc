// otaro: the command-line client of otaro_server. It uses only the public API
// (proto/) and the standard gRPC health protocol.
//
//   otaro health [--service NAME]   exit 0 when SERVING, 1 otherwise
//   otaro info [--json]             what the server serves
//   otaro models list [--json]      the model versions; * marks the served one
//   otaro models publish N          serve version N from now on (hot swap)
//   otaro models rollback           serve the version served before
//   otaro COMMAND ...               any other command runs the offline tool
//                                   otaro-COMMAND (e.g. otaro convert IN OUT),
//                                   as git does: this binary stays a pure API
//                                   client and never links the engine.
//
// Exit codes: 0 success, 1 the server said no or could not be reached,
// 2 bad command line.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/connection.h"
#include "client/tune_command.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "otaro/v1/models.grpc.pb.h"

ABSL_FLAG(std::string, server, "",
          "otaro_server address host:port (default: $OTARO_SERVER or 127.0.0.1:50051).");
ABSL_FLAG(double, timeout_seconds, 10, "Deadline of each call.");
ABSL_FLAG(std::string, token, "",
          "Bearer token for a server with access control (default: $OTARO_TOKEN; the "
          "environment keeps it out of the process list).");
ABSL_FLAG(bool, tls, false, "Connect with TLS, trusting the system's CA certificates.");
ABSL_FLAG(std::string, tls_ca, "", "Connect with TLS, trusting the CA certificates in this PEM file.");
ABSL_FLAG(std::string, tls_cert, "", "TLS client certificate (PEM), for servers that require one.");
ABSL_FLAG(std::string, tls_key, "", "Private key (PEM) of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "The name to check the server's certificate against, if not the --server host.");
ABSL_FLAG(std::string, service, "",
          "health: the service to check (empty = the whole server; otaro.v1.Inference = "
          "ready to generate).");
ABSL_FLAG(bool, json, false, "info, models list: print the raw response as JSON.");
ABSL_FLAG(std::string, bits, "",
          "generate: decode precision, mantissa bits 2..8 as 4 or E5M4 (default: the server's).");
ABSL_FLAG(std::string, prefill_bits, "",
          "generate: prompt (prefill) precision, as --bits (default: same as --bits).");
ABSL_FLAG(int, max_tokens, 0, "generate: most tokens to generate (0 = the server's default).");
ABSL_FLAG(double, temperature, 0, "generate: 0 = greedy; otherwise sampling temperature.");
ABSL_FLAG(int, top_k, 0, "generate: keep the k most likely tokens (0 = all).");
ABSL_FLAG(double, top_p, 0, "generate: nucleus sampling threshold in (0, 1] (0 = off).");
ABSL_FLAG(int64_t, seed, -1, "generate: sampling seed (-1 = the server draws one).");
ABSL_FLAG(std::vector<std::string>, stop, {}, "generate: stop strings, comma-separated.");
ABSL_FLAG(bool, chat, false,
          "generate: send the prompt as a user message through the model's chat template.");
ABSL_FLAG(std::string, system, "", "generate --chat: a system message to put first.");

namespace otaro::client {
namespace {

ConnectionOptions OptionsFromFlags() {
  ConnectionOptions options;
  std::string address = absl::GetFlag(FLAGS_server);
  if (address.empty()) {
    const char* env = std::getenv("OTARO_SERVER");
    if (env != nullptr && env[0] != '\0') address = env;
  }
  if (!address.empty()) options.address = address;
  options.timeout_seconds = absl::GetFlag(FLAGS_timeout_seconds);
  options.token = absl::GetFlag(FLAGS_token);
  if (options.token.empty()) {
    const char* env = std::getenv("OTARO_TOKEN");
    if (env != nullptr) options.token = env;
  }
  options.tls = absl::GetFlag(FLAGS_tls);
  options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  absl::Status tls = LoadTlsFiles(absl::GetFlag(FLAGS_tls_ca), absl::GetFlag(FLAGS_tls_cert),
                                  absl::GetFlag(FLAGS_tls_key), &options);
  if (!tls.ok()) {
    // A bad command line: the exit code promised for one.
    std::fprintf(stderr, "otaro: %s\n", std::string(tls.message()).c_str());
    std::exit(2);
  }
  return options;
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "otaro: %s\n", message.c_str());
  return 1;
}

int HealthCommand() {
  ConnectionOptions options = OptionsFromFlags();
  auto stub = grpc::health::v1::Health::NewStub(Connect(options));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  auto context = NewContext(options);
  grpc::Status status = stub->Check(context.get(), request, &response);
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      return Fail(absl::StrCat("health: the server knows no service '", request.service(), "'"));
    }
    return Fail(DescribeError(options, "health", status));
  }
  std::printf("%s\n",
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

std::string ReconstructionName(otaro::v1::Reconstruction mode) {
  switch (mode) {
    case otaro::v1::RECONSTRUCTION_MIDPOINT: return "midpoint";
    case otaro::v1::RECONSTRUCTION_TRUNCATE: return "truncate";
    default: return "unspecified";
  }
}

void PrintModelInfo(const otaro::v1::ModelInfo& info) {
  std::printf("model            %s (%s)\n", info.source().c_str(), info.architecture().c_str());
  std::printf("version          %llu\n", static_cast<unsigned long long>(info.model_version()));
  std::printf("parameters       %llu\n", static_cast<unsigned long long>(info.parameter_count()));
  std::printf("layers / hidden  %u / %u, vocab %u, context %u\n", info.num_layers(),
              info.hidden_size(), info.vocab_size(), info.context_length());
  std::printf("SEFP             group %u, master E5M%u, resident down to E5M%u, %s\n",
              info.group_size(), info.master_mantissa_bits(), info.resident_max_bits(),
              ReconstructionName(info.reconstruction()).c_str());
  std::printf("precisions       E5M%s (default E5M%u)\n",
              absl::StrJoin(info.supported_mantissa_bits(), ", E5M").c_str(),
              info.default_mantissa_bits());
  std::printf("device           %s (SEFP kernels %s, lm_head %s)\n", info.device().c_str(),
              info.kernel_isa().c_str(), info.lm_head_precision().c_str());
  if (!info.device_reason().empty()) {
    std::printf("device choice    %s\n", info.device_reason().c_str());
  }
  const auto& memory = info.memory();
  std::printf("memory           weights %.1f MiB, dense %.1f MiB, KV cache %.1f MiB\n",
              memory.weight_bytes() / 1048576.0, memory.dense_bytes() / 1048576.0,
              memory.kv_cache_bytes() / 1048576.0);
}

int InfoCommand() {
  ConnectionOptions options = OptionsFromFlags();
  auto stub = otaro::v1::Inference::NewStub(Connect(options));
  otaro::v1::ModelInfo info;
  auto context = NewContext(options);
  grpc::Status status = stub->GetModelInfo(context.get(), otaro::v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return Fail(DescribeError(options, "info", status));
  if (absl::GetFlag(FLAGS_json)) {
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    print.add_whitespace = true;
    print.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(info, &json, print);
    std::printf("%s", json.c_str());
  } else {
    PrintModelInfo(info);
  }
  return 0;
}

// Where an offline tool otaro-NAME may live: beside this binary (an install),
// in the Bazel output tree (bazel-bin/tools/NAME/), then on PATH.
std::string FindTool(const std::string& name) {
  const std::string tool = "otaro-" + name;
  std::error_code error;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", error);
  std::vector<std::filesystem::path> candidates;
  if (!error) {
    candidates.push_back(self.parent_path() / tool);
    // Bazel package folders use underscores: otaro-make-model is in tools/make_model/.
    std::string folder = name;
    std::replace(folder.begin(), folder.end(), '-', '_');
    candidates.push_back(self.parent_path().parent_path() / "tools" / folder / tool);
  }
  if (const char* path = std::getenv("PATH")) {
    for (absl::string_view dir : absl::StrSplit(path, ':')) {
      if (!dir.empty()) candidates.push_back(std::filesystem::path(std::string(dir)) / tool);
    }
  }
  for (const auto& candidate : candidates) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "";
}

// "4" or "E5M4" -> 4; "" -> 0 (unset). The server checks the range.
bool ParseBits(const std::string& text, uint32_t* bits) {
  std::string digits = text;
  if (digits.size() > 3 && (digits.rfind("E5M", 0) == 0 || digits.rfind("e5m", 0) == 0)) {
    digits = digits.substr(3);
  }
  if (digits.empty()) {
    *bits = 0;
    return text.empty();
  }
  return absl::SimpleAtoi(digits, bits);
}

int GenerateCommand(const std::vector<std::string>& words) {
  ConnectionOptions options = OptionsFromFlags();
  std::string prompt = absl::StrJoin(words, " ");
  if (prompt.empty() || prompt == "-") {
    // Read the prompt from standard input.
    std::string line;
    prompt.clear();
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), stdin)) > 0) prompt.append(buffer, n);
  }
  otaro::v1::GenerateRequest request;
  uint32_t bits = 0, prefill_bits = 0;
  if (!ParseBits(absl::GetFlag(FLAGS_bits), &bits)) {
    return Fail("--bits: expected mantissa bits like 4 or E5M4");
  }
  if (!ParseBits(absl::GetFlag(FLAGS_prefill_bits), &prefill_bits)) {
    return Fail("--prefill_bits: expected mantissa bits like 8 or E5M8");
  }
  if (bits) request.mutable_decode_precision()->set_mantissa_bits(bits);
  if (prefill_bits) request.mutable_prefill_precision()->set_mantissa_bits(prefill_bits);
  if (absl::GetFlag(FLAGS_chat)) {
    if (!absl::GetFlag(FLAGS_system).empty()) {
      auto* system = request.mutable_chat()->add_messages();
      system->set_role("system");
      system->set_content(absl::GetFlag(FLAGS_system));
    }
    auto* user = request.mutable_chat()->add_messages();
    user->set_role("user");
    user->set_content(prompt);
  } else {
    request.set_text(prompt);
  }
  request.set_max_tokens(static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_max_tokens))));
  auto* sampling = request.mutable_sampling();
  sampling->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  sampling->set_top_k(static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_top_k))));
  sampling->set_top_p(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  if (absl::GetFlag(FLAGS_seed) >= 0) sampling->set_seed(absl::GetFlag(FLAGS_seed));
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) request.add_stop(stop);

  auto stub = otaro::v1::Inference::NewStub(Connect(options));
  // Generation can take a while: the deadline covers the whole stream.
  auto context = NewContext(options);
  auto stream = stub->GenerateStream(context.get(), request);
  otaro::v1::GenerateChunk chunk, last;
  while (stream->Read(&chunk)) {
    std::fwrite(chunk.text().data(), 1, chunk.text().size(), stdout);
    std::fflush(stdout);
    if (chunk.finish_reason() != otaro::v1::FINISH_REASON_UNSPECIFIED) last = chunk;
  }
  grpc::Status status = stream->Finish();
  std::printf("\n");
  if (!status.ok()) return Fail(DescribeError(options, "generate", status));
  const auto& t = last.timings();
  const double decode_rate = t.decode_seconds() > 0 && last.usage().generated_tokens() > 1
                                 ? (last.usage().generated_tokens() - 1) / t.decode_seconds()
                                 : 0;
  std::fprintf(stderr,
               "[%s; E5M%u prefill, E5M%u decode; model v%llu; %u prompt + %u generated tokens; "
               "TTFT %.3f s, %.1f tokens/s; seed %llu]\n",
               otaro::v1::FinishReason_Name(last.finish_reason()).c_str(),
               last.prefill_precision().mantissa_bits(), last.decode_precision().mantissa_bits(),
               static_cast<unsigned long long>(last.model_version()),
               last.usage().prompt_tokens(), last.usage().generated_tokens(),
               t.time_to_first_token_seconds(), decode_rate,
               static_cast<unsigned long long>(last.seed()));
  return 0;
}

std::string Describe(const otaro::v1::ModelVersion& version) {
  std::string text = absl::StrCat("model version ", version.version(), " (",
                                  version.checkpoint_path(), ")");
  if (version.base_version() != 0) absl::StrAppend(&text, ", tuned from ", version.base_version());
  if (!version.tuning_job_id().empty()) absl::StrAppend(&text, " by job ", version.tuning_job_id());
  return text;
}

int PrintVersionsTable(const otaro::v1::ListModelVersionsResponse& response) {
  std::printf("%-8s %-8s %-21s %-5s %-14s %-16s %s\n", "VERSION", "SERVING", "CREATED", "BASE",
              "JOB", "STRATEGY", "CHECKPOINT");
  for (const otaro::v1::ModelVersion& v : response.versions()) {
    std::string strategy = v.strategy() == otaro::v1::STRATEGY_UNSPECIFIED
                               ? "-"
                               : otaro::v1::Strategy_Name(v.strategy()).substr(9);  // STRATEGY_
    std::printf("%-8llu %-8s %-21s %-5s %-14s %-16s %s\n",
                static_cast<unsigned long long>(v.version()), v.serving() ? "*" : "",
                FormatUnixTime(v.created_unix_seconds()).c_str(),
                v.base_version() != 0 ? absl::StrCat(v.base_version()).c_str() : "-",
                v.tuning_job_id().empty() ? "-" : v.tuning_job_id().c_str(), strategy.c_str(),
                v.checkpoint_path().c_str());
  }
  return 0;
}

// otaro models list | publish N | rollback
int ModelsCommand(const std::vector<std::string>& words) {
  const std::string usage = "usage: otaro models list | publish VERSION | rollback";
  if (words.empty()) {
    std::fprintf(stderr, "otaro: %s\n", usage.c_str());
    return 2;
  }
  const std::string& action = words[0];
  uint64_t version = 0;
  if (action == "publish") {
    if (words.size() != 2 || !absl::SimpleAtoi(words[1], &version) || version == 0) {
      std::fprintf(stderr, "otaro: models publish needs one version number (from 1)\n%s\n",
                   usage.c_str());
      return 2;
    }
  } else if ((action != "list" && action != "rollback") || words.size() != 1) {
    std::fprintf(stderr, "otaro: unknown models command '%s'\n%s\n",
                 absl::StrJoin(words, " ").c_str(), usage.c_str());
    return 2;
  }
  ConnectionOptions options = OptionsFromFlags();
  auto stub = otaro::v1::ModelVersions::NewStub(Connect(options));
  auto context = NewContext(options);
  const std::string what = "models " + action;
  if (action == "list") {
    otaro::v1::ListModelVersionsResponse response;
    grpc::Status status =
        stub->ListModelVersions(context.get(), otaro::v1::ListModelVersionsRequest(), &response);
    if (!status.ok()) return Fail(DescribeError(options, what.c_str(), status));
    if (!absl::GetFlag(FLAGS_json)) return PrintVersionsTable(response);
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    print.add_whitespace = true;
    (void)google::protobuf::util::MessageToJsonString(response, &json, print);
    std::printf("%s", json.c_str());
    return 0;
  }
  otaro::v1::ModelVersion served;
  grpc::Status status;
  if (action == "publish") {
    otaro::v1::PublishModelVersionRequest request;
    request.set_version(version);
    status = stub->PublishModelVersion(context.get(), request, &served);
  } else {
    status = stub->RollbackModelVersion(context.get(), otaro::v1::RollbackModelVersionRequest(),
                                        &served);
  }
  if (!status.ok()) return Fail(DescribeError(options, what.c_str(), status));
  std::printf("now serving %s\n", Describe(served).c_str());
  return 0;
}

struct Command {
  const char* summary;
  std::function<int(const std::vector<std::string>& args)> run;
  bool takes_args = false;
};

const std::map<std::string, Command>& Commands() {
  static const auto* commands = new std::map<std::string, Command>{
      {"health", {"check the server's health (exit 0 when SERVING)",
                  [](const std::vector<std::string>&) { return HealthCommand(); }}},
      {"info", {"show the served model: size, precisions, version, memory",
                [](const std::vector<std::string>&) { return InfoCommand(); }}},
      {"generate", {"PROMPT...: stream a completion (--bits 4, --chat, ...; - = stdin)",
                    GenerateCommand, /*takes_args=*/true}},
      {"models", {"list | publish N | rollback: the model versions and which one is served",
                  ModelsCommand, /*takes_args=*/true}},
      {"tune", {"create K=V... | list | get ID | cancel ID | events ID | resume ID: tuning jobs",
                [](const std::vector<std::string>& words) {
                  return TuneCommand(OptionsFromFlags(), words, absl::GetFlag(FLAGS_json));
                },
                /*takes_args=*/true}},
  };
  return *commands;
}

// The offline tools the usage lists: `otaro NAME ...` runs otaro-NAME, built
// by //tools/NAME:otaro-NAME.
struct OfflineTool {
  const char* name;
  const char* summary;
};
constexpr OfflineTool kOfflineTools[] = {
    {"convert", "IN OUT: a HF folder or GGUF file to a SEFP checkpoint"},
    {"export", "MODEL OUT --format gguf|hf: for llama.cpp or transformers"},
    {"tune", "--model M --data D --out DIR | --recipe FILE: an OTARo run on this machine"},
    {"eval", "ppl | zeroshot: perplexity and zero-shot accuracy"},
};

bool IsOfflineTool(const std::string& name) {
  return std::any_of(std::begin(kOfflineTools), std::end(kOfflineTools),
                     [&](const OfflineTool& tool) { return name == tool.name; });
}

std::string Usage() {
  std::string usage = "otaro COMMAND [flags]\n\ncommands:\n";
  auto line = [&](const std::string& name, const std::string& summary) {
    absl::StrAppend(&usage, "  ", name, std::string(10 - std::min<size_t>(name.size(), 9), ' '),
                    summary, "\n");
  };
  for (const auto& [name, command] : Commands()) line(name, command.summary);
  for (const OfflineTool& tool : kOfflineTools) {
    line(tool.name, absl::StrCat(tool.summary, " (offline)"));
  }
  absl::StrAppend(&usage, "\nflags: --server host:port, --timeout_seconds S; otaro --help for all");
  return usage;
}

}  // namespace
}  // namespace otaro::client

int main(int argc, char** argv) {
  using otaro::client::Commands;
  // An offline tool (otaro convert ...) takes its own flags: hand it the raw
  // arguments before this binary's flag parser could reject them.
  // `otaro tune --model ...` (no server word after tune) is the offline run.
  const bool offline_tune = argc >= 2 && std::string(argv[1]) == "tune" &&
                            (argc < 3 || !otaro::client::IsTuneServerCommand(argv[2]));
  if (argc >= 2 && argv[1][0] != '-' && (offline_tune || !Commands().count(argv[1]))) {
    const std::string tool = otaro::client::FindTool(argv[1]);
    if (!tool.empty()) {
      std::vector<char*> tool_args = {const_cast<char*>(tool.c_str())};
      for (int i = 2; i < argc; ++i) tool_args.push_back(argv[i]);
      tool_args.push_back(nullptr);
      ::execv(tool.c_str(), tool_args.data());
      std::fprintf(stderr, "otaro: cannot run %s\n", tool.c_str());
      return 1;
    }
    // A command the usage lists as offline whose tool is missing: say so,
    // instead of "unknown command".
    const std::string name = argv[1];
    if (otaro::client::IsOfflineTool(name)) {  // "tune" gets here only as the offline run
      std::fprintf(stderr,
                   "otaro: '%s' runs the offline tool otaro-%s, which is neither beside this "
                   "binary nor on PATH; build it with bazel build -c opt //tools/%s:otaro-%s "
                   "(tools/serve.sh builds it)\n",
                   name.c_str(), name.c_str(), name.c_str(), name.c_str());
      return 2;
    }
  }
  // Accept --prefill-bits as well as --prefill_bits (absl flag names use
  // underscores; people type dashes).
  std::vector<std::string> normalized(argv, argv + argc);
  std::vector<char*> flag_argv;
  for (std::string& arg : normalized) {
    if (arg.rfind("--", 0) == 0) {
      const size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2, arg.begin() + end, '-', '_');
    }
    flag_argv.push_back(arg.data());
  }
  absl::SetProgramUsageMessage(otaro::client::Usage());
  std::vector<char*> args = absl::ParseCommandLine(argc, flag_argv.data());
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", otaro::client::Usage().c_str());
    return 2;
  }
  auto it = Commands().find(args[1]);
  if (it == Commands().end() || (args.size() > 2 && !it->second.takes_args)) {
    std::fprintf(stderr, "otaro: unknown command '%s'\n\n%s\n",
                 absl::StrJoin(args.begin() + 1, args.end(), " ").c_str(),
                 otaro::client::Usage().c_str());
    return 2;
  }
  return it->second.run(std::vector<std::string>(args.begin() + 2, args.end()));
}
