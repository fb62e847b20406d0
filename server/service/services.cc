#include "server/service/services.h"

#include <string>

namespace otaro::server {
namespace {

grpc::Status NotYetAvailable(const char* rpc, const char* needs) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      std::string(rpc) + " is not available in this server build: it needs " +
                          needs + ", which this build does not include yet");
}

// Every handler starts with this: during shutdown, new calls get UNAVAILABLE.
#define OTARO_ENTER_GATE(gate)                            \
  auto otaro_pass = (gate)->TryEnter();                   \
  if (!otaro_pass) return ::otaro::server::CallGate::ShuttingDown()

}  // namespace

// --- Inference -------------------------------------------------------------

grpc::Status InferenceService::Generate(grpc::ServerContext*, const otaro::v1::GenerateRequest*,
                                        otaro::v1::GenerateResponse*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("Generate", "the inference engine");
}

grpc::Status InferenceService::GenerateStream(grpc::ServerContext*,
                                              const otaro::v1::GenerateRequest*,
                                              grpc::ServerWriter<otaro::v1::GenerateChunk>*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("GenerateStream", "the inference engine");
}

grpc::Status InferenceService::Tokenize(grpc::ServerContext*, const otaro::v1::TokenizeRequest*,
                                        otaro::v1::TokenizeResponse*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("Tokenize", "model loading");
}

grpc::Status InferenceService::Detokenize(grpc::ServerContext*,
                                          const otaro::v1::DetokenizeRequest*,
                                          otaro::v1::DetokenizeResponse*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("Detokenize", "model loading");
}

grpc::Status InferenceService::GetModelInfo(grpc::ServerContext*,
                                            const otaro::v1::GetModelInfoRequest*,
                                            otaro::v1::ModelInfo*) {
  OTARO_ENTER_GATE(gate_);
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                      "no model is loaded: set model.path in the config file or start "
                      "otaro_server with --model PATH");
}

// --- Tuning ----------------------------------------------------------------

grpc::Status TuningService::CreateTuningJob(grpc::ServerContext*,
                                            const otaro::v1::CreateTuningJobRequest*,
                                            otaro::v1::TuningJob*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("CreateTuningJob", "the tuning worker");
}

grpc::Status TuningService::GetTuningJob(grpc::ServerContext*,
                                         const otaro::v1::GetTuningJobRequest*,
                                         otaro::v1::TuningJob*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("GetTuningJob", "the tuning worker");
}

grpc::Status TuningService::ListTuningJobs(grpc::ServerContext*,
                                           const otaro::v1::ListTuningJobsRequest*,
                                           otaro::v1::ListTuningJobsResponse*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("ListTuningJobs", "the tuning worker");
}

grpc::Status TuningService::CancelTuningJob(grpc::ServerContext*,
                                            const otaro::v1::CancelTuningJobRequest*,
                                            otaro::v1::TuningJob*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("CancelTuningJob", "the tuning worker");
}

grpc::Status TuningService::StreamTuningJobEvents(
    grpc::ServerContext*, const otaro::v1::StreamTuningJobEventsRequest*,
    grpc::ServerWriter<otaro::v1::TuningJobEvent>*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("StreamTuningJobEvents", "the tuning worker");
}

// --- Model versions --------------------------------------------------------

grpc::Status ModelVersionsService::ListModelVersions(grpc::ServerContext*,
                                                     const otaro::v1::ListModelVersionsRequest*,
                                                     otaro::v1::ListModelVersionsResponse*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("ListModelVersions", "the model version store");
}

grpc::Status ModelVersionsService::PublishModelVersion(
    grpc::ServerContext*, const otaro::v1::PublishModelVersionRequest*, otaro::v1::ModelVersion*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("PublishModelVersion", "the model version store");
}

grpc::Status ModelVersionsService::RollbackModelVersion(
    grpc::ServerContext*, const otaro::v1::RollbackModelVersionRequest*,
    otaro::v1::ModelVersion*) {
  OTARO_ENTER_GATE(gate_);
  return NotYetAvailable("RollbackModelVersion", "the model version store");
}

}  // namespace otaro::server
