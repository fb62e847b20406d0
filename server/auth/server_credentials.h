// The credentials of otaro_server's gRPC listener, from the auth and tls
// config sections: plaintext or TLS (optionally requiring client
// certificates), with access control when auth.token_file is set.
//
// Why not grpc::AuthMetadataProcessor on grpc::InsecureServerCredentials: in
// gRPC 1.51 (Debian 12) that combination aborts, and server interceptors cannot
// fail a call with a status of their choosing. gRPC core's auth metadata
// processor works for every core credential type, plaintext included, and runs
// before the call reaches any service: so the listener is built from core
// credentials (grpc_security.h) with the processor attached, and no handler
// can forget the check.
#ifndef OTARO_SERVER_AUTH_SERVER_CREDENTIALS_H_
#define OTARO_SERVER_AUTH_SERVER_CREDENTIALS_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/server_credentials.h"
#include "server/auth/access_control.h"
#include "server/config/config.h"
#include "server/metrics/registry.h"

namespace otaro::server::auth {

struct ServerSecurity {
  // The gRPC listener's credentials, with `access_control` attached.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // The token check; null without auth.token_file. The OpenAI HTTP API asks
  // the same object, so both protocols enforce one set of tokens and roles.
  std::shared_ptr<const AccessControl> access_control;
};

// Checks the config (a token file, or else loopback listeners; readable,
// matching TLS files), loads the tokens, registers the auth metrics in
// `registry` and logs what the listener will enforce. Errors name the config
// key and the file.
absl::StatusOr<ServerSecurity> MakeServerSecurity(const Config& config,
                                                  metrics::Registry* registry);

}  // namespace otaro::server::auth

#endif  // OTARO_SERVER_AUTH_SERVER_CREDENTIALS_H_
