// How the `otaro` CLI reaches a server and explains failures to a person.
#ifndef OTARO_CLIENT_CONNECTION_H_
#define OTARO_CLIENT_CONNECTION_H_

#include <chrono>
#include <memory>
#include <string>

#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace otaro::client {

struct ConnectionOptions {
  // host:port of otaro_server.
  std::string address = "127.0.0.1:50051";
  // Deadline of each call.
  double timeout_seconds = 10;
};

std::shared_ptr<grpc::Channel> Connect(const ConnectionOptions& options);

// A context with the call deadline set.
std::unique_ptr<grpc::ClientContext> NewContext(const ConnectionOptions& options);

// One line a person can act on, e.g. "cannot reach otaro_server at ...".
std::string DescribeError(const ConnectionOptions& options, const char* what,
                          const grpc::Status& status);

}  // namespace otaro::client

#endif  // OTARO_CLIENT_CONNECTION_H_
