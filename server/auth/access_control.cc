#include "server/auth/access_control.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace otaro::server::auth {
namespace {

constexpr absl::string_view kBearer = "bearer ";

// The first bytes of an unknown token's digest, so an operator can tell which
// stale token a client keeps sending without the token reaching the log.
std::string Fingerprint(absl::string_view token) {
  const TokenDigest digest = DigestToken(token);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest.data()), 4));
}

}  // namespace

absl::string_view AccessControl::ReasonLabel(DenyReason reason) {
  switch (reason) {
    case DenyReason::kMissingToken: return "missing_token";
    case DenyReason::kMalformedHeader: return "malformed_header";
    case DenyReason::kUnknownToken: return "unknown_token";
    case DenyReason::kRoleTooLow: return "permission_denied";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<AccessControl>> AccessControl::Create(
    TokenTable tokens, metrics::Registry* registry) {
  std::unique_ptr<AccessControl> control(new AccessControl(std::move(tokens)));
  if (registry != nullptr) {
    OTARO_ASSIGN_OR_RETURN(
        metrics::CounterFamily * denied,
        registry->AddCounter("otaro_auth_denied_total",
                             "gRPC calls refused by access control, by reason: missing_token, "
                             "malformed_header, unknown_token (UNAUTHENTICATED) or "
                             "permission_denied (the token's role does not grant the RPC).",
                             {"reason"}));
    // Every reason is exported from the start, at 0.
    for (int r = 0; r < kNumDenyReasons; ++r) {
      control->denied_[r] = &denied->WithLabels({ReasonLabel(static_cast<DenyReason>(r))});
    }
  }
  return control;
}

AccessControl::Verdict AccessControl::Deny(DenyReason reason, absl::string_view method,
                                           absl::Status status, absl::string_view log_detail,
                                           const TokenEntry* token) const {
  if (metrics::Counter* counter = denied_[static_cast<int>(reason)]) counter->Increment();
  OTARO_LOG_WARN("denied {}: {} ({})", method, ReasonLabel(reason), log_detail);
  return {std::move(status), token};
}

AccessControl::Verdict AccessControl::Check(
    absl::string_view method, absl::Span<const absl::string_view> authorization) const {
  const Access needed = RequiredAccess(method);
  if (needed == Access::kPublic) return {absl::OkStatus(), nullptr};

  if (authorization.empty()) {
    return Deny(DenyReason::kMissingToken, method,
                absl::UnauthenticatedError(absl::StrCat(
                    method, " needs a token: send the metadata 'authorization: Bearer <token>' "
                            "(otaro CLI: --token or OTARO_TOKEN)")),
                "no authorization metadata");
  }
  // RFC 6750: the scheme is case-insensitive; exactly one credential per call.
  const absl::string_view header = authorization[0];
  if (authorization.size() > 1 || header.size() <= kBearer.size() ||
      !absl::StartsWithIgnoreCase(header, kBearer)) {
    return Deny(DenyReason::kMalformedHeader, method,
                absl::UnauthenticatedError(
                    "the authorization metadata must be exactly one 'Bearer <token>'"),
                authorization.size() > 1 ? "several authorization values" : "not 'Bearer <token>'");
  }
  const absl::string_view token = absl::StripAsciiWhitespace(header.substr(kBearer.size()));
  const TokenEntry* entry = tokens_.Find(token);
  if (entry == nullptr) {
    return Deny(DenyReason::kUnknownToken, method,
                absl::UnauthenticatedError("unknown token"),
                absl::StrCat("unknown token, sha256 prefix ", Fingerprint(token)));
  }
  if (!RoleGrants(entry->role, needed)) {
    return Deny(DenyReason::kRoleTooLow, method,
                absl::PermissionDeniedError(absl::StrCat(
                    "token '", entry->name, "' has role ", RoleName(entry->role), "; ", method,
                    " needs role ", AccessName(needed))),
                absl::StrCat("token '", entry->name, "', role ", RoleName(entry->role),
                             ", needs ", AccessName(needed)),
                entry);
  }
  return {absl::OkStatus(), entry};
}

}  // namespace otaro::server::auth
