#include "server/openai/openai_http_server.h"

#include <civetweb.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "server/service/call_metadata.h"
#include "server/service/grpc_status.h"

namespace otaro::server::openai {
namespace {

using nlohmann::json;

constexpr char kJson[] = "application/json";

constexpr char kGenerateRpc[] = "/otaro.v1.Inference/Generate";
constexpr char kGenerateStreamRpc[] = "/otaro.v1.Inference/GenerateStream";
constexpr char kModelInfoRpc[] = "/otaro.v1.Inference/GetModelInfo";

ApiError Error(int http_status, std::string message, const char* type, std::string param = "",
               std::string code = "") {
  ApiError e;
  e.http_status = http_status;
  e.message = std::move(message);
  e.type = type;
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

int SendJson(mg_connection* conn, int status, const json& body) {
  http::SendResponse(conn, status, kJson, JsonText(body));
  return status;
}

// One server-sent event; false when the client is gone.
bool SendEvent(mg_connection* conn, absl::string_view data) {
  const std::string event = absl::StrCat("data: ", data, "\n\n");
  return mg_send_chunk(conn, event.data(), static_cast<unsigned>(event.size())) > 0;
}

}  // namespace

int SendError(mg_connection* conn, const ApiError& error) {
  const std::string body = JsonText(error.ToJson());
  if (error.http_status == 429 || error.http_status == 503) {
    http::SendResponse(conn, error.http_status, kJson, body, {{"Retry-After", "1"}});
  } else {
    http::SendResponse(conn, error.http_status, kJson, body);
  }
  return error.http_status;
}

OpenAiHttpServer::OpenAiHttpServer(std::shared_ptr<grpc::Channel> inference,
                                   OpenAiHttpServerOptions options)
    : options_(std::move(options)),
      channel_(std::move(inference)),
      stub_(otaro::v1::Inference::NewStub(channel_)),
      started_at_(absl::ToUnixSeconds(absl::Now())) {}

absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(
    std::shared_ptr<grpc::Channel> inference, OpenAiHttpServerOptions options) {
  if (inference == nullptr) return absl::InvalidArgumentError("OpenAI API: no inference channel");
  if (options.max_body_bytes < 1) {
    return absl::InvalidArgumentError("OpenAI API: max_body_bytes must be positive");
  }
  std::unique_ptr<OpenAiHttpServer> server(
      new OpenAiHttpServer(std::move(inference), std::move(options)));
  http::HttpListenerOptions listen;
  listen.name = "OpenAI API";
  listen.listen_address = server->options_.listen_address;
  listen.num_threads = server->options_.num_threads;
  // A stream writes at least every token; a non-streamed answer writes once at
  // the end, so the socket limit must cover a whole generation.
  listen.request_timeout_ms = 600000;
  listen.handler_on_own_thread = true;  // gRPC calls and JSON need a real stack
  listen.tls = server->options_.tls;
  OpenAiHttpServer* self = server.get();
  auto listener = http::HttpListener::Start(std::move(listen),
                                            [self](mg_connection* c) { return self->Handle(c); });
  if (!listener.ok()) return listener.status();
  server->listener_ = *std::move(listener);
  return server;
}

OpenAiHttpServer::~OpenAiHttpServer() { Stop(); }

void OpenAiHttpServer::Stop() {
  if (listener_) listener_->Stop();
}

absl::Status OpenAiHttpServer::Authorize(absl::string_view rpc,
                                         const std::string& authorization) const {
  if (options_.access_control == nullptr) return absl::OkStatus();
  std::vector<absl::string_view> values;
  if (!authorization.empty()) values.push_back(authorization);
  return options_.access_control->Check(rpc, values).status;
}

void OpenAiHttpServer::PrepareContext(grpc::ClientContext* context,
                                      const std::string& authorization) const {
  context->AddMetadata(kProtocolMetadataKey, "http");
  if (!authorization.empty()) context->AddMetadata("authorization", authorization);
}

int OpenAiHttpServer::Handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  const absl::string_view path = info->local_uri != nullptr ? info->local_uri : "";
  const absl::string_view method = info->request_method != nullptr ? info->request_method : "";
  const char* header = mg_get_header(conn, "Authorization");
  const std::string authorization = header != nullptr ? header : "";

