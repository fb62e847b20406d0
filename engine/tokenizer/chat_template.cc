#include "engine/tokenizer/chat_template.h"

#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "engine/tokenizer/tokenizer.h"

namespace otaro::engine::tokenizer {
namespace {

bool Has(absl::string_view s, absl::string_view m) { return absl::StrContains(s, m); }

// Jinja string literals spell a newline as the two characters \n.
std::string UnescapeJinja(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"\\n", "\n"}, {"\\'", "'"}, {"\\\"", "\""}});
}

// The system prompt a ChatML template inserts when there is none.
absl::StatusOr<std::string> ChatMlDefaultSystem(const std::string& t) {
  std::smatch m;
  // Qwen2: {% set system_message = 'You are a helpful assistant.' %}
  static const std::regex kSetSystem(R"(set\s+system_message\s*=\s*'([^']*)')");
  if (std::regex_search(t, m, kSetSystem)) return UnescapeJinja(m[1].str());
  // SmolLM2 / Qwen2.5: '<|im_start|>system\nLiteral text<|im_end|>\n' as one
  // literal (a system turn built from the messages contains "' +" instead).
  static const std::regex kLiteral(R"(<\|im_start\|>system(\\n|\n)([^'"{}+]*?)<\|im_end\|>)");
  if (std::regex_search(t, m, kLiteral)) return UnescapeJinja(m[2].str());
  // A default system prompt of some other shape would be silently lost.
  if (Has(t, "system_message") || Has(t, "default_system")) {
    return absl::UnimplementedError(
        "ChatML chat template with a default system prompt in an unrecognised form");
  }
  return std::string();
}

absl::Status CheckRoles(const std::vector<ChatMessage>& messages) {
  for (size_t k = 0; k < messages.size(); ++k) {
    const std::string& r = messages[k].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", k, " has role \"", r, "\" (expected system, user or assistant)"));
    }
    if (r == "system" && k != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", k, " is a system message; only the first message may be one"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view ChatStyleName(ChatStyle style) {
  switch (style) {
    case ChatStyle::kChatMl: return "chatml";
    case ChatStyle::kLlama3: return "llama3";
    case ChatStyle::kLlama2: return "llama2";
    case ChatStyle::kZephyr: return "zephyr";
    case ChatStyle::kPhi3: return "phi3";
  }
  return "unknown";
}

absl::StatusOr<ChatFormat> RecognizeChatTemplate(absl::string_view jinja,
                                                 absl::string_view bos_token,
                                                 absl::string_view eos_token) {
  const std::string t(jinja);
  if (absl::StripAsciiWhitespace(t).empty()) {
    return absl::NotFoundError("the model has no chat template; send a raw prompt instead");
  }
  ChatFormat f;
  f.bos_token = std::string(bos_token);
  f.eos_token = std::string(eos_token);
  auto unsupported = [&](absl::string_view why) {
    return absl::UnimplementedError(absl::StrCat(
        "unsupported chat template (", why,
        "); supported: ChatML, LLaMA 3, LLaMA 2, Zephyr, Phi-3. Send a raw prompt instead. "
        "Template begins: ",
        t.substr(0, 120)));
  };
  const bool chatml = Has(t, "<|im_start|>") && Has(t, "<|im_end|>");
  const bool llama3 =
      Has(t, "<|start_header_id|>") && Has(t, "<|end_header_id|>") && Has(t, "<|eot_id|>");
  const bool llama2 = Has(t, "[INST]") && Has(t, "[/INST]") && Has(t, "<<SYS>>");
  const bool user_assistant = Has(t, "<|user|>") && Has(t, "<|assistant|>");
  const int families = chatml + llama3 + llama2 + user_assistant;
  if (families == 0) return unsupported("no known chat markers");
  if (families > 1) return unsupported("markers of several chat formats");

  if (chatml) {
    f.style = ChatStyle::kChatMl;
    absl::StatusOr<std::string> sys = ChatMlDefaultSystem(t);
    if (!sys.ok()) return unsupported(sys.status().message());
    f.default_system = *sys;
    if (Has(t, "bos_token")) return unsupported("ChatML template that prints bos_token");
    return f;
  }
  if (llama3) {
    if (Has(t, "Cutting Knowledge") || Has(t, "date_string") || Has(t, "custom_tools") ||
        Has(t, "ipython")) {
      return unsupported("LLaMA 3.1+ template with date/tool system header");
    }
    if (!Has(t, "bos_token") || bos_token.empty()) {
      return unsupported("LLaMA 3 template without bos_token");
    }
    f.style = ChatStyle::kLlama3;
    f.renders_bos = true;
    return f;
  }
  if (llama2) {
    if (bos_token.empty() || eos_token.empty()) {
      return unsupported("LLaMA 2 template needs BOS and EOS tokens");
    }
    f.style = ChatStyle::kLlama2;
    f.renders_bos = true;
    return f;
  }
  // <|user|> / <|assistant|> families.
  if (Has(t, "<|end|>")) {
    f.style = ChatStyle::kPhi3;
    f.renders_bos = Has(t, "bos_token");
    if (f.renders_bos && bos_token.empty()) return unsupported("Phi-3 template needs BOS");
    if (Has(t, "<|system|>")) return unsupported("Phi-3 template variant with a system turn");
    return f;
  }
  if (Has(t, "eos_token") && Has(t, "<|system|>")) {
    if (eos_token.empty()) return unsupported("Zephyr template needs an EOS token");
    f.style = ChatStyle::kZephyr;
    return f;
  }
  return unsupported("<|user|>/<|assistant|> template of an unknown variant");
}

