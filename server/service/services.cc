#include "server/service/services.h"

#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/service/call_metadata.h"
#include "server/service/grpc_status.h"
#include "server/service/generation_call.h"
#include "common/utf8.h"

namespace otaro::server {
namespace {

// Every handler starts with this: during shutdown, new calls get UNAVAILABLE.
#define OTARO_ENTER_GATE(gate)                            \
  auto otaro_pass = (gate)->TryEnter();                   \
  if (!otaro_pass) return ::otaro::server::CallGate::ShuttingDown()

}  // namespace

// --- Inference -------------------------------------------------------------

namespace {

// A seed for a request that sets none; reported back so the request can be
// replayed. Handlers run on many threads: each draw is independent.
uint64_t RandomSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

// "http" for the OpenAI API's calls (server/openai marks them), else "grpc".
// Only a metrics label: a gRPC client that sets the header mislabels itself.
absl::string_view ProtocolOf(const grpc::ServerContext& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kProtocolMetadataKey);
  return it != metadata.end() && it->second == "http" ? "http" : "grpc";
}

otaro::v1::FinishReason ToApi(engine::FinishReason reason) {
  switch (reason) {
    case engine::FinishReason::kEos: return otaro::v1::FINISH_REASON_EOS;
    case engine::FinishReason::kStopString: return otaro::v1::FINISH_REASON_STOP;
    case engine::FinishReason::kMaxTokens: return otaro::v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kContextFull: return otaro::v1::FINISH_REASON_CONTEXT;
  }
  return otaro::v1::FINISH_REASON_UNSPECIFIED;
}

void FillTimings(const engine::RequestTimings& t, otaro::v1::Timings* out) {
  out->set_queue_seconds(absl::ToDoubleSeconds(t.queue));
  out->set_prefill_seconds(absl::ToDoubleSeconds(t.prefill));
  out->set_time_to_first_token_seconds(absl::ToDoubleSeconds(t.time_to_first_token));
  out->set_decode_seconds(absl::ToDoubleSeconds(t.decode));
  out->set_total_seconds(absl::ToDoubleSeconds(t.total));
}

// The fields the unary response and the last stream chunk share.
template <typename Message>
void FillSummary(const ServedModel& served, const PreparedRequest& prepared,
                 const GenerationOutcome& outcome, Message* out) {
  out->set_finish_reason(ToApi(outcome.result.finish));
  out->mutable_prefill_precision()->set_mantissa_bits(prepared.prefill_bits);
  out->mutable_decode_precision()->set_mantissa_bits(prepared.decode_bits);
  out->set_model_version(served.version);
  out->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(outcome.result.prompt_tokens));
  out->mutable_usage()->set_generated_tokens(static_cast<uint32_t>(outcome.result.tokens.size()));
  FillTimings(outcome.timings, out->mutable_timings());
  out->set_seed(prepared.seed);
}

}  // namespace

