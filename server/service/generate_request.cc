#include "server/service/generate_request.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace otaro::server {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", problem));
}

// A precision field: unset (0) takes `fallback`; otherwise 2..8 and resident.
absl::StatusOr<int> Precision(absl::string_view field, const otaro::v1::Precision* precision,
                              int fallback, int resident_max_bits) {
  if (precision == nullptr || precision->mantissa_bits() == 0) return fallback;
  const uint32_t bits = precision->mantissa_bits();
  if (bits < sefp::kMinBits || bits > sefp::kMasterBits) {
    return Invalid(field, absl::StrCat(bits, " is outside 2..8 (E5M2..E5M8)"));
  }
  if (static_cast<int>(bits) > resident_max_bits) {
    return Invalid(field, absl::StrCat("E5M", bits, " is above the server's resident_max_bits (E5M",
                                       resident_max_bits, "): those bit-planes are not in memory"));
  }
  return static_cast<int>(bits);
}

absl::StatusOr<std::vector<engine::Token>> PromptTokens(
    const otaro::v1::GenerateRequest& api, const engine::LlamaModel& model,
    const std::optional<engine::tokenizer::ChatFormat>& chat_format) {
  const auto* tokenizer = model.tokenizer.get();
  switch (api.prompt_case()) {
    case otaro::v1::GenerateRequest::kText: {
      if (api.text().empty()) return Invalid("text", "the prompt is empty");
      if (tokenizer == nullptr) {
        return absl::FailedPreconditionError(
            "text: the served model has no tokenizer; send token_ids");
      }
      engine::tokenizer::EncodeOptions options;
      options.add_special = tokenizer->add_bos();
      return tokenizer->Encode(api.text(), options);
    }
    case otaro::v1::GenerateRequest::kTokenIds: {
      if (api.token_ids().ids_size() == 0) return Invalid("token_ids", "the prompt is empty");
      std::vector<engine::Token> ids;
      for (int i = 0; i < api.token_ids().ids_size(); ++i) {
        const uint32_t id = api.token_ids().ids(i);
        if (id >= static_cast<uint32_t>(model.config.vocab_size)) {
          return Invalid(absl::StrCat("token_ids.ids[", i, "]"),
                         absl::StrCat(id, " is outside the vocabulary (size ",
                                      model.config.vocab_size, ")"));
        }
        ids.push_back(static_cast<engine::Token>(id));
      }
      return ids;
    }
    case otaro::v1::GenerateRequest::kChat: {
      if (api.chat().messages_size() == 0) return Invalid("chat.messages", "no messages");
      if (tokenizer == nullptr || !chat_format.has_value()) {
        return absl::FailedPreconditionError(
            "chat: the served model has no chat template otaro can render; send text");
      }
      std::vector<engine::tokenizer::ChatMessage> messages;
      for (int i = 0; i < api.chat().messages_size(); ++i) {
        const auto& m = api.chat().messages(i);
        if (m.role() != "system" && m.role() != "user" && m.role() != "assistant") {
          return Invalid(absl::StrCat("chat.messages[", i, "].role"),
                         absl::StrCat("'", m.role(), "' is not system, user or assistant"));
        }
        messages.push_back({m.role(), m.content()});
      }
      const bool add_generation_prompt =
          !api.chat().has_add_generation_prompt() || api.chat().add_generation_prompt();
      auto rendered = engine::tokenizer::RenderChat(*chat_format, messages, add_generation_prompt);
      if (!rendered.ok()) return Invalid("chat", rendered.status().message());
      engine::tokenizer::EncodeOptions options;
      options.parse_special = true;  // The template's own control tokens.
      options.add_special = tokenizer->add_bos() && !chat_format->renders_bos;
      return tokenizer->Encode(*rendered, options);
    }
    case otaro::v1::GenerateRequest::PROMPT_NOT_SET:
      break;
  }
  return Invalid("prompt", "set one of text, token_ids or chat");
}

}  // namespace

