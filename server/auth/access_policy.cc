#include "server/auth/access_policy.h"

namespace otaro::server::auth {

absl::string_view AccessName(Access access) {
  switch (access) {
    case Access::kPublic: return "public";
    case Access::kGenerate: return "generate";
    case Access::kAdmin: return "admin";
  }
  return "unknown";
}

const std::vector<MethodPolicy>& PolicyTable() {
  static const auto* table = new std::vector<MethodPolicy>{
      {"/grpc.health.v1.Health/Check", Access::kPublic},
      {"/grpc.health.v1.Health/Watch", Access::kPublic},
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", Access::kGenerate},
      {"/otaro.v1.Inference/Generate", Access::kGenerate},
      {"/otaro.v1.Inference/GenerateStream", Access::kGenerate},
      {"/otaro.v1.Inference/Tokenize", Access::kGenerate},
      {"/otaro.v1.Inference/Detokenize", Access::kGenerate},
      {"/otaro.v1.Inference/GetModelInfo", Access::kGenerate},
      {"/otaro.v1.Tuning/CreateTuningJob", Access::kAdmin},
      {"/otaro.v1.Tuning/GetTuningJob", Access::kAdmin},
      {"/otaro.v1.Tuning/ListTuningJobs", Access::kAdmin},
      {"/otaro.v1.Tuning/CancelTuningJob", Access::kAdmin},
      {"/otaro.v1.Tuning/StreamTuningJobEvents", Access::kAdmin},
      {"/otaro.v1.ModelVersions/ListModelVersions", Access::kAdmin},
      {"/otaro.v1.ModelVersions/PublishModelVersion", Access::kAdmin},
      {"/otaro.v1.ModelVersions/RollbackModelVersion", Access::kAdmin},
  };
  return *table;
}

Access RequiredAccess(absl::string_view method) {
  for (const MethodPolicy& policy : PolicyTable()) {
    if (policy.method == method) return policy.access;
  }
  return Access::kAdmin;
}

bool RoleGrants(Role role, Access access) {
  switch (access) {
    case Access::kPublic: return true;
    case Access::kGenerate: return role == Role::kGenerate || role == Role::kAdmin;
    case Access::kAdmin: return role == Role::kAdmin;
  }
  return false;
}

}  // namespace otaro::server::auth
