// otaro_server started by a test: the real binary on free loopback ports,
// waited for through its --ready_file, with a gRPC channel to it.
#ifndef OTARO_TESTS_TESTING_SERVER_PROCESS_H_
#define OTARO_TESTS_TESTING_SERVER_PROCESS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "tests/testing/subprocess.h"

namespace otaro::testing {

class ServerProcess {
 public:
  // Runs otaro_server with `args` (plus --ready_file) and its output in `dir`,
  // and waits up to `timeout` until it serves. If it does not, the test fails
  // with the server's stderr and the ports stay 0.
  ServerProcess(const std::string& dir, const std::vector<std::string>& args,
                absl::Duration timeout = absl::Seconds(60));

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_port_; }
  std::string address() const;
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  Subprocess& process() { return *process_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::unique_ptr<Subprocess> process_;
  std::shared_ptr<grpc::Channel> channel_;
  int grpc_port_ = 0;
  int metrics_port_ = 0;
};

}  // namespace otaro::testing

#endif  // OTARO_TESTS_TESTING_SERVER_PROCESS_H_
