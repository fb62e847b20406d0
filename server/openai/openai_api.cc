#include "server/openai/openai_api.h"

#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace otaro::server::openai {
namespace {

using nlohmann::json;

absl::Status Invalid(absl::string_view param, absl::string_view problem) {
  absl::Status status = absl::InvalidArgumentError(absl::StrCat(param, ": ", problem));
  status.SetPayload(kParamPayload, absl::Cord(param));
  return status;
}

const char* TypeName(const json& value) { return value.type_name(); }

bool Present(const json& body, const char* key) {
  auto it = body.find(key);
  return it != body.end() && !it->is_null();
}

absl::StatusOr<bool> Bool(const json& body, const char* key, bool fallback) {
  if (!Present(body, key)) return fallback;
  const json& v = body.at(key);
  if (!v.is_boolean()) return Invalid(key, absl::StrCat("must be a boolean, got ", TypeName(v)));
  return v.get<bool>();
}

absl::StatusOr<double> Number(const json& body, const char* key, double fallback, double lo,
                              double hi) {
  if (!Present(body, key)) return fallback;
  const json& v = body.at(key);
  if (!v.is_number()) return Invalid(key, absl::StrCat("must be a number, got ", TypeName(v)));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    return Invalid(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", x));
  }
  return x;
}

// An integer in [lo, hi], or `fallback` when absent or null.
absl::StatusOr<int64_t> Integer(const json& body, const char* key, int64_t fallback, int64_t lo,
                                int64_t hi) {
  if (!Present(body, key)) return fallback;
  const json& v = body.at(key);
  if (!v.is_number_integer()) {
    return Invalid(key, absl::StrCat("must be an integer, got ", TypeName(v)));
  }
  // JSON's non-negative integers parse as unsigned and may exceed int64.
  const bool in_range = v.is_number_unsigned()
                            ? v.get<uint64_t>() <= static_cast<uint64_t>(hi) &&
                                  (lo <= 0 || v.get<uint64_t>() >= static_cast<uint64_t>(lo))
                            : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  if (!in_range) {
    return Invalid(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", JsonText(v)));
  }
  return v.get<int64_t>();
}

// Parameters the engine has no equivalent of: refused unless they hold their
// no-op value, so a client never believes it got what it asked for.
absl::Status RefuseUnsupported(const json& body, Endpoint endpoint) {
  struct NoOp {
    const char* key;
    json neutral;  // the value that asks for nothing
    const char* why;
  };
  const NoOp no_ops[] = {
      {"n", 1, "only n = 1 is supported: send one request per completion"},
      {"best_of", 1, "only best_of = 1 is supported"},
      {"presence_penalty", 0, "penalties are not supported by the engine"},
      {"frequency_penalty", 0, "penalties are not supported by the engine"},
      {"echo", false, "echo is not supported"},
      {"top_logprobs", 0,
       "the engine reports the chosen token's logprob only (top_logprobs must be 0)"},
  };
  for (const NoOp& op : no_ops) {
    if (!Present(body, op.key)) continue;
    const json& v = body.at(op.key);
    // 1 and 1.0, 0 and 0.0 are the same request.
    const bool neutral = v.is_number() && op.neutral.is_number()
                             ? v.get<double>() == op.neutral.get<double>()
                             : v == op.neutral;
    if (!neutral) return Invalid(op.key, op.why);
  }
  for (const char* key : {"suffix", "tools", "functions", "tool_choice", "function_call"}) {
    if (Present(body, key) && !(body.at(key).is_array() && body.at(key).empty()) &&
        !(body.at(key).is_string() && body.at(key) == "none")) {
      return Invalid(key, "tools and function calling are not supported");
    }
  }
  if (Present(body, "logit_bias") && !body.at("logit_bias").empty()) {
    return Invalid("logit_bias", "logit_bias is not supported by the engine");
  }
  if (Present(body, "response_format")) {
    const json& format = body.at("response_format");
    if (!format.is_object() || format.value("type", "") != "text") {
      return Invalid("response_format", "only {\"type\": \"text\"} is supported");
    }
  }
  if (endpoint == Endpoint::kCompletions && Present(body, "logprobs")) {
    const json& v = body.at("logprobs");
    if (!v.is_number_integer() || v.get<int64_t>() != 0) {
      return Invalid("logprobs",
                     "the engine reports the chosen token's logprob only: use logprobs = 0");
    }
  }
  return absl::OkStatus();
}

absl::Status ParsePrompt(const json& body, otaro::v1::GenerateRequest* out) {
  if (!body.contains("prompt")) return Invalid("prompt", "is required");
  const json& prompt = body.at("prompt");
  if (prompt.is_string()) {
    out->set_text(prompt.get<std::string>());
    return absl::OkStatus();
  }
  if (prompt.is_array() && !prompt.empty()) {
    if (prompt.size() == 1 && prompt[0].is_string()) {
      out->set_text(prompt[0].get<std::string>());
      return absl::OkStatus();
    }
    const json& ids = prompt.size() == 1 && prompt[0].is_array() ? prompt[0] : prompt;
    if (ids.is_array() && !ids.empty() &&
        std::all_of(ids.begin(), ids.end(), [](const json& id) {
          return id.is_number_unsigned() ||
                 (id.is_number_integer() && id.get<int64_t>() >= 0);
        })) {
      for (const json& id : ids) {
        if (id.get<uint64_t>() > std::numeric_limits<uint32_t>::max()) {
          return Invalid("prompt", "token ids must be below 2^32");
        }
        out->mutable_token_ids()->add_ids(id.get<uint32_t>());
      }
      return absl::OkStatus();
    }
    if (std::all_of(prompt.begin(), prompt.end(), [](const json& p) { return p.is_string(); })) {
      return Invalid("prompt", "one prompt per request (the batch form is not supported)");
    }
  }
  return Invalid("prompt", "must be a string, an array of one string, or an array of token ids");
}

// A message's content: a string, or an array of {"type": "text", "text": ...}
// parts (joined).
absl::StatusOr<std::string> MessageContent(const json& message, size_t index) {
  const std::string param = absl::StrCat("messages[", index, "].content");
  auto it = message.find("content");
  if (it == message.end() || it->is_null()) return Invalid(param, "is required");
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string text;
    for (const json& part : *it) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part.at("text").is_string()) {
        return Invalid(param, "only text parts ({\"type\": \"text\", \"text\": ...}) are "
                              "supported");
      }
      text += part.at("text").get<std::string>();
    }
    return text;
  }
  return Invalid(param, absl::StrCat("must be a string or an array of text parts, got ",
                                     TypeName(*it)));
}

