// otaro_server: serves one SEFP model over gRPC at the precision each request
// asks for. Process concerns live here: flags, config loading, signals, exit
// codes. Exit codes: 0 clean stop, 1 runtime failure or forced stop, 2 bad
// command line or config.
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/logging.h"
#include "common/process_memory.h"
#include "server/build_info.h"
#include "server/config/config.h"
#include "server/otaro_server.h"

ABSL_FLAG(std::string, config, "", "YAML config file (see README: Configuration).");
ABSL_FLAG(std::string, model, "", "Model to serve; the same as --set model.path=PATH.");
ABSL_FLAG(std::string, ready_file, "",
          "Once serving, write the bound ports here as JSON "
          "{\"grpc_port\":N,\"metrics_port\":M,\"http_port\":H,\"pid\":P} (0 for a "
          "disabled listener; for supervisors and tests).");
ABSL_FLAG(bool, print_config, false, "Print the effective config as YAML and exit.");
ABSL_FLAG(bool, print_config_reference, false,
          "Print every config key as a Markdown table and exit.");

namespace {

constexpr char kSetFlagHelp[] =
    "  --set key.path=value   override one config key (repeatable), e.g.\n"
    "                         --set server.grpc_address=0.0.0.0:50051\n";

// Takes every `--set k=v` / `--set=k=v` out of argv (absl flags keep only the
// last value of a repeated flag; overrides must all apply, in order).
std::vector<std::string> ExtractSetFlags(int* argc, char** argv, std::string* error) {
  std::vector<std::string> overrides;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--set" || arg == "-set") {
      if (i + 1 >= *argc) {
        *error = "--set needs a value: --set key.path=value";
        return {};
      }
      overrides.push_back(argv[++i]);
    } else if (absl::StartsWith(arg, "--set=") || absl::StartsWith(arg, "-set=")) {
      overrides.push_back(arg.substr(arg.find('=') + 1));
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  return overrides;
}

// The main thread's id, for ForwardToMainThread.
pid_t main_thread_id = 0;

// Runs only on a thread that does not block the stop signals: one started
// before main() blocked them. OpenBLAS starts its worker threads from a
// library constructor, so a SIGTERM sent while the main thread is not inside
// sigwait could land there and, with the default action, kill the server
// (exit 143 instead of a drain: a rare failure of SecondSignalForcesExit).
// Handing it to the main thread keeps it pending there for sigwait.
// (tgkill is a plain system call, safe in a signal handler.)
void ForwardToMainThread(int signal_number) {
  ::syscall(SYS_tgkill, ::getpid(), main_thread_id, signal_number);
}

int WaitForSignal(const sigset_t& signals) {
  int signal_number = 0;
  while (sigwait(&signals, &signal_number) != 0) {
  }
  return signal_number;
}

}  // namespace

int main(int argc, char** argv) {
  // Versions and tuning jobs come and go for as long as the server runs: fixed
  // allocator thresholds keep what they free from staying resident
  // (common/process_memory.h).
  const bool heap_configured = otaro::ConfigureHeapForLongRunningServer();
  // Signals are taken synchronously by the main thread: block them before any
  // thread of ours exists, so every thread gRPC or civetweb starts inherits
  // the mask; threads that libraries started earlier forward them (above).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  main_thread_id = static_cast<pid_t>(::syscall(SYS_gettid));
  struct sigaction forward = {};
  forward.sa_handler = ForwardToMainThread;
  sigemptyset(&forward.sa_mask);
  forward.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &forward, nullptr);
  sigaction(SIGINT, &forward, nullptr);

  std::string set_error;
  std::vector<std::string> overrides = ExtractSetFlags(&argc, argv, &set_error);
  if (!set_error.empty()) {
    std::fprintf(stderr, "otaro_server: %s\n", set_error.c_str());
    return 2;
  }
  absl::SetProgramUsageMessage(absl::StrCat(
      "otaro_server [--config FILE] [--model PATH] [--set key=value ...]\n\n"
      "Serves one SEFP model over gRPC; every request picks its precision.\n",
      kSetFlagHelp));
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "otaro_server: unexpected argument '%s' (see --help)\n", positional[1]);
    return 2;
  }
  if (absl::GetFlag(FLAGS_print_config_reference)) {
    std::fputs(otaro::server::ConfigReferenceMarkdown().c_str(), stdout);
    return 0;
  }
  if (!absl::GetFlag(FLAGS_model).empty()) {
    overrides.insert(overrides.begin(), "model.path=" + absl::GetFlag(FLAGS_model));
  }
  auto config = otaro::server::LoadConfig(absl::GetFlag(FLAGS_config), overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "otaro_server: bad configuration: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  if (absl::GetFlag(FLAGS_print_config)) {
    std::fputs(otaro::server::FormatConfig(*config).c_str(), stdout);
    return 0;
  }

  otaro::InitLogging();
  if (auto status = otaro::SetLogLevel(config->logging.level); !status.ok()) {
    std::fprintf(stderr, "otaro_server: %s\n", std::string(status.message()).c_str());
    return 2;
  }
  OTARO_LOG_INFO("otaro_server {} ({}) starting, pid {}", otaro::server::kVersion,
                 otaro::server::kGitCommit, ::getpid());
  OTARO_LOG_INFO("effective configuration:\n{}", otaro::server::FormatConfig(*config));
  OTARO_LOG_INFO("heap: {}", heap_configured
                                 ? "fixed malloc thresholds (blocks >= 1 MiB mapped, arena tops "
                                   "above 4 MiB returned on free)"
                                 : "left to the C library (GLIBC_TUNABLES sets it, or not glibc)");

  auto server = otaro::server::OtaroServer::Start(*config);
  if (!server.ok()) {
    OTARO_LOG_ERROR("cannot start: {}", server.status().ToString());
    return 1;
  }
  OTARO_LOG_INFO("serving gRPC on port {}{}{}", (*server)->grpc_port(),
                 (*server)->metrics_port() ? absl::StrCat(", metrics on port ",
                                                          (*server)->metrics_port())
                                           : std::string(", metrics disabled"),
                 (*server)->http_port() ? absl::StrCat(", OpenAI API on port ",
                                                       (*server)->http_port())
                                        : std::string(", OpenAI API disabled"));
  if (const std::string ready_file = absl::GetFlag(FLAGS_ready_file); !ready_file.empty()) {
    auto status = otaro::WriteFileAtomically(
        ready_file, absl::StrCat("{\"grpc_port\":", (*server)->grpc_port(),
                                 ",\"metrics_port\":", (*server)->metrics_port(),
                                 ",\"http_port\":", (*server)->http_port(),
                                 ",\"pid\":", ::getpid(), "}\n"));
    if (!status.ok()) OTARO_LOG_ERROR("cannot write --ready_file: {}", status.ToString());
  }

  int first = WaitForSignal(stop_signals);
  OTARO_LOG_INFO("received {}: draining (a second signal forces the exit)", strsignal(first));

  std::atomic<bool> drained{false};
  std::atomic<bool> all_finished{false};
  std::thread drainer([&] {
    all_finished = (*server)->Drain();
    drained = true;
    // Wake the main thread's sigwait.
    ::kill(::getpid(), SIGTERM);
  });
  WaitForSignal(stop_signals);
  if (!drained) {
    OTARO_LOG_ERROR("second signal: exiting now without finishing in-flight calls");
    std::fflush(nullptr);
    ::_exit(1);
  }
  drainer.join();
  server->reset();
  OTARO_LOG_INFO("stopped{}", all_finished ? "" : " (some calls were cancelled at the timeout)");
  return 0;
}
