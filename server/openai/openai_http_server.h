// The OpenAI-compatible HTTP API (server.http_address):
//   GET  /v1/models, /v1/models/{id}
//   POST /v1/completions, /v1/chat/completions   (stream: server-sent events)
// A thin adapter: each request is parsed by openai_api.h into an otaro.v1
// GenerateRequest and sent to the Inference service over the server's
// in-process gRPC channel, so validation, chat templates, the scheduler, the
// call gate (503 while draining) and the request metrics (protocol="http") are
// the gRPC service's. Tokens and roles are the gRPC listener's (`Authorization:
// Bearer`, checked by the same AccessControl against the RPC the request
// becomes), and so is TLS (tls.*: HTTPS, client certificates when a CA is
// set). A client that disconnects mid-stream cancels its call, which frees its
// KV blocks as a gRPC cancel does. Tuning stays on gRPC.
#ifndef OTARO_SERVER_OPENAI_OPENAI_HTTP_SERVER_H_
#define OTARO_SERVER_OPENAI_OPENAI_HTTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "server/auth/access_control.h"
#include "server/http/http_listener.h"
#include "server/openai/openai_api.h"

namespace otaro::server::openai {

struct OpenAiHttpServerOptions {
  // "host:port"; port 0 picks a free one.
  std::string listen_address = "127.0.0.1:8000";
  // Each request in progress (a stream included) holds one worker thread.
  int num_threads = 32;
  // Larger bodies are refused with 413 before they are read.
  int64_t max_body_bytes = 4 << 20;
  // The id of the one model, in /v1/models and in every response; a request
  // naming another model gets 404 model_not_found (an absent `model` is fine).
  std::string model_name = "otaro";
  // Null: no access control (the server then listens on loopback only).
  std::shared_ptr<const auth::AccessControl> access_control;
  // Set: HTTPS with these files (the gRPC listener's tls.*), client
  // certificates required when client_ca_file is set.
  std::optional<http::TlsFiles> tls;
};

class OpenAiHttpServer {
 public:
  // `inference`: a channel to the otaro.v1.Inference service (the server's
  // in-process channel). Errors as http::HttpListener::Start.
  static absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> Start(
      std::shared_ptr<grpc::Channel> inference, OpenAiHttpServerOptions options);

  ~OpenAiHttpServer();
  OpenAiHttpServer(const OpenAiHttpServer&) = delete;
  OpenAiHttpServer& operator=(const OpenAiHttpServer&) = delete;

  // Stops listening and waits for the requests in progress (their gRPC calls
  // end when the gRPC server shuts down). Idempotent.
  void Stop();

  int port() const { return listener_->port(); }

 private:
  OpenAiHttpServer(std::shared_ptr<grpc::Channel> inference, OpenAiHttpServerOptions options);

  int Handle(mg_connection* conn);
  int ListModels(mg_connection* conn, const std::string& authorization,
                 absl::string_view model_id);
  int Complete(mg_connection* conn, const std::string& authorization, Endpoint endpoint);
  int Stream(mg_connection* conn, grpc::ClientContext* context, const CompletionRequest& request,
             const ResponseHeader& header, const std::string& authorization);
  // The text of each token, for logprobs.
  TokenTexts TokenTextsOf(const google::protobuf::RepeatedField<uint32_t>& ids,
                          const std::string& authorization);
  // OK, or the error to answer with when the caller may not call `rpc`.
  absl::Status Authorize(absl::string_view rpc, const std::string& authorization) const;
  void PrepareContext(grpc::ClientContext* context, const std::string& authorization) const;
  // 404 model_not_found for a request naming another model than the served one.
  ApiError ModelNotFound(absl::string_view name) const;

  const OpenAiHttpServerOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<otaro::v1::Inference::Stub> stub_;
  const int64_t started_at_;  // unix seconds: the model's `created`
  std::unique_ptr<http::HttpListener> listener_;
};

// Sends `error` as OpenAI's error JSON with its HTTP status (and Retry-After on
// 429 and 503). Returns the status.
int SendError(mg_connection* conn, const ApiError& error);

}  // namespace otaro::server::openai

#endif  // OTARO_SERVER_OPENAI_OPENAI_HTTP_SERVER_H_
