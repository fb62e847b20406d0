#include "server/auth/access_control.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::server::auth {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdminToken[] = "admin-0123456789abcdef";
constexpr char kGenerateToken[] = "gen-0123456789abcdef";
constexpr char kGenerate[] = "/otaro.v1.Inference/Generate";
constexpr char kListJobs[] = "/otaro.v1.Tuning/ListTuningJobs";
constexpr char kHealth[] = "/grpc.health.v1.Health/Check";

class AccessControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tokens = TokenTable::Parse(
        absl::StrCat(kAdminToken, " admin ops\n", kGenerateToken, " generate app\n"), "test");
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    auto control = AccessControl::Create(*std::move(tokens), &registry_);
    ASSERT_TRUE(control.ok()) << control.status();
    control_ = *std::move(control);
  }

  AccessControl::Verdict Check(absl::string_view method, std::vector<std::string> headers) {
    std::vector<absl::string_view> views(headers.begin(), headers.end());
    return control_->Check(method, views);
  }

  // The counter's line in the exposition, e.g. `...{reason="unknown_token"} 2`.
  std::string DeniedLine(absl::string_view reason, int count) {
    return absl::StrCat("otaro_auth_denied_total{reason=\"", reason, "\"} ", count, "\n");
  }

  metrics::Registry registry_;
  std::unique_ptr<AccessControl> control_;
};

TEST_F(AccessControlTest, HealthIsPublic) {
  EXPECT_TRUE(Check(kHealth, {}).status.ok());
  EXPECT_TRUE(Check("/grpc.health.v1.Health/Watch", {}).status.ok());
  // A wrong token does not make a public call fail.
  EXPECT_TRUE(Check(kHealth, {"Bearer nonsense-token-value"}).status.ok());
}

TEST_F(AccessControlTest, MissingTokenIsUnauthenticated) {
  auto verdict = Check(kGenerate, {});
  EXPECT_EQ(verdict.status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(verdict.status.message(), HasSubstr("authorization: Bearer <token>"));
  EXPECT_EQ(Check("/otaro.v1.Inference/Tokenize", {}).status.code(),
            absl::StatusCode::kUnauthenticated);
}

TEST_F(AccessControlTest, MalformedHeadersAreUnauthenticated) {
  for (const std::vector<std::string>& headers : std::vector<std::vector<std::string>>{
           {kGenerateToken},
           {absl::StrCat("Basic ", kGenerateToken)},
           {"Bearer "},
           {"Bearer"},
           {absl::StrCat("Bearer ", kGenerateToken), absl::StrCat("Bearer ", kAdminToken)}}) {
    auto verdict = Check(kGenerate, headers);
    EXPECT_EQ(verdict.status.code(), absl::StatusCode::kUnauthenticated) << headers[0];
    EXPECT_EQ(verdict.token, nullptr);
  }
}

TEST_F(AccessControlTest, UnknownTokenIsUnauthenticatedAndNotEchoed) {
  auto verdict = Check(kGenerate, {"Bearer not-a-configured-token"});
  EXPECT_EQ(verdict.status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(verdict.status.message(), Not(HasSubstr("not-a-configured-token")));
}

TEST_F(AccessControlTest, GenerateRoleCallsInferenceOnly) {
  auto ok = Check(kGenerate, {absl::StrCat("Bearer ", kGenerateToken)});
  EXPECT_TRUE(ok.status.ok()) << ok.status;
  ASSERT_NE(ok.token, nullptr);
  EXPECT_EQ(ok.token->name, "app");

  auto denied = Check(kListJobs, {absl::StrCat("Bearer ", kGenerateToken)});
  EXPECT_EQ(denied.status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(denied.status.message(), HasSubstr("token 'app' has role generate"));
  EXPECT_THAT(denied.status.message(), HasSubstr("needs role admin"));
  EXPECT_EQ(Check("/otaro.v1.ModelVersions/PublishModelVersion",
                  {absl::StrCat("Bearer ", kGenerateToken)})
                .status.code(),
            absl::StatusCode::kPermissionDenied);
  // Deny by default: an RPC the policy does not know needs admin.
  EXPECT_EQ(Check("/otaro.v1.Inference/NotYetInvented", {absl::StrCat("Bearer ", kGenerateToken)})
                .status.code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(AccessControlTest, AdminRoleCallsEverything) {
  for (const char* method : {kGenerate, kListJobs, "/otaro.v1.ModelVersions/RollbackModelVersion",
                             "/otaro.v1.Inference/NotYetInvented"}) {
    auto verdict = Check(method, {absl::StrCat("Bearer ", kAdminToken)});
    EXPECT_TRUE(verdict.status.ok()) << method << ": " << verdict.status;
  }
}

TEST_F(AccessControlTest, TheSchemeIsCaseInsensitive) {
  EXPECT_TRUE(Check(kGenerate, {absl::StrCat("bearer ", kGenerateToken)}).status.ok());
  EXPECT_TRUE(Check(kGenerate, {absl::StrCat("BEARER ", kGenerateToken)}).status.ok());
}

TEST_F(AccessControlTest, CountsDeniedCallsByReason) {
  // Every reason is exported before anything is denied.
  for (const char* reason :
       {"missing_token", "malformed_header", "unknown_token", "permission_denied"}) {
    EXPECT_THAT(registry_.Serialize(), HasSubstr(DeniedLine(reason, 0)));
  }
  Check(kGenerate, {});
  Check(kGenerate, {});
  Check(kGenerate, {"Basic x"});
  Check(kGenerate, {"Bearer unknown-token-0000000"});
  Check(kListJobs, {absl::StrCat("Bearer ", kGenerateToken)});
  Check(kGenerate, {absl::StrCat("Bearer ", kGenerateToken)});  // allowed: not counted
  Check(kHealth, {});                                           // public: not counted
  const std::string text = registry_.Serialize();
  EXPECT_THAT(text, HasSubstr(DeniedLine("missing_token", 2)));
  EXPECT_THAT(text, HasSubstr(DeniedLine("malformed_header", 1)));
  EXPECT_THAT(text, HasSubstr(DeniedLine("unknown_token", 1)));
  EXPECT_THAT(text, HasSubstr(DeniedLine("permission_denied", 1)));
}

}  // namespace
}  // namespace otaro::server::auth