  auto wrong_method = [&](const char* allowed) {
    ApiError e = Error(405, absl::StrCat(method, " ", path, " is not allowed; use ", allowed),
                       "invalid_request_error");
    http::SendResponse(conn, 405, kJson, JsonText(e.ToJson()), {{"Allow", allowed}});
    return 405;
  };
  if (path == "/v1/models" || absl::StartsWith(path, "/v1/models/")) {
    if (method != "GET") return wrong_method("GET");
    absl::string_view id = path.size() > 11 ? path.substr(11) : "";
    return ListModels(conn, authorization, id);
  }
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (method != "POST") return wrong_method("POST");
    return Complete(conn, authorization,
                    path == "/v1/completions" ? Endpoint::kCompletions
                                              : Endpoint::kChatCompletions);
  }
  return SendError(conn, Error(404,
                               absl::StrCat("no route ", path,
                                            " (this server has /v1/models, /v1/completions and "
                                            "/v1/chat/completions)"),
                               "invalid_request_error", "", "not_found"));
}

int OpenAiHttpServer::ListModels(mg_connection* conn, const std::string& authorization,
                                 absl::string_view model_id) {
  if (absl::Status s = Authorize(kModelInfoRpc, authorization); !s.ok()) {
    return SendError(conn, ErrorFromStatus(s, Endpoint::kCompletions));
  }
  grpc::ClientContext context;
  PrepareContext(&context, authorization);
  otaro::v1::ModelInfo info;
  grpc::Status status = stub_->GetModelInfo(&context, otaro::v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return SendError(conn, ErrorFromStatus(FromGrpcStatus(status), {}));
  json precisions = json::array();
  for (uint32_t m : info.supported_mantissa_bits()) precisions.push_back(PrecisionName(m));
  json model = {{"id", options_.model_name},
                {"object", "model"},
                {"created", started_at_},
                {"owned_by", "otaro"},
                {"otaro",
                 {{"model_version", info.model_version()},
                  {"precisions", precisions},
                  {"default_precision", PrecisionName(info.default_mantissa_bits())},
                  {"context_length", info.context_length()},
                  {"architecture", info.architecture()}}}};
  if (!model_id.empty()) {
    if (model_id != options_.model_name) {
      return SendError(conn, ModelNotFound(model_id));
    }
    return SendJson(conn, 200, model);
  }
  return SendJson(conn, 200, {{"object", "list"}, {"data", json::array({model})}});
}

ApiError OpenAiHttpServer::ModelNotFound(absl::string_view name) const {
  return Error(404,
               absl::StrCat("the model '", name, "' does not exist; this server serves '",
                            options_.model_name, "'"),
               "invalid_request_error", "model", "model_not_found");
}

TokenTexts OpenAiHttpServer::TokenTextsOf(const google::protobuf::RepeatedField<uint32_t>& ids,
                                          const std::string& authorization) {
  TokenTexts texts;
  texts.reserve(ids.size());
  for (uint32_t id : ids) {
    grpc::ClientContext context;
    PrepareContext(&context, authorization);
    otaro::v1::DetokenizeRequest request;
    request.add_token_ids(id);
    otaro::v1::DetokenizeResponse response;
    // A failure leaves the token's text empty: logprobs are a courtesy and
    // must not fail a finished generation.
    if (stub_->Detokenize(&context, request, &response).ok()) {
      texts.push_back(response.text());
    } else {
      texts.emplace_back();
    }
  }
  return texts;
}

int OpenAiHttpServer::Complete(mg_connection* conn, const std::string& authorization,
                               Endpoint endpoint) {
  // Who asks comes before what they ask: an unknown caller learns nothing
  // about the request (Generate and GenerateStream need the same role).
  if (absl::Status s = Authorize(kGenerateRpc, authorization); !s.ok()) {
    return SendError(conn, ErrorFromStatus(s, endpoint));
  }
  absl::StatusOr<std::string> body = http::ReadRequestBody(conn, options_.max_body_bytes);
  if (!body.ok()) {
    const bool too_large = absl::IsResourceExhausted(body.status());
    return SendError(conn, Error(too_large ? 413 : 400,
                                 absl::StrCat(body.status().message(),
                                              too_large ? " (server.max_receive_message_bytes)" : ""),
                                 "invalid_request_error"));
  }
  absl::StatusOr<CompletionRequest> request = ParseCompletionRequest(endpoint, *body);
  if (!request.ok()) return SendError(conn, ErrorFromStatus(request.status(), endpoint));
  if (request->stream) {
    if (absl::Status s = Authorize(kGenerateStreamRpc, authorization); !s.ok()) {
      return SendError(conn, ErrorFromStatus(s, endpoint));
    }
  }
  if (!request->model.empty() && request->model != options_.model_name) {
    return SendError(conn, ModelNotFound(request->model));
  }
  ResponseHeader header;
  header.id = NewResponseId(endpoint);
  header.created = absl::ToUnixSeconds(absl::Now());
  header.model = options_.model_name;

  grpc::ClientContext context;
  PrepareContext(&context, authorization);
  if (request->stream) return Stream(conn, &context, *request, header, authorization);

  otaro::v1::GenerateResponse response;
  grpc::Status status = stub_->Generate(&context, request->generate, &response);
  if (!status.ok()) return SendError(conn, ErrorFromStatus(FromGrpcStatus(status), endpoint));
  TokenTexts texts;
  if (request->logprobs) texts = TokenTextsOf(response.token_ids(), authorization);
  return SendJson(conn, 200, CompletionResponse(*request, header, response, texts));
}

int OpenAiHttpServer::Stream(mg_connection* conn, grpc::ClientContext* context,
                             const CompletionRequest& request, const ResponseHeader& header,
                             const std::string& authorization) {
  std::unique_ptr<grpc::ClientReader<otaro::v1::GenerateChunk>> reader =
      stub_->GenerateStream(context, request.generate);
  otaro::v1::GenerateChunk chunk;
  // The status line waits for the first chunk: a request the service refuses
  // (bad precision, full queue, draining) gets its real HTTP status, not a 200
  // with an error inside the stream.
  if (!reader->Read(&chunk)) {
    grpc::Status status = reader->Finish();
    if (status.ok()) status = grpc::Status(grpc::StatusCode::INTERNAL, "the stream ended empty");
    return SendError(conn, ErrorFromStatus(FromGrpcStatus(status), request.endpoint));
  }
  mg_response_header_start(conn, 200);
  mg_response_header_add(conn, "Content-Type", "text/event-stream", -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  mg_response_header_add(conn, "Transfer-Encoding", "chunked", -1);
  mg_response_header_send(conn);

  bool connected = request.endpoint != Endpoint::kChatCompletions ||
                   SendEvent(conn, JsonText(FirstChatChunk(header)));
  do {
    if (!connected) break;
    if (chunk.finish_reason() != otaro::v1::FINISH_REASON_UNSPECIFIED) {
      // The summary: held-back text, finish reason, usage.
      connected = SendEvent(conn, JsonText(FinalChunk(request, header, chunk)));
      if (connected && request.include_usage) {
        connected = SendEvent(conn, JsonText(UsageChunk(request, header, chunk)));
      }
      continue;
    }
    TokenTexts texts;
    if (request.logprobs) texts = TokenTextsOf(chunk.token_ids(), authorization);
    connected = SendEvent(conn, JsonText(StreamChunk(request, header, chunk, texts)));
  } while (reader->Read(&chunk));
  if (!connected) {
    // The client is gone: cancel the call (its KV blocks are freed at the next
    // step boundary) and let the stream end.
    context->TryCancel();
    while (reader->Read(&chunk)) {
    }
    reader->Finish();
    return 499;
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    // Headers are out: the error goes in the stream, as OpenAI's does.
    SendEvent(conn, JsonText(ErrorFromStatus(FromGrpcStatus(status), request.endpoint).ToJson()));
  } else {
    SendEvent(conn, "[DONE]");
  }
  mg_send_chunk(conn, "", 0);  // the chunked body's end
  return 200;
}

}  // namespace otaro::server::openai
