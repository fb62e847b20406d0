#include "server/service/unparsable_request.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace otaro::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

class UnparsableRequestInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit UnparsableRequestInterceptor(const char* method) : method_(method ? method : "") {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // The sync server parses a unary or server-streaming request before the
    // handler runs; a failed parse shows here as a received message of null.
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      if (!received_ && methods->GetRecvMessage() == nullptr) unparsable_ = true;
      received_ = true;
    }
    if (unparsable_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("request: not a valid message for ", method_,
                       ": the bytes are not protobuf wire format, or a string field is not "
                       "valid UTF-8")));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;
  bool received_ = false;
  bool unparsable_ = false;
};

class Factory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new UnparsableRequestInterceptor(info->method());
  }
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
UnparsableRequestInterceptorFactory() {
  return std::make_unique<Factory>();
}

}  // namespace otaro::server