absl::Status ParseMessages(const json& body, otaro::v1::GenerateRequest* out) {
  if (!body.contains("messages")) return Invalid("messages", "is required");
  const json& messages = body.at("messages");
  if (!messages.is_array() || messages.empty()) {
    return Invalid("messages", "must be a non-empty array of {role, content}");
  }
  auto* chat = out->mutable_chat();
  for (size_t i = 0; i < messages.size(); ++i) {
    const json& message = messages[i];
    if (!message.is_object() || !message.contains("role") || !message.at("role").is_string()) {
      return Invalid(absl::StrCat("messages[", i, "]"), "must be an object with a string role");
    }
    std::string role = message.at("role").get<std::string>();
    // OpenAI's newer name for the system prompt; chat templates know "system".
    if (role == "developer") role = "system";
    if (role != "system" && role != "user" && role != "assistant") {
      return Invalid(absl::StrCat("messages[", i, "].role"),
                     absl::StrCat("\"", role,
                                  "\" is not supported (system, developer, user, assistant)"));
    }
    absl::StatusOr<std::string> content = MessageContent(message, i);
    if (!content.ok()) return content.status();
    auto* m = chat->add_messages();
    m->set_role(role);
    m->set_content(*std::move(content));
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const json& body, otaro::v1::GenerateRequest* out) {
  if (!Present(body, "stop")) return absl::OkStatus();
  const json& stop = body.at("stop");
  if (stop.is_string()) {
    out->add_stop(stop.get<std::string>());
    return absl::OkStatus();
  }
  if (stop.is_array()) {
    for (const json& s : stop) {
      if (!s.is_string()) return Invalid("stop", "must be a string or an array of strings");
      out->add_stop(s.get<std::string>());
    }
    return absl::OkStatus();
  }
  return Invalid("stop", "must be a string or an array of strings");
}

// The OpenAI parameter a service message ("field: problem") is about.
std::string ParamFromMessage(absl::string_view message, Endpoint endpoint) {
  const size_t colon = message.find(':');
  if (colon == absl::string_view::npos) return "";
  const absl::string_view field = message.substr(0, colon);
  const char* prompt = endpoint == Endpoint::kChatCompletions ? "messages" : "prompt";
  struct Rename {
    const char* prefix;
    const char* param;
  };
  const Rename renames[] = {
      {"decode_precision", "precision"},   {"prefill_precision", "prefill_precision"},
      {"sampling.temperature", "temperature"}, {"sampling.top_p", "top_p"},
      {"sampling.seed", "seed"},           {"max_tokens", "max_tokens"},
      {"stop", "stop"},                    {"chat", "messages"},
      {"text", prompt},                    {"token_ids", prompt},
      {"prompt", prompt},
  };
  for (const Rename& r : renames) {
    if (absl::StartsWith(field, r.prefix)) return r.param;
  }
  return "";
}

json Usage(const otaro::v1::Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens()},
          {"completion_tokens", usage.generated_tokens()},
          {"total_tokens", usage.prompt_tokens() + usage.generated_tokens()}};
}

