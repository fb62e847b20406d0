#include "client/connection.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace otaro::client {

std::shared_ptr<grpc::Channel> Connect(const ConnectionOptions& options) {
  return grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials());
}

std::unique_ptr<grpc::ClientContext> NewContext(const ConnectionOptions& options) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(
                            static_cast<int64_t>(options.timeout_seconds * 1e6)));
  return context;
}

std::string DescribeError(const ConnectionOptions& options, const char* what,
                          const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (status.error_message().find("shutting down") != std::string::npos) {
        return absl::StrCat(what, ": the server at ", options.address,
                            " is shutting down: ", status.error_message());
      }
      return absl::StrCat("cannot reach otaro_server at ", options.address, " (",
                          status.error_message(),
                          "). Is it running? Set the address with --server or OTARO_SERVER.");
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::StrCat(what, ": no answer from ", options.address, " within ",
                          options.timeout_seconds, " s (--timeout_seconds)");
    default:
      return absl::StrCat(what, " failed: ", status.error_message(), " [code ",
                          static_cast<int>(status.error_code()), "]");
  }
}

}  // namespace otaro::client
