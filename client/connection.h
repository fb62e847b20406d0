// How the `otaro` CLI reaches a server and explains failures to a person.
#ifndef OTARO_CLIENT_CONNECTION_H_
#define OTARO_CLIENT_CONNECTION_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/status.h"

namespace otaro::client {

struct ConnectionOptions {
  // host:port of otaro_server.
  std::string address = "127.0.0.1:50051";
  // Deadline of each call.
  double timeout_seconds = 10;
  // Sent as `authorization: Bearer <token>` with every call (the server's
  // auth.token_file). Empty: no token.
  std::string token;
  // TLS instead of plaintext; the PEM texts below (empty root certificates:
  // the system's trust store).
  bool tls = false;
  std::string tls_root_certs;
  // A client certificate and its key, for servers that require one.
  std::string tls_cert_chain;
  std::string tls_private_key;
  // The name checked against the server's certificate, when it differs from
  // the host in `address`.
  std::string tls_server_name;
};

// Reads the TLS files into `options` (any of them may be empty) and turns TLS
// on when one is given. Errors name the flag and the file.
absl::Status LoadTlsFiles(const std::string& ca_file, const std::string& cert_file,
                          const std::string& key_file, ConnectionOptions* options);

std::shared_ptr<grpc::Channel> Connect(const ConnectionOptions& options);

// A context with the call deadline set.
std::unique_ptr<grpc::ClientContext> NewContext(const ConnectionOptions& options);

// One line a person can act on, e.g. "cannot reach otaro_server at ...".
std::string DescribeError(const ConnectionOptions& options, const char* what,
                          const grpc::Status& status);

}  // namespace otaro::client

#endif  // OTARO_CLIENT_CONNECTION_H_
