// otaro: the command-line client of otaro_server. It uses only the public API
// (proto/) and the standard gRPC health protocol.
//
//   otaro health [--service NAME]   exit 0 when SERVING, 1 otherwise
//   otaro info [--json]             what the server serves
//   otaro COMMAND ...               any other command runs the offline tool
//                                   otaro-COMMAND (e.g. otaro convert IN OUT),
//                                   as git does: this binary stays a pure API
//                                   client and never links the engine.
//
// Exit codes: 0 success, 1 the server said no or could not be reached,
// 2 bad command line.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/connection.h"
#include "google/protobuf/util/json_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "otaro/v1/inference.grpc.pb.h"

ABSL_FLAG(std::string, server, "",
          "otaro_server address host:port (default: $OTARO_SERVER or 127.0.0.1:50051).");
ABSL_FLAG(double, timeout_seconds, 10, "Deadline of each call.");
ABSL_FLAG(std::string, service, "",
          "health: the service to check (empty = the whole server; otaro.v1.Inference = "
          "ready to generate).");
ABSL_FLAG(bool, json, false, "info: print the raw response as JSON.");

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
  std::printf("device           %s\n", info.device().c_str());
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
    candidates.push_back(self.parent_path().parent_path() / "tools" / name / tool);
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

struct Command {
  const char* summary;
  std::function<int()> run;
};

const std::map<std::string, Command>& Commands() {
  static const auto* commands = new std::map<std::string, Command>{
      {"health", {"check the server's health (exit 0 when SERVING)", HealthCommand}},
      {"info", {"show the served model: size, precisions, version, memory", InfoCommand}},
  };
  return *commands;
}

std::string Usage() {
  std::string usage = "otaro COMMAND [flags]\n\ncommands:\n";
  for (const auto& [name, command] : Commands()) {
    absl::StrAppend(&usage, "  ", name, std::string(10 - name.size(), ' '), command.summary, "\n");
  }
  absl::StrAppend(&usage, "  convert   IN OUT: a HF folder or GGUF file to a SEFP checkpoint (offline)\n");
  absl::StrAppend(&usage, "\nflags: --server host:port, --timeout_seconds S; otaro --help for all");
  return usage;
}

}  // namespace
}  // namespace otaro::client

int main(int argc, char** argv) {
  using otaro::client::Commands;
  // An offline tool (otaro convert ...) takes its own flags: hand it the raw
  // arguments before this binary's flag parser could reject them.
  if (argc >= 2 && argv[1][0] != '-' && !Commands().count(argv[1])) {
    const std::string tool = otaro::client::FindTool(argv[1]);
    if (!tool.empty()) {
      std::vector<char*> tool_args = {const_cast<char*>(tool.c_str())};
      for (int i = 2; i < argc; ++i) tool_args.push_back(argv[i]);
      tool_args.push_back(nullptr);
      ::execv(tool.c_str(), tool_args.data());
      std::fprintf(stderr, "otaro: cannot run %s\n", tool.c_str());
      return 1;
    }
  }
  absl::SetProgramUsageMessage(otaro::client::Usage());
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", otaro::client::Usage().c_str());
    return 2;
  }
  auto it = Commands().find(args[1]);
  if (it == Commands().end() || args.size() > 2) {
    std::fprintf(stderr, "otaro: unknown command '%s'\n\n%s\n",
                 absl::StrJoin(args.begin() + 1, args.end(), " ").c_str(),
                 otaro::client::Usage().c_str());
    return 2;
  }
  return it->second.run();
}
