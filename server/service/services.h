// The gRPC services of API v1 (proto/otaro/v1). They adapt the engine and the
// trainer to the wire: validation, status codes, and the call gate that turns
// calls away during shutdown. No model logic lives here.
//
// RPCs whose backing component has not landed yet answer UNIMPLEMENTED with a
// message saying so, after the gate (so a draining server still says
// UNAVAILABLE, as for every other call).
#ifndef OTARO_SERVER_SERVICE_SERVICES_H_
#define OTARO_SERVER_SERVICE_SERVICES_H_

#include "otaro/v1/inference.grpc.pb.h"
#include "otaro/v1/tuning.grpc.pb.h"
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
  grpc::Status Finish(absl::string_view method, const PreparedRequest& prepared,
                      const GenerationOutcome* outcome, const grpc::Status& status);

  CallGate* gate_;
  const ModelHost* models_;
  const GenerateLimits limits_;
  GenerationMetrics* metrics_;
};

class TuningService final : public otaro::v1::Tuning::Service {
 public:
  explicit TuningService(CallGate* gate) : gate_(gate) {}

  grpc::Status CreateTuningJob(grpc::ServerContext* context,
                               const otaro::v1::CreateTuningJobRequest* request,
                               otaro::v1::TuningJob* response) override;
  grpc::Status GetTuningJob(grpc::ServerContext* context,
                            const otaro::v1::GetTuningJobRequest* request,
                            otaro::v1::TuningJob* response) override;
  grpc::Status ListTuningJobs(grpc::ServerContext* context,
                              const otaro::v1::ListTuningJobsRequest* request,
                              otaro::v1::ListTuningJobsResponse* response) override;
  grpc::Status CancelTuningJob(grpc::ServerContext* context,
                               const otaro::v1::CancelTuningJobRequest* request,
                               otaro::v1::TuningJob* response) override;
  grpc::Status StreamTuningJobEvents(
      grpc::ServerContext* context, const otaro::v1::StreamTuningJobEventsRequest* request,
      grpc::ServerWriter<otaro::v1::TuningJobEvent>* writer) override;

 private:
  CallGate* gate_;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_SERVICES_H_
