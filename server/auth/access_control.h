// The per-call decision: which token a call carries (metadata
// `authorization: Bearer <token>`), and whether its role may call the method.
// Missing, malformed or unknown token: UNAUTHENTICATED; a known token whose role
// does not grant the method: PERMISSION_DENIED. Each denied call is logged with
// the token's name (never the token) and counted in otaro_auth_denied_total.
#ifndef OTARO_SERVER_AUTH_ACCESS_CONTROL_H_
#define OTARO_SERVER_AUTH_ACCESS_CONTROL_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "server/auth/access_policy.h"
#include "server/auth/token_file.h"
#include "server/metrics/registry.h"

namespace otaro::server::auth {

// Auth-context properties an allowed call carries (grpc::AuthContext, e.g.
// context->auth_context()->FindPropertyValues(kTokenNameProperty)), so that
// handlers can record who asked for something. Absent on public methods.
inline constexpr char kTokenNameProperty[] = "otaro.token_name";
inline constexpr char kTokenRoleProperty[] = "otaro.token_role";

class AccessControl {
 public:
  // Registers otaro_auth_denied_total{reason} in `registry` (may be null: no
  // counting).
  static absl::StatusOr<std::unique_ptr<AccessControl>> Create(TokenTable tokens,
                                                               metrics::Registry* registry);

  struct Verdict {
    absl::Status status;              // OK, UNAUTHENTICATED or PERMISSION_DENIED
    const TokenEntry* token = nullptr;  // the caller's token when it was recognised
  };

  // `method` is the gRPC path ("/otaro.v1.Inference/Generate"); `authorization`
  // every value of the call's `authorization` metadata. Thread-safe.
  Verdict Check(absl::string_view method,
                absl::Span<const absl::string_view> authorization) const;

  const TokenTable& tokens() const { return tokens_; }

 private:
  enum class DenyReason { kMissingToken, kMalformedHeader, kUnknownToken, kRoleTooLow };
  static constexpr int kNumDenyReasons = 4;
  static absl::string_view ReasonLabel(DenyReason reason);

  explicit AccessControl(TokenTable tokens) : tokens_(std::move(tokens)) {}
  Verdict Deny(DenyReason reason, absl::string_view method, absl::Status status,
               absl::string_view log_detail, const TokenEntry* token = nullptr) const;

  const TokenTable tokens_;
  metrics::Counter* denied_[kNumDenyReasons] = {};
};

}  // namespace otaro::server::auth

#endif  // OTARO_SERVER_AUTH_ACCESS_CONTROL_H_
