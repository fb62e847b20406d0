#include "server/auth/access_policy.h"

#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.pb.h"
#include "grpc/reflection/v1alpha/reflection.pb.h"
#include "gtest/gtest.h"
#include "otaro/v1/inference.pb.h"
#include "otaro/v1/models.pb.h"
#include "otaro/v1/tuning.pb.h"

namespace otaro::server::auth {
namespace {

// Every proto file whose services the server registers. A service added to one
// of them, or an RPC added to a service, must get a policy entry.
std::vector<const google::protobuf::FileDescriptor*> ServedFiles() {
  return {
      otaro::v1::GenerateRequest::descriptor()->file(),
      otaro::v1::TuningJob::descriptor()->file(),
      otaro::v1::ModelVersion::descriptor()->file(),
      grpc::health::v1::HealthCheckRequest::descriptor()->file(),
      grpc::reflection::v1alpha::ServerReflectionRequest::descriptor()->file(),
  };
}

// What the issue asks of each service.
const std::map<std::string, Access>& ExpectedAccessByService() {
  static const auto* expected = new std::map<std::string, Access>{
      {"grpc.health.v1.Health", Access::kPublic},
      {"grpc.reflection.v1alpha.ServerReflection", Access::kGenerate},
      {"otaro.v1.Inference", Access::kGenerate},
      {"otaro.v1.Tuning", Access::kAdmin},
      {"otaro.v1.ModelVersions", Access::kAdmin},
  };
  return *expected;
}

TEST(AccessPolicyTest, EveryRpcOfEveryServedServiceHasItsPolicy) {
  std::set<std::string> described;
  for (const auto* file : ServedFiles()) {
    for (int s = 0; s < file->service_count(); ++s) {
      const auto* service = file->service(s);
      auto expected = ExpectedAccessByService().find(service->full_name());
      ASSERT_NE(expected, ExpectedAccessByService().end())
          << "service " << service->full_name() << " has no expected access in this test";
      for (int m = 0; m < service->method_count(); ++m) {
        const std::string path = absl::StrCat("/", service->full_name(), "/",
                                              service->method(m)->name());
        described.insert(path);
        bool listed = false;
        for (const MethodPolicy& policy : PolicyTable()) listed |= policy.method == path;
        EXPECT_TRUE(listed) << path << " is missing from PolicyTable() (server/auth/access_policy.cc)";
        EXPECT_EQ(AccessName(RequiredAccess(path)), AccessName(expected->second)) << path;
      }
    }
  }
  EXPECT_EQ(described.size(), PolicyTable().size());
  // No stale entries: each one names an RPC that exists.
  for (const MethodPolicy& policy : PolicyTable()) {
    EXPECT_TRUE(described.count(std::string(policy.method)))
        << policy.method << " is in PolicyTable() but no served service has it";
  }
}

TEST(AccessPolicyTest, UnknownMethodsNeedAdmin) {
  EXPECT_EQ(RequiredAccess("/otaro.v1.Inference/SomethingNew"), Access::kAdmin);
  EXPECT_EQ(RequiredAccess("/otaro.v2.Other/Method"), Access::kAdmin);
  EXPECT_EQ(RequiredAccess(""), Access::kAdmin);
  // Prefix matches do not count.
  EXPECT_EQ(RequiredAccess("/grpc.health.v1.Health/CheckX"), Access::kAdmin);
}

TEST(AccessPolicyTest, RolesGrantTheirAccessAndBelow) {
  EXPECT_TRUE(RoleGrants(Role::kGenerate, Access::kPublic));
  EXPECT_TRUE(RoleGrants(Role::kGenerate, Access::kGenerate));
  EXPECT_FALSE(RoleGrants(Role::kGenerate, Access::kAdmin));
  EXPECT_TRUE(RoleGrants(Role::kAdmin, Access::kPublic));
  EXPECT_TRUE(RoleGrants(Role::kAdmin, Access::kGenerate));
  EXPECT_TRUE(RoleGrants(Role::kAdmin, Access::kAdmin));
}

}  // namespace
}  // namespace otaro::server::auth
