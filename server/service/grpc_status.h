// absl::Status <-> grpc::Status. The canonical codes are numerically identical
// (both follow google.rpc.Code), so the mapping is 1:1 and loses nothing.
#ifndef OTARO_SERVER_SERVICE_GRPC_STATUS_H_
#define OTARO_SERVER_SERVICE_GRPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace otaro::server {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_GRPC_STATUS_H_
