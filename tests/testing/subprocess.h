// Runs a real binary (otaro_server, the otaro CLI) from a test: start it with
// its output captured to files, signal it, wait for it with a timeout. Tests
// talk to the binaries users run, not to in-process stand-ins.
#ifndef OTARO_TESTS_TESTING_SUBPROCESS_H_
#define OTARO_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace otaro::testing {

// Absolute path of a binary built by Bazel and listed in the test's `data`,
// e.g. RunfilePath("server/otaro_server").
std::string RunfilePath(const std::string& workspace_relative);

class Subprocess {
 public:
  // Starts argv[0] with argv; stdout and stderr go to files in `output_dir`.
  explicit Subprocess(std::vector<std::string> argv, const std::string& output_dir);
  ~Subprocess();  // Kills the process if it still runs.

  pid_t pid() const { return pid_; }
  void Signal(int signal_number);

  // The exit code (128 + signal if killed), or nullopt if still running after
  // `timeout`.
  std::optional<int> Wait(absl::Duration timeout);

  std::string Stdout() const;
  std::string Stderr() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string stdout_path_;
  std::string stderr_path_;
};

// Runs to completion (killing it after `timeout`); returns the exit code.
struct RunResult {
  int exit_code;
  std::string out;
  std::string err;
};
RunResult Run(std::vector<std::string> argv, const std::string& output_dir,
              absl::Duration timeout = absl::Seconds(60));

// Waits until `path` exists and is non-empty; returns its contents, or "" when
// `timeout` passes or `process` (if given) exits first.
std::string WaitForFile(const std::string& path, absl::Duration timeout,
                        Subprocess* process = nullptr);

}  // namespace otaro::testing

#endif  // OTARO_TESTS_TESTING_SUBPROCESS_H_