// otaro's own account of a response: which precision and model version served
// it, the seed that replays it, and where the time went.
template <typename Message>
json OtaroObject(const Message& m) {
  const auto& t = m.timings();
  return {{"precision", PrecisionName(m.decode_precision().mantissa_bits())},
          {"prefill_precision", PrecisionName(m.prefill_precision().mantissa_bits())},
          {"model_version", m.model_version()},
          {"seed", m.seed()},
          {"timings",
           {{"queue_seconds", t.queue_seconds()},
            {"prefill_seconds", t.prefill_seconds()},
            {"time_to_first_token_seconds", t.time_to_first_token_seconds()},
            {"decode_seconds", t.decode_seconds()},
            {"total_seconds", t.total_seconds()}}}};
}

// Which model version and precision produced the output: OpenAI's field for
// "the backend configuration that served this".
template <typename Message>
std::string Fingerprint(const Message& m) {
  return absl::StrCat("otaro-v", m.model_version(), "-",
                      PrecisionName(m.decode_precision().mantissa_bits()));
}

json ChatLogprobs(const google::protobuf::RepeatedField<float>& logprobs,
                  const TokenTexts& texts) {
  json content = json::array();
  for (int i = 0; i < logprobs.size(); ++i) {
    const std::string& text = i < static_cast<int>(texts.size()) ? texts[i] : std::string();
    json bytes = json::array();
    for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
    content.push_back({{"token", text},
                       {"logprob", logprobs[i]},
                       {"bytes", bytes},
                       {"top_logprobs", json::array()}});
  }
  return {{"content", content}};
}

json CompletionLogprobs(const google::protobuf::RepeatedField<float>& logprobs,
                        const TokenTexts& texts, size_t text_offset) {
  json tokens = json::array(), values = json::array(), offsets = json::array();
  for (int i = 0; i < logprobs.size(); ++i) {
    const std::string& text = i < static_cast<int>(texts.size()) ? texts[i] : std::string();
    tokens.push_back(text);
    values.push_back(logprobs[i]);
    offsets.push_back(text_offset);
    text_offset += text.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", values},
          {"top_logprobs", nullptr},
          {"text_offset", offsets}};
}

json Header(const ResponseHeader& header, const char* object) {
  return {{"id", header.id},
          {"object", object},
          {"created", header.created},
          {"model", header.model}};
}

}  // namespace

std::string JsonText(const nlohmann::json& value) {
  return value.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
}

nlohmann::json ApiError::ToJson() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

absl::StatusOr<uint32_t> ParsePrecision(const nlohmann::json& value, absl::string_view field) {
  const std::string param(field);
  if (value.is_number_integer()) {
    if (value.get<int64_t>() < 0 || value.get<int64_t>() > 64) {
      return Invalid(param, absl::StrCat("mantissa bits out of range: ", JsonText(value)));
    }
    return value.get<uint32_t>();
  }
  if (value.is_string()) {
    std::string s = absl::AsciiStrToUpper(value.get<std::string>());
    absl::string_view digits = s;
    if (absl::StartsWith(digits, "E5M")) digits.remove_prefix(3);
    uint32_t bits = 0;
    if (!digits.empty() && digits.size() <= 2 && absl::SimpleAtoi(digits, &bits)) return bits;
  }
  return Invalid(param, absl::StrCat("must be a precision like \"E5M4\" or a number of mantissa "
                                     "bits like 4, got ", JsonText(value)));
}

