#include "server/service/model_versions_service.h"

#include "server/service/grpc_status.h"

namespace otaro::server {

// Each handler first passes the call gate: during shutdown, new calls get
// UNAVAILABLE, as for every other service.

grpc::Status ModelVersionsService::ListModelVersions(
    grpc::ServerContext*, const otaro::v1::ListModelVersionsRequest*,
    otaro::v1::ListModelVersionsResponse* response) {
  auto pass = gate_->TryEnter();
  if (!pass) return CallGate::ShuttingDown();
  auto versions = versions_->List();
  if (!versions.ok()) return ToGrpcStatus(versions.status());
  for (otaro::v1::ModelVersion& version : *versions) *response->add_versions() = std::move(version);
  return grpc::Status::OK;
}

grpc::Status ModelVersionsService::PublishModelVersion(
    grpc::ServerContext*, const otaro::v1::PublishModelVersionRequest* request,
    otaro::v1::ModelVersion* response) {
  auto pass = gate_->TryEnter();
  if (!pass) return CallGate::ShuttingDown();
  auto published = versions_->Publish(request->version());
  if (!published.ok()) return ToGrpcStatus(published.status());
  *response = *std::move(published);
  return grpc::Status::OK;
}

grpc::Status ModelVersionsService::RollbackModelVersion(
    grpc::ServerContext*, const otaro::v1::RollbackModelVersionRequest*,
    otaro::v1::ModelVersion* response) {
  auto pass = gate_->TryEnter();
  if (!pass) return CallGate::ShuttingDown();
  auto restored = versions_->Rollback();
  if (!restored.ok()) return ToGrpcStatus(restored.status());
  *response = *std::move(restored);
  return grpc::Status::OK;
}

}  // namespace otaro::server