absl::StatusOr<ChatFormat> RecognizeChatTemplate(const Tokenizer& tokenizer) {
  auto text = [&](TokenId id) -> std::string {
    auto p = tokenizer.TokenPiece(id);
    return p.ok() ? std::string(*p) : std::string();
  };
  return RecognizeChatTemplate(tokenizer.chat_template(), text(tokenizer.bos_id()),
                               text(tokenizer.eos_id()));
}

absl::StatusOr<std::string> RenderChat(const ChatFormat& f,
                                       const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt) {
  absl::Status roles = CheckRoles(messages);
  if (!roles.ok()) return roles;
  std::string out;
  const bool has_system = !messages.empty() && messages[0].role == "system";
  switch (f.style) {
    case ChatStyle::kChatMl: {
      if (!has_system && !f.default_system.empty()) {
        absl::StrAppend(&out, "<|im_start|>system\n", f.default_system, "<|im_end|>\n");
      }
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    }
    case ChatStyle::kLlama3: {
      out = f.bos_token;
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n",
                        absl::StripAsciiWhitespace(m.content), "<|eot_id|>");
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    }
    case ChatStyle::kLlama2: {
      size_t k = has_system ? 1 : 0;
      for (size_t turn = 0; k < messages.size(); ++k, ++turn) {
        const ChatMessage& m = messages[k];
        const bool want_user = turn % 2 == 0;
        if ((m.role == "user") != want_user) {
          return absl::InvalidArgumentError(
              "LLaMA 2 chat roles must alternate user/assistant/user/assistant/...");
        }
        std::string content = m.content;
        if (turn == 0 && has_system) {
          content = absl::StrCat("<<SYS>>\n", messages[0].content, "\n<</SYS>>\n\n", m.content);
        }
        if (m.role == "user") {
          absl::StrAppend(&out, f.bos_token, "[INST] ", absl::StripAsciiWhitespace(content),
                          " [/INST]");
        } else {
          absl::StrAppend(&out, " ", absl::StripAsciiWhitespace(content), " ", f.eos_token);
        }
      }
      break;  // the generation prompt is the trailing " [/INST]"
    }
    case ChatStyle::kZephyr: {
      for (const ChatMessage& m : messages) {
        absl::StrAppend(&out, "<|", m.role, "|>\n", m.content, f.eos_token, "\n");
      }
      if (add_generation_prompt) out += "<|assistant|>\n";
      break;
    }
    case ChatStyle::kPhi3: {
      if (f.renders_bos) out = f.bos_token;
      for (const ChatMessage& m : messages) {
        if (m.role == "user") {
          absl::StrAppend(&out, "<|user|>\n", m.content, "<|end|>\n<|assistant|>\n");
        } else if (m.role == "assistant") {
          absl::StrAppend(&out, m.content, "<|end|>\n");
        }  // the template prints no system turn
      }
      break;
    }
  }
  return out;
}

}  // namespace otaro::engine::tokenizer
