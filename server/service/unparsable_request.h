// A request whose bytes do not parse as the method's message (not protobuf
// wire format, or a proto3 `string` field that is not valid UTF-8: protobuf
// refuses those at parse time, so no handler ever sees them) gets
// INVALID_ARGUMENT naming the method's request, where gRPC would answer
// INTERNAL with an empty message. Installed on the server builder for every
// service (OtaroServer).
#ifndef OTARO_SERVER_SERVICE_UNPARSABLE_REQUEST_H_
#define OTARO_SERVER_SERVICE_UNPARSABLE_REQUEST_H_

#include <memory>

#include "grpcpp/support/server_interceptor.h"

namespace otaro::server {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
UnparsableRequestInterceptorFactory();

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_UNPARSABLE_REQUEST_H_