grpc::Status InferenceService::Prepare(const otaro::v1::GenerateRequest& request,
                                       std::shared_ptr<const ServedModel>* served,
                                       PreparedRequest* prepared) const {
  if (grpc::Status status = Served(served); !status.ok()) return status;
  auto result = PrepareGenerateRequest(request, *(*served)->model, (*served)->chat_format,
                                       limits_, RandomSeed());
  if (!result.ok()) return ToGrpcStatus(result.status());
  *prepared = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status InferenceService::Finish(const grpc::ServerContext* context,
                                      absl::string_view method, const PreparedRequest& prepared,
                                      const GenerationOutcome* outcome,
                                      const grpc::Status& status) {
  if (metrics_ == nullptr) return status;
  metrics_->RecordRequest(method, ProtocolOf(*context), prepared.prefill_bits,
                          prepared.decode_bits, FromGrpcStatus(status));
  if (outcome != nullptr) {
    metrics_->RecordGeneration(prepared.prefill_bits, prepared.decode_bits,
                               outcome->result.prompt_tokens,
                               static_cast<int64_t>(outcome->result.tokens.size()),
                               outcome->timings, outcome->inter_token_gaps);
  }
  return status;
}

grpc::Status InferenceService::Generate(grpc::ServerContext* context,
                                        const otaro::v1::GenerateRequest* request,
                                        otaro::v1::GenerateResponse* response) {
  OTARO_ENTER_GATE(gate_);
  std::shared_ptr<const ServedModel> served;
  PreparedRequest prepared;
  if (grpc::Status status = Prepare(*request, &served, &prepared); !status.ok()) {
    return Finish(context, "Generate", prepared, nullptr, status);
  }
  GenerationOutcome outcome =
      RunGeneration(*served->scheduler, prepared.request, context, /*emit=*/{});
  if (!outcome.status.ok()) {
    return Finish(context, "Generate", prepared, &outcome, ToGrpcStatus(outcome.status));
  }
  response->set_text(ToValidUtf8(outcome.result.text));
  for (engine::Token id : outcome.result.tokens) response->add_token_ids(static_cast<uint32_t>(id));
  if (request->logprobs()) {
    for (double lp : outcome.result.logprobs) response->add_logprobs(static_cast<float>(lp));
  }
  response->set_reconstruction(served->model->reconstruction == sefp::Reconstruction::kMidpoint
                                   ? otaro::v1::RECONSTRUCTION_MIDPOINT
                                   : otaro::v1::RECONSTRUCTION_TRUNCATE);
  FillSummary(*served, prepared, outcome, response);
  return Finish(context, "Generate", prepared, &outcome, grpc::Status::OK);
}

grpc::Status InferenceService::GenerateStream(grpc::ServerContext* context,
                                              const otaro::v1::GenerateRequest* request,
                                              grpc::ServerWriter<otaro::v1::GenerateChunk>* writer) {
  OTARO_ENTER_GATE(gate_);
  std::shared_ptr<const ServedModel> served;
  PreparedRequest prepared;
  if (grpc::Status status = Prepare(*request, &served, &prepared); !status.ok()) {
    return Finish(context, "GenerateStream", prepared, nullptr, status);
  }
  const bool logprobs = request->logprobs();
  GenerationOutcome outcome = RunGeneration(
      *served->scheduler, prepared.request, context, [&](const GenerationDelta& delta) {
        otaro::v1::GenerateChunk chunk;
        chunk.set_text(ToValidUtf8(delta.text));
        for (engine::Token id : delta.tokens) chunk.add_token_ids(static_cast<uint32_t>(id));
        if (logprobs) {
          for (float lp : delta.logprobs) chunk.add_logprobs(lp);
        }
        return writer->Write(chunk);
      });
  if (!outcome.status.ok()) {
    return Finish(context, "GenerateStream", prepared, &outcome, ToGrpcStatus(outcome.status));
  }
  otaro::v1::GenerateChunk last;
  // Held-back text (a cut-off character: U+FFFD per byte, as Generate answers).
  last.set_text(ToValidUtf8(outcome.final_text));
  FillSummary(*served, prepared, outcome, &last);
  writer->Write(last);
  return Finish(context, "GenerateStream", prepared, &outcome, grpc::Status::OK);
}

grpc::Status InferenceService::Served(std::shared_ptr<const ServedModel>* served) const {
  *served = models_->current();
  if (*served == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "no model is loaded: set model.path in the config file or start "
                        "otaro_server with --model PATH");
  }
  return grpc::Status::OK;
}

grpc::Status InferenceService::ServedWithTokenizer(
    std::shared_ptr<const ServedModel>* model) const {
  if (grpc::Status status = Served(model); !status.ok()) return status;
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
  if (grpc::Status status = ServedWithTokenizer(&served); !status.ok()) return status;
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
  if (grpc::Status status = ServedWithTokenizer(&served); !status.ok()) return status;
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
  std::shared_ptr<const ServedModel> served;
  if (grpc::Status status = Served(&served); !status.ok()) return status;
  *response = served->Info();
  return grpc::Status::OK;
}

}  // namespace otaro::server
