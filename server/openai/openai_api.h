// The OpenAI HTTP API as JSON <-> otaro.v1 messages: pure translation, no I/O.
// openai_http_server.h puts it on the wire and calls the Inference service over
// an in-process gRPC channel, so validation, chat templates, scheduling,
// metrics and auth stay the gRPC service's own (one implementation; this is
// the grpc-gateway pattern).
//
// What is accepted (https://platform.openai.com/docs/api-reference):
//   POST /v1/completions        prompt (a string, one-element array, or token
//                               ids), max_tokens (default 16, as OpenAI)
//   POST /v1/chat/completions   messages (role + text content), max_tokens or
//                               max_completion_tokens (default: the server's)
//   both: temperature (default 1), top_p, seed, stop, stream,
//         stream_options.include_usage, logprobs (the chosen token's only),
//         n = 1, and otaro's own `precision` / `prefill_precision` ("E5M3" or
//         3) at the top level, as the official client's extra_body sends them.
// What the engine cannot do is refused with 400 naming the parameter (n > 1,
// top_logprobs > 0, penalties, logit_bias, tools, echo, suffix, ...), never
// silently ignored. Unknown keys are ignored, as most OpenAI-compatible
// servers do, so newer clients keep working.
#ifndef OTARO_SERVER_OPENAI_OPENAI_API_H_
#define OTARO_SERVER_OPENAI_OPENAI_API_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "otaro/v1/inference.pb.h"

namespace otaro::server::openai {

enum class Endpoint { kCompletions, kChatCompletions };

// An error as OpenAI sends it: {"error": {"message", "type", "param", "code"}}
// with the HTTP status beside it.
struct ApiError {
  int http_status = 500;
  std::string message;
  std::string type;   // invalid_request_error, authentication_error, ...
  std::string param;  // the request field at fault; empty when none
  std::string code;   // e.g. "model_not_found"; empty when none

  nlohmann::json ToJson() const;
};

// `value` as JSON text, any invalid UTF-8 (a URL path, a token's bytes) as
// U+FFFD: nlohmann's plain dump() throws on it, which would end the process.
std::string JsonText(const nlohmann::json& value);

// The status payload key under which parse errors carry their `param`.
inline constexpr char kParamPayload[] = "otaro.openai/param";

// A parsed request: the otaro.v1 request plus what only the HTTP side needs.
struct CompletionRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  otaro::v1::GenerateRequest generate;
  std::string model;  // as the client named it (checked against the served name)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;
};

// Parses a request body. Errors are INVALID_ARGUMENT with a message naming the
// field and the field in the kParamPayload payload.
absl::StatusOr<CompletionRequest> ParseCompletionRequest(Endpoint endpoint,
                                                         absl::string_view body);

// "E5M3", "e5m3", "3" or 3 -> 3. Range checks (2..8, resident planes) are the
// service's; this only reads the notation.
absl::StatusOr<uint32_t> ParsePrecision(const nlohmann::json& value, absl::string_view field);

// The error for a failed gRPC call: the status code picks the HTTP status and
// type (INVALID_ARGUMENT 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
// NOT_FOUND 404, RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, DEADLINE_EXCEEDED
// 504, ...), and the service's "field: problem" message names the OpenAI
// parameter.
ApiError ErrorFromStatus(const absl::Status& status, Endpoint endpoint);

// What identifies one response: its id, creation time and the served model's
// name.
struct ResponseHeader {
  std::string id;  // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;
  std::string model;
};

// A fresh response id for `endpoint` (random, 24 hex digits after the prefix).
std::string NewResponseId(Endpoint endpoint);

// The text of each generated token, for `logprobs` (the caller detokenizes).
using TokenTexts = std::vector<std::string>;

// "stop" for EOS and stop strings, "length" for max_tokens and a full context.
const char* FinishReasonName(otaro::v1::FinishReason reason);
// "E5M4" for 4.
std::string PrecisionName(uint32_t mantissa_bits);

// The non-streaming response.
nlohmann::json CompletionResponse(const CompletionRequest& request, const ResponseHeader& header,
                                  const otaro::v1::GenerateResponse& response,
                                  const TokenTexts& token_texts);

// One streamed chunk for a GenerateStream chunk carrying text or tokens. The
// chat stream's first chunk (role only) comes from FirstChatChunk.
nlohmann::json StreamChunk(const CompletionRequest& request, const ResponseHeader& header,
                           const otaro::v1::GenerateChunk& chunk, const TokenTexts& token_texts);
nlohmann::json FirstChatChunk(const ResponseHeader& header);
// The chunk with finish_reason (and the otaro object), after the last text.
nlohmann::json FinalChunk(const CompletionRequest& request, const ResponseHeader& header,
                          const otaro::v1::GenerateChunk& last);
// With stream_options.include_usage: the extra chunk with empty choices.
nlohmann::json UsageChunk(const CompletionRequest& request, const ResponseHeader& header,
                          const otaro::v1::GenerateChunk& last);

}  // namespace otaro::server::openai

#endif  // OTARO_SERVER_OPENAI_OPENAI_API_H_