absl::StatusOr<CompletionRequest> ParseCompletionRequest(Endpoint endpoint,
                                                         absl::string_view body) {
  json parsed = json::parse(body.begin(), body.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Invalid("", "the request body is not valid JSON");
  if (!parsed.is_object()) return Invalid("", "the request body must be a JSON object");
  if (absl::Status s = RefuseUnsupported(parsed, endpoint); !s.ok()) return s;

  CompletionRequest request;
  request.endpoint = endpoint;
  otaro::v1::GenerateRequest& g = request.generate;
  if (Present(parsed, "model")) {
    if (!parsed.at("model").is_string()) return Invalid("model", "must be a string");
    request.model = parsed.at("model").get<std::string>();
  }
  if (absl::Status s = endpoint == Endpoint::kChatCompletions ? ParseMessages(parsed, &g)
                                                               : ParsePrompt(parsed, &g);
      !s.ok()) {
    return s;
  }

  // OpenAI's legacy completions default to 16 tokens; chat has no limit there,
  // so the server's generation.default_max_tokens applies (0 = unset).
  const int64_t max_tokens_default = endpoint == Endpoint::kCompletions ? 16 : 0;
  auto max_tokens =
      Integer(parsed, "max_tokens", max_tokens_default, 1, std::numeric_limits<uint32_t>::max());
  if (!max_tokens.ok()) return max_tokens.status();
  auto max_completion_tokens = Integer(parsed, "max_completion_tokens", *max_tokens, 1,
                                       std::numeric_limits<uint32_t>::max());
  if (!max_completion_tokens.ok()) return max_completion_tokens.status();
  g.set_max_tokens(static_cast<uint32_t>(*max_completion_tokens));

  auto* sampling = g.mutable_sampling();
  // OpenAI samples at temperature 1 unless told otherwise; 0 is greedy.
  auto temperature = Number(parsed, "temperature", 1.0, 0.0, 2.0);
  if (!temperature.ok()) return temperature.status();
  sampling->set_temperature(static_cast<float>(*temperature));
  auto top_p = Number(parsed, "top_p", 1.0, 0.0, 1.0);
  if (!top_p.ok()) return top_p.status();
  sampling->set_top_p(static_cast<float>(*top_p));
  // Not OpenAI's, but vLLM's and llama.cpp's servers take it.
  auto top_k = Integer(parsed, "top_k", 0, 0, std::numeric_limits<int32_t>::max());
  if (!top_k.ok()) return top_k.status();
  sampling->set_top_k(static_cast<uint32_t>(*top_k));
  if (Present(parsed, "seed")) {
    auto seed = Integer(parsed, "seed", 0, 0, std::numeric_limits<int64_t>::max());
    if (!seed.ok()) return seed.status();
    sampling->set_seed(static_cast<uint64_t>(*seed));
  }
  if (absl::Status s = ParseStop(parsed, &g); !s.ok()) return s;

  for (const char* key : {"precision", "prefill_precision"}) {
    if (!Present(parsed, key)) continue;
    auto bits = ParsePrecision(parsed.at(key), key);
    if (!bits.ok()) return bits.status();
    (std::string(key) == "precision" ? g.mutable_decode_precision()
                                     : g.mutable_prefill_precision())
        ->set_mantissa_bits(*bits);
  }

  auto stream = Bool(parsed, "stream", false);
  if (!stream.ok()) return stream.status();
  request.stream = *stream;
  if (Present(parsed, "stream_options")) {
    const json& options = parsed.at("stream_options");
    if (!request.stream) return Invalid("stream_options", "only allowed when stream is true");
    if (!options.is_object()) return Invalid("stream_options", "must be an object");
    auto usage = Bool(options, "include_usage", false);
    if (!usage.ok()) return Invalid("stream_options.include_usage", "must be a boolean");
    request.include_usage = *usage;
  }
  if (endpoint == Endpoint::kChatCompletions) {
    auto logprobs = Bool(parsed, "logprobs", false);
    if (!logprobs.ok()) return logprobs.status();
    request.logprobs = *logprobs;
  } else {
    request.logprobs = Present(parsed, "logprobs");  // 0: checked above
  }
  g.set_logprobs(request.logprobs);
  return request;
}

ApiError ErrorFromStatus(const absl::Status& status, Endpoint endpoint) {
  ApiError error;
  error.message = std::string(status.message());
  if (auto param = status.GetPayload(kParamPayload)) {
    error.param = std::string(*param);
  } else {
    error.param = ParamFromMessage(status.message(), endpoint);
  }
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      error.http_status = 400;
      error.type = "invalid_request_error";
      break;
    case absl::StatusCode::kUnauthenticated:
      error.http_status = 401;
      error.type = "authentication_error";
      error.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      error.http_status = 403;
      error.type = "permission_error";
      break;
    case absl::StatusCode::kNotFound:
      error.http_status = 404;
      error.type = "invalid_request_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      error.http_status = 429;
      error.type = "rate_limit_error";
      break;
    case absl::StatusCode::kUnavailable:
      error.http_status = 503;
      error.type = "server_error";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      error.http_status = 504;
      error.type = "server_error";
      break;
    case absl::StatusCode::kCancelled:
      // nginx's "client closed request": nobody is left to read it.
      error.http_status = 499;
      error.type = "server_error";
      break;
    default:
      error.http_status = 500;
      error.type = "server_error";
      break;
  }
  return error;
}

