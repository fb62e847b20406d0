// otaro.v1.Inference: adapts the engine to the wire (validation, status codes,
// and the call gate that turns calls away during shutdown). No model logic
// lives here. The other services sit beside what they serve:
// model_versions_service.h and server/tuning/tuning_service.h.
#ifndef OTARO_SERVER_SERVICE_SERVICES_H_
#define OTARO_SERVER_SERVICE_SERVICES_H_

#include "otaro/v1/inference.grpc.pb.h"
#include "server/model/served_model.h"
#include "server/service/call_gate.h"
#include "server/service/generate_request.h"
#include "server/service/generation_call.h"
#include "server/service/generation_metrics.h"
#include "server/service/model_versions_service.h"

namespace otaro::server {

class InferenceService final : public otaro::v1::Inference::Service {
 public:
  // `metrics` may be null (no recording).
  InferenceService(CallGate* gate, const ModelHost* models, GenerateLimits limits,
                   GenerationMetrics* metrics)
      : gate_(gate), models_(models), limits_(limits), metrics_(metrics) {}

  grpc::Status Generate(grpc::ServerContext* context, const otaro::v1::GenerateRequest* request,
                        otaro::v1::GenerateResponse* response) override;
  grpc::Status GenerateStream(grpc::ServerContext* context,
                              const otaro::v1::GenerateRequest* request,
                              grpc::ServerWriter<otaro::v1::GenerateChunk>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const otaro::v1::TokenizeRequest* request,
                        otaro::v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context,
                          const otaro::v1::DetokenizeRequest* request,
                          otaro::v1::DetokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context,
                            const otaro::v1::GetModelInfoRequest* request,
                            otaro::v1::ModelInfo* response) override;

 private:
  // The served model, or FAILED_PRECONDITION when none is loaded.
  grpc::Status Served(std::shared_ptr<const ServedModel>* served) const;
  // The same, and FAILED_PRECONDITION when it has no tokenizer.
  grpc::Status ServedWithTokenizer(std::shared_ptr<const ServedModel>* model) const;
  // The served model and the validated request, or the error for the caller.
  grpc::Status Prepare(const otaro::v1::GenerateRequest& request,
                       std::shared_ptr<const ServedModel>* served,
                       PreparedRequest* prepared) const;
  // Records a finished call in the metrics and returns its status.
  grpc::Status Finish(const grpc::ServerContext* context, absl::string_view method,
                      const PreparedRequest& prepared,
                      const GenerationOutcome* outcome, const grpc::Status& status);

  CallGate* gate_;
  const ModelHost* models_;
  const GenerateLimits limits_;
  GenerationMetrics* metrics_;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_SERVICES_H_
