// Which role each RPC needs. Deny by default: an RPC missing from the table
// needs admin, and a test enumerates every service's descriptor so that a new
// RPC without an entry here fails the build's tests.
//
//   public   grpc.health.v1.Health: probes of load balancers and orchestrators
//            carry no token.
//   generate otaro.v1.Inference, and server reflection (it describes the API
//            but is not needed by plain clients, so it is not public).
//   admin    otaro.v1.Tuning and otaro.v1.ModelVersions, and anything else.
#ifndef OTARO_SERVER_AUTH_ACCESS_POLICY_H_
#define OTARO_SERVER_AUTH_ACCESS_POLICY_H_

#include <vector>

#include "absl/strings/string_view.h"
#include "server/auth/token_file.h"

namespace otaro::server::auth {

enum class Access {
  kPublic,    // no token needed
  kGenerate,  // role generate or admin
  kAdmin,     // role admin
};

absl::string_view AccessName(Access access);

struct MethodPolicy {
  absl::string_view method;  // gRPC path, "/package.Service/Method"
  Access access;
};

// Every RPC the server serves, with the access it needs.
const std::vector<MethodPolicy>& PolicyTable();

// The access `method` (a gRPC path) needs; kAdmin for one not in the table.
Access RequiredAccess(absl::string_view method);

bool RoleGrants(Role role, Access access);

}  // namespace otaro::server::auth

#endif  // OTARO_SERVER_AUTH_ACCESS_POLICY_H_