std::string NewResponseId(Endpoint endpoint) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%s-%016x%08x",
                         endpoint == Endpoint::kChatCompletions ? "chatcmpl" : "cmpl", rng(),
                         static_cast<uint32_t>(rng()));
}

const char* FinishReasonName(otaro::v1::FinishReason reason) {
  switch (reason) {
    case otaro::v1::FINISH_REASON_EOS:
    case otaro::v1::FINISH_REASON_STOP:
      return "stop";
    case otaro::v1::FINISH_REASON_LENGTH:
    case otaro::v1::FINISH_REASON_CONTEXT:
      return "length";
    default:
      return "stop";
  }
}

std::string PrecisionName(uint32_t mantissa_bits) { return absl::StrCat("E5M", mantissa_bits); }

nlohmann::json CompletionResponse(const CompletionRequest& request, const ResponseHeader& header,
                                  const otaro::v1::GenerateResponse& response,
                                  const TokenTexts& token_texts) {
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  json choice = {{"index", 0}, {"finish_reason", FinishReasonName(response.finish_reason())}};
  json logprobs = nullptr;
  if (request.logprobs) {
    logprobs = chat ? ChatLogprobs(response.logprobs(), token_texts)
                    : CompletionLogprobs(response.logprobs(), token_texts, 0);
  }
  choice["logprobs"] = logprobs;
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", response.text()}, {"refusal", nullptr}};
  } else {
    choice["text"] = response.text();
  }
  json out = Header(header, chat ? "chat.completion" : "text_completion");
  out["system_fingerprint"] = Fingerprint(response);
  out["choices"] = json::array({choice});
  out["usage"] = Usage(response.usage());
  out["otaro"] = OtaroObject(response);
  out["otaro"]["reconstruction"] =
      response.reconstruction() == otaro::v1::RECONSTRUCTION_TRUNCATE ? "truncate" : "midpoint";
  return out;
}

nlohmann::json FirstChatChunk(const ResponseHeader& header) {
  json out = Header(header, "chat.completion.chunk");
  out["choices"] = json::array(
      {{{"index", 0},
        {"delta", {{"role", "assistant"}, {"content", ""}}},
        {"logprobs", nullptr},
        {"finish_reason", nullptr}}});
  return out;
}

nlohmann::json StreamChunk(const CompletionRequest& request, const ResponseHeader& header,
                           const otaro::v1::GenerateChunk& chunk, const TokenTexts& token_texts) {
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  json choice = {{"index", 0}, {"finish_reason", nullptr}};
  json logprobs = nullptr;
  if (request.logprobs) {
    // Streamed completions report offsets within the chunk.
    logprobs = chat ? ChatLogprobs(chunk.logprobs(), token_texts)
                    : CompletionLogprobs(chunk.logprobs(), token_texts, 0);
  }
  choice["logprobs"] = logprobs;
  if (chat) {
    choice["delta"] = {{"content", chunk.text()}};
  } else {
    choice["text"] = chunk.text();
  }
  json out = Header(header, chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array({choice});
  return out;
}

nlohmann::json FinalChunk(const CompletionRequest& request, const ResponseHeader& header,
                          const otaro::v1::GenerateChunk& last) {
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  json choice = {{"index", 0},
                 {"logprobs", nullptr},
                 {"finish_reason", FinishReasonName(last.finish_reason())}};
  if (chat) {
    choice["delta"] = json::object();
    if (!last.text().empty()) choice["delta"]["content"] = last.text();
  } else {
    choice["text"] = last.text();
  }
  json out = Header(header, chat ? "chat.completion.chunk" : "text_completion");
  out["system_fingerprint"] = Fingerprint(last);
  out["choices"] = json::array({choice});
  out["otaro"] = OtaroObject(last);
  return out;
}

nlohmann::json UsageChunk(const CompletionRequest& request, const ResponseHeader& header,
                          const otaro::v1::GenerateChunk& last) {
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  json out = Header(header, chat ? "chat.completion.chunk" : "text_completion");
  out["system_fingerprint"] = Fingerprint(last);
  out["choices"] = json::array();
  out["usage"] = Usage(last.usage());
  return out;
}

}  // namespace otaro::server::openai