absl::StatusOr<PreparedRequest> PrepareGenerateRequest(
    const otaro::v1::GenerateRequest& api, const engine::LlamaModel& model,
    const std::optional<engine::tokenizer::ChatFormat>& chat_format,
    const GenerateLimits& limits, uint64_t random_seed) {
  PreparedRequest prepared;
  engine::GenerationRequest& r = prepared.request;
  OTARO_ASSIGN_OR_RETURN(
      prepared.decode_bits,
      Precision("decode_precision.mantissa_bits",
                api.has_decode_precision() ? &api.decode_precision() : nullptr,
                limits.default_mantissa_bits, model.resident_max_bits));
  OTARO_ASSIGN_OR_RETURN(
      prepared.prefill_bits,
      Precision("prefill_precision.mantissa_bits",
                api.has_prefill_precision() ? &api.prefill_precision() : nullptr,
                prepared.decode_bits, model.resident_max_bits));
  r.precision = prepared.decode_bits;
  r.prefill_precision = prepared.prefill_bits;

  if (api.max_tokens() > static_cast<uint32_t>(limits.max_tokens_cap)) {
    return Invalid("max_tokens", absl::StrCat(api.max_tokens(), " is above the server's cap of ",
                                              limits.max_tokens_cap));
  }
  r.max_tokens = api.max_tokens() != 0 ? api.max_tokens() : limits.default_max_tokens;

  const auto& s = api.sampling();
  if (!std::isfinite(s.temperature()) || s.temperature() < 0) {
    return Invalid("sampling.temperature", "must be a finite number >= 0 (0 = greedy)");
  }
  if (!std::isfinite(s.top_p()) || s.top_p() < 0 || s.top_p() > 1) {
    return Invalid("sampling.top_p", "must be in [0, 1] (0 or 1 = no limit)");
  }
  r.sampling.temperature = s.temperature();
  r.sampling.top_k = s.top_k();
  r.sampling.top_p = s.top_p() == 0 ? 1.0 : s.top_p();
  prepared.seed = s.has_seed() ? s.seed() : random_seed;
  r.sampling.seed = prepared.seed;

  if (static_cast<size_t>(api.stop_size()) > limits.max_stop_strings) {
    return Invalid("stop", absl::StrCat("at most ", limits.max_stop_strings, " stop strings"));
  }
  for (int i = 0; i < api.stop_size(); ++i) {
    if (api.stop(i).empty() || api.stop(i).size() > limits.max_stop_bytes) {
      return Invalid(absl::StrCat("stop[", i, "]"),
                     absl::StrCat("must be 1..", limits.max_stop_bytes, " bytes"));
    }
    if (model.tokenizer == nullptr) {
      return absl::FailedPreconditionError("stop: the served model has no tokenizer");
    }
    r.stop.push_back(api.stop(i));
  }
  r.logprobs = api.logprobs();
  r.ignore_eos = api.has_stop_at_eos() && !api.stop_at_eos();

  OTARO_ASSIGN_OR_RETURN(r.prompt, PromptTokens(api, model, chat_format));
  const int64_t context = model.config.max_position;
  if (static_cast<int64_t>(r.prompt.size()) >= context) {
    return Invalid("prompt", absl::StrCat(r.prompt.size(), " tokens do not fit the model's ",
                                          context, "-token context (one must remain to generate)"));
  }
  // An explicit max_tokens that overflows the context is the caller's error
  // (the scheduler says so). The server's default that does not fit becomes
  // "until the context is full" (engine max_tokens 0), which then ends with
  // FinishReason::kContextFull, not kMaxTokens.
  if (api.max_tokens() == 0 && r.max_tokens >= context - static_cast<int64_t>(r.prompt.size())) {
    r.max_tokens = 0;
  }
  return prepared;
}

}  // namespace otaro::server
