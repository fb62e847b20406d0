// otaro.v1.ModelVersions over ModelVersions (server/model): list, publish and
// roll back the served model version. Access control (admin only) is applied
// in front of every service by server/auth, not here.
#ifndef OTARO_SERVER_SERVICE_MODEL_VERSIONS_SERVICE_H_
#define OTARO_SERVER_SERVICE_MODEL_VERSIONS_SERVICE_H_

#include "otaro/v1/models.grpc.pb.h"
#include "server/model/model_versions.h"
#include "server/service/call_gate.h"

namespace otaro::server {

class ModelVersionsService final : public otaro::v1::ModelVersions::Service {
 public:
  ModelVersionsService(CallGate* gate, ModelVersions* versions)
      : gate_(gate), versions_(versions) {}

  grpc::Status ListModelVersions(grpc::ServerContext* context,
                                 const otaro::v1::ListModelVersionsRequest* request,
                                 otaro::v1::ListModelVersionsResponse* response) override;
  grpc::Status PublishModelVersion(grpc::ServerContext* context,
                                   const otaro::v1::PublishModelVersionRequest* request,
                                   otaro::v1::ModelVersion* response) override;
  grpc::Status RollbackModelVersion(grpc::ServerContext* context,
                                    const otaro::v1::RollbackModelVersionRequest* request,
                                    otaro::v1::ModelVersion* response) override;

 private:
  CallGate* gate_;
  ModelVersions* versions_;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_MODEL_VERSIONS_SERVICE_H_
