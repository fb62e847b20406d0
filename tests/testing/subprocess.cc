#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace otaro::testing {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

int NextId() {
  static std::atomic<int> id{0};
  return id++;
}

}  // namespace

std::string RunfilePath(const std::string& workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) {
    std::fprintf(stderr, "TEST_SRCDIR is not set: run this test with bazel test\n");
    std::abort();
  }
  return absl::StrCat(srcdir, "/", workspace ? workspace : "otaro", "/", workspace_relative);
}

Subprocess::Subprocess(std::vector<std::string> argv, const std::string& output_dir) {
  int id = NextId();
  stdout_path_ = absl::StrCat(output_dir, "/proc", id, ".out");
  stderr_path_ = absl::StrCat(output_dir, "/proc", id, ".err");
  pid_ = ::fork();
  if (pid_ == 0) {
    // Child: no signals blocked, output to files, exec.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int out = ::open(stdout_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::fprintf(stderr, "exec %s failed\n", args[0]);
    ::_exit(127);
  }
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exit_code_) {
    ::kill(pid_, SIGKILL);
    Wait(absl::Seconds(10));
  }
}

void Subprocess::Signal(int signal_number) {
  if (pid_ > 0 && !exit_code_) ::kill(pid_, signal_number);
}

std::optional<int> Subprocess::Wait(absl::Duration timeout) {
  if (exit_code_) return exit_code_;
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

std::string Subprocess::Stdout() const { return ReadAll(stdout_path_); }
std::string Subprocess::Stderr() const { return ReadAll(stderr_path_); }

RunResult Run(std::vector<std::string> argv, const std::string& output_dir,
              absl::Duration timeout) {
  Subprocess process(std::move(argv), output_dir);
  std::optional<int> code = process.Wait(timeout);
  if (!code) {
    process.Signal(SIGKILL);
    code = process.Wait(absl::Seconds(10));
  }
  return {code.value_or(-1), process.Stdout(), process.Stderr()};
}

std::string WaitForFile(const std::string& path, absl::Duration timeout, Subprocess* process) {
  absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::string contents = ReadAll(path);
    if (!contents.empty()) return contents;
    if (process != nullptr && process->Wait(absl::ZeroDuration()).has_value()) return "";
    absl::SleepFor(absl::Milliseconds(20));
  }
  return "";
}

}  // namespace otaro::testing
