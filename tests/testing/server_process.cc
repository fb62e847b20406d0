#include "tests/testing/server_process.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace otaro::testing {

ServerProcess::ServerProcess(const std::string& dir, const std::vector<std::string>& args,
                             absl::Duration timeout)
    : dir_(dir) {
  const std::string ready_file = dir_ + "/ready.json";
  std::vector<std::string> argv = {RunfilePath("server/otaro_server"), "--ready_file",
                                   ready_file};
  argv.insert(argv.end(), args.begin(), args.end());
  process_ = std::make_unique<Subprocess>(argv, dir_);
  const std::string ready = WaitForFile(ready_file, timeout, process_.get());
  if (ready.empty()) {
    ADD_FAILURE() << "otaro_server did not become ready; stderr:\n" << process_->Stderr();
    return;
  }
  auto json = nlohmann::json::parse(ready);
  grpc_port_ = json["grpc_port"].get<int>();
  metrics_port_ = json["metrics_port"].get<int>();
  channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
}

std::string ServerProcess::address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }

}  // namespace otaro::testing
