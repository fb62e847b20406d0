#include "server/service/services.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"

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

grpc::Status InferenceService::CurrentModel(std::shared_ptr<const ServedModel>* model) const {
  *model = models_->current();
  if (*model == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "no model is loaded: set model.path in the config file or start "
                        "otaro_server with --model PATH");
  }
  if ((*model)->model->tokenizer == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the served model has no tokenizer: only token-id prompts work");
  }
  return grpc::Status::OK;
}

grpc::Status InferenceService::Tokenize(grpc::ServerContext*,
                                        const otaro::v1::TokenizeRequest* request,
                                        otaro::v1::TokenizeResponse* response) {
  OTARO_ENTER_GATE(gate_);
  std::shared_ptr<const ServedModel> served;
  if (grpc::Status status = CurrentModel(&served); !status.ok()) return status;
  const auto& tokenizer = *served->model->tokenizer;
  engine::tokenizer::EncodeOptions options;
  options.add_special = request->has_add_special_tokens() ? request->add_special_tokens()
                                                          : tokenizer.add_bos();
  for (engine::tokenizer::TokenId id : tokenizer.Encode(request->text(), options)) {
    response->add_token_ids(static_cast<uint32_t>(id));
    // Pieces of raw-byte vocabularies (tiktoken) need not be UTF-8; protobuf
    // strings must be.
    response->add_pieces(ToValidUtf8(tokenizer.TokenPiece(id).value_or("")));
  }
  return grpc::Status::OK;
}

grpc::Status InferenceService::Detokenize(grpc::ServerContext*,
                                          const otaro::v1::DetokenizeRequest* request,
                                          otaro::v1::DetokenizeResponse* response) {
  OTARO_ENTER_GATE(gate_);
  std::shared_ptr<const ServedModel> served;
  if (grpc::Status status = CurrentModel(&served); !status.ok()) return status;
  const auto& tokenizer = *served->model->tokenizer;
  std::vector<engine::tokenizer::TokenId> ids;
  ids.reserve(request->token_ids_size());
  for (int i = 0; i < request->token_ids_size(); ++i) {
    uint32_t id = request->token_ids(i);
    if (id >= static_cast<uint32_t>(tokenizer.vocab_size())) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("token_ids[", i, "] = ", id,
                                       " is outside the vocabulary (size ",
                                       tokenizer.vocab_size(), ")"));
    }
    ids.push_back(static_cast<engine::tokenizer::TokenId>(id));
  }
  engine::tokenizer::DecodeOptions options;
  options.render_special = !request->skip_special_tokens();
  // A cut-off multi-byte character becomes U+FFFD: the reply must be UTF-8.
  response->set_text(ToValidUtf8(tokenizer.Decode(ids, options)));
  return grpc::Status::OK;
}

grpc::Status InferenceService::GetModelInfo(grpc::ServerContext*,
                                            const otaro::v1::GetModelInfoRequest*,
                                            otaro::v1::ModelInfo* response) {
  OTARO_ENTER_GATE(gate_);
  std::shared_ptr<const ServedModel> served = models_->current();
  if (served == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "no model is loaded: set model.path in the config file or start "
                        "otaro_server with --model PATH");
  }
  *response = served->Info();
  return grpc::Status::OK;
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
