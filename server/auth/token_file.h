// The bearer tokens otaro_server accepts, read from the file named by
// auth.token_file. One token per line:
//
//   # comment lines and blank lines are ignored
//   <token> <role> [<name>]
//
// role is `generate` (the Inference API) or `admin` (everything). name is what
// the log and the metrics show for calls made with the token (the token itself
// is never logged); it defaults to "line-<N>". A token is at least 16 visible
// ASCII characters, e.g. `openssl rand -hex 32`.
//
// Only SHA-256 digests of the tokens are kept in memory, and a presented token
// is compared with every digest in constant time, so neither a memory dump nor
// response timing gives a token away.
#ifndef OTARO_SERVER_AUTH_TOKEN_FILE_H_
#define OTARO_SERVER_AUTH_TOKEN_FILE_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace otaro::server::auth {

enum class Role { kGenerate, kAdmin };

// "generate" or "admin".
absl::string_view RoleName(Role role);

using TokenDigest = std::array<uint8_t, 32>;

// SHA-256 of the token's bytes.
TokenDigest DigestToken(absl::string_view token);

struct TokenEntry {
  TokenDigest digest;
  Role role;
  std::string name;
  int line;  // 1-based line of the token file, for messages.
};

inline constexpr size_t kMinTokenLength = 16;

class TokenTable {
 public:
  // Parses the file's text; `source` names it in errors, which give the line
  // number (never the token). Rejected: malformed lines, unknown roles, short
  // tokens, a token or a name used twice, and a file without tokens.
  static absl::StatusOr<TokenTable> Parse(absl::string_view text, absl::string_view source);

  // Reads and parses `path`. Refuses a file that every user may read or write
  // (mode o+r or o+w): whoever can read it can call the server as admin.
  static absl::StatusOr<TokenTable> Load(const std::string& path);

  // The entry whose token this is, or null. Takes the same time whichever
  // entry matches (or none), for a table of a given size.
  const TokenEntry* Find(absl::string_view token) const;

  const std::vector<TokenEntry>& entries() const { return entries_; }

 private:
  std::vector<TokenEntry> entries_;
};

}  // namespace otaro::server::auth

#endif  // OTARO_SERVER_AUTH_TOKEN_FILE_H_
