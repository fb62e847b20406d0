#include "server/auth/token_file.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "openssl/crypto.h"
#include "openssl/sha.h"

namespace otaro::server::auth {
namespace {

bool IsVisibleAscii(absl::string_view text) {
  for (char c : text) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// Names end up in log lines: keep them to characters that need no quoting.
bool IsValidName(absl::string_view name) {
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' &&
        c != '-' && c != '@' && c != ':') {
      return false;
    }
  }
  return !name.empty();
}

absl::Status LineError(absl::string_view source, int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, " line ", line, ": ", what));
}

absl::StatusOr<Role> ParseRole(absl::string_view text) {
  if (text == "generate") return Role::kGenerate;
  if (text == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown role '", text, "' (generate or admin)"));
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kGenerate: return "generate";
    case Role::kAdmin: return "admin";
  }
  return "unknown";
}

TokenDigest DigestToken(absl::string_view token) {
  TokenDigest digest;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest.data());
  return digest;
}

absl::StatusOr<TokenTable> TokenTable::Parse(absl::string_view text, absl::string_view source) {
  TokenTable table;
  std::map<TokenDigest, int> line_of_token;
  std::map<std::string, int> line_of_name;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() < 2 || fields.size() > 3) {
      return LineError(source, line_number,
                       absl::StrCat("expected '<token> <role> [<name>]', found ", fields.size(),
                                    " field(s)"));
    }
    const absl::string_view token = fields[0];
    if (token.size() < kMinTokenLength || !IsVisibleAscii(token)) {
      return LineError(source, line_number,
                       absl::StrCat("the token must be at least ", kMinTokenLength,
                                    " visible ASCII characters (e.g. `openssl rand -hex 32`)"));
    }
    auto role = ParseRole(fields[1]);
    if (!role.ok()) return LineError(source, line_number, role.status().message());
    std::string name =
        fields.size() == 3 ? std::string(fields[2]) : absl::StrCat("line-", line_number);
    if (!IsValidName(name)) {
      return LineError(source, line_number,
                       absl::StrCat("invalid name '", name,
                                    "' (letters, digits and . _ - @ : only)"));
    }
    TokenEntry entry{DigestToken(token), *role, name, line_number};
    if (auto [it, added] = line_of_token.emplace(entry.digest, line_number); !added) {
      return LineError(source, line_number,
                       absl::StrCat("the same token as line ", it->second));
    }
    if (auto [it, added] = line_of_name.emplace(name, line_number); !added) {
      return LineError(source, line_number,
                       absl::StrCat("the name '", name, "' is already used on line ", it->second));
    }
    table.entries_.push_back(std::move(entry));
  }
  if (table.entries_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": no tokens (every call would be refused); one per line: <token> <role> [<name>]"));
  }
  return table;
}

absl::StatusOr<TokenTable> TokenTable::Load(const std::string& path) {
  struct stat info;
  if (::stat(path.c_str(), &info) != 0) {
    return absl::NotFoundError(
        absl::StrCat("auth.token_file ", path, ": cannot read it: ", std::strerror(errno)));
  }
  if ((info.st_mode & (S_IROTH | S_IWOTH)) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "auth.token_file %s: every user of this machine may read or write it (mode %04o); "
        "restrict it, e.g. chmod 600 %s",
        path, info.st_mode & 07777, path));
  }
  std::string text;
  absl::Status read = ReadFileToString(path, &text);
  if (!read.ok()) {
    return absl::Status(read.code(), absl::StrCat("auth.token_file: ", read.message()));
  }
  return Parse(text, absl::StrCat("auth.token_file ", path));
}

const TokenEntry* TokenTable::Find(absl::string_view token) const {
  const TokenDigest digest = DigestToken(token);
  const TokenEntry* found = nullptr;
  // No early exit: every digest is compared, so the time does not depend on
  // which entry matches.
  for (const TokenEntry& entry : entries_) {
    const bool equal = CRYPTO_memcmp(entry.digest.data(), digest.data(), digest.size()) == 0;
    if (equal) found = &entry;
  }
  return found;
}

}  // namespace otaro::server::auth
