#include "server/auth/token_file.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::server::auth {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdminToken[] = "admin-0123456789abcdef";
constexpr char kGenerateToken[] = "gen-0123456789abcdef";

std::string ErrorOf(absl::string_view text) {
  auto table = TokenTable::Parse(text, "tokens.txt");
  EXPECT_FALSE(table.ok()) << "accepted:\n" << text;
  return std::string(table.status().message());
}

TEST(DigestTokenTest, IsSha256) {
  // FIPS 180-2 test vector.
  TokenDigest digest = DigestToken("abc");
  EXPECT_EQ(absl::BytesToHexString(
                absl::string_view(reinterpret_cast<const char*>(digest.data()), digest.size())),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TokenTableTest, ParsesTokensRolesAndNames) {
  auto table = TokenTable::Parse(absl::StrCat("# otaro tokens\n\n", kAdminToken, " admin ops\n",
                                              "  ", kGenerateToken, "\tgenerate   \n"),
                                 "tokens.txt");
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->entries().size(), 2u);

  const TokenEntry* admin = table->Find(kAdminToken);
  ASSERT_NE(admin, nullptr);
  EXPECT_EQ(admin->role, Role::kAdmin);
  EXPECT_EQ(admin->name, "ops");
  EXPECT_EQ(admin->line, 3);

  const TokenEntry* generate = table->Find(kGenerateToken);
  ASSERT_NE(generate, nullptr);
  EXPECT_EQ(generate->role, Role::kGenerate);
  EXPECT_EQ(generate->name, "line-4");  // the default name
}

TEST(TokenTableTest, FindsOnlyTheExactToken) {
  auto table = TokenTable::Parse(absl::StrCat(kAdminToken, " admin\n"), "tokens.txt");
  ASSERT_TRUE(table.ok()) << table.status();
  const std::string token = kAdminToken;
  EXPECT_EQ(table->Find(token.substr(0, token.size() - 1)), nullptr);
  EXPECT_EQ(table->Find(token + "x"), nullptr);
  EXPECT_EQ(table->Find(""), nullptr);
  std::string flipped = token;
  flipped[0] ^= 1;
  EXPECT_EQ(table->Find(flipped), nullptr);
}

TEST(TokenTableTest, KeepsNoTokenInMemory) {
  auto table = TokenTable::Parse(absl::StrCat(kAdminToken, " admin\n"), "tokens.txt");
  ASSERT_TRUE(table.ok());
  const TokenEntry& entry = table->entries()[0];
  const std::string bytes(reinterpret_cast<const char*>(entry.digest.data()), entry.digest.size());
  EXPECT_EQ(bytes.find("admin-0123"), std::string::npos);
  EXPECT_EQ(entry.digest, DigestToken(kAdminToken));
}

TEST(TokenTableTest, BadLinesAreErrorsWithTheLineNumber) {
  EXPECT_THAT(ErrorOf(absl::StrCat("# c\n", kAdminToken, "\n")),
              HasSubstr("tokens.txt line 2: expected '<token> <role> [<name>]', found 1"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kAdminToken, " admin ops extra\n")),
              HasSubstr("tokens.txt line 1: expected '<token> <role> [<name>]', found 4"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kAdminToken, " admin\nshort generate\n")),
              HasSubstr("line 2: the token must be at least 16"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kAdminToken, " root\n")),
              HasSubstr("line 1: unknown role 'root' (generate or admin)"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kAdminToken, " admin ops\n", kGenerateToken, " generate ops\n")),
              HasSubstr("line 2: the name 'ops' is already used on line 1"));
  EXPECT_THAT(ErrorOf(absl::StrCat(kAdminToken, " admin o\"ps\n")),
              HasSubstr("line 1: invalid name"));
}

TEST(TokenTableTest, DuplicateTokensAreErrorsThatDoNotQuoteTheToken) {
  const std::string error =
      ErrorOf(absl::StrCat(kAdminToken, " admin a\n\n", kAdminToken, " generate b\n"));
  EXPECT_THAT(error, HasSubstr("line 3: the same token as line 1"));
  EXPECT_THAT(error, Not(HasSubstr(kAdminToken)));
}

TEST(TokenTableTest, AFileWithoutTokensIsAnError) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("no tokens"));
  EXPECT_THAT(ErrorOf("# only a comment\n\n"), HasSubstr("no tokens"));
}

TEST(RoleNameTest, NamesEveryRole) {
  EXPECT_EQ(RoleName(Role::kGenerate), "generate");
  EXPECT_EQ(RoleName(Role::kAdmin), "admin");
}

class TokenFileLoadTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& text, mode_t mode) {
    const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/tokens.txt";
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }
};

TEST_F(TokenFileLoadTest, LoadsAPrivateFile) {
  auto table = TokenTable::Load(Write(absl::StrCat(kAdminToken, " admin\n"), 0640));
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_NE(table->Find(kAdminToken), nullptr);
}

TEST_F(TokenFileLoadTest, RefusesAFileEveryUserMayRead) {
  const std::string path = Write(absl::StrCat(kAdminToken, " admin\n"), 0644);
  auto table = TokenTable::Load(path);
  ASSERT_FALSE(table.ok());
  EXPECT_THAT(table.status().message(), HasSubstr("mode 0644"));
  EXPECT_THAT(table.status().message(), HasSubstr("chmod 600 " + path));
}

TEST_F(TokenFileLoadTest, ParseErrorsNameTheFile) {
  const std::string path = Write("x y\n", 0600);
  auto table = TokenTable::Load(path);
  ASSERT_FALSE(table.ok());
  EXPECT_THAT(table.status().message(), HasSubstr("auth.token_file " + path + " line 1"));
}

TEST_F(TokenFileLoadTest, AMissingFileIsAnError) {
  auto table = TokenTable::Load("/nonexistent/tokens.txt");
  ASSERT_FALSE(table.ok());
  EXPECT_THAT(table.status().message(), HasSubstr("auth.token_file /nonexistent/tokens.txt"));
}

}  // namespace
}  // namespace otaro::server::auth
