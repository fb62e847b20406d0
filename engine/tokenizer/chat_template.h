// Chat prompt formats, chosen by recognising the model's own Jinja chat
// template (tokenizer.chat_template in GGUF, chat_template in
// tokenizer_config.json), never by the model's name. There is no Jinja
// engine: a template is recognised only when it carries every marker of one
// of the known styles and nothing this renderer would get wrong; anything else
// is an Unimplemented error naming what was found (raw prompts still work).
#ifndef OTARO_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_
#define OTARO_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace otaro::engine::tokenizer {

class Tokenizer;

enum class ChatStyle {
  kChatMl,  // <|im_start|>role\n...<|im_end|>\n (Qwen2, SmolLM2, generic ChatML)
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  kLlama2,  // <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s>
  kZephyr,  // <|user|>\n...</s>\n<|assistant|>\n (Zephyr, TinyLlama-Chat)
  kPhi3,    // <|user|>\n...<|end|>\n<|assistant|>\n
};
absl::string_view ChatStyleName(ChatStyle style);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct ChatFormat {
  ChatStyle style;
  // System prompt the template inserts when the conversation has none
  // (Qwen2's "You are a helpful assistant.", SmolLM2's, ...); empty if none.
  std::string default_system;
  std::string bos_token;  // texts the template prints as bos_token / eos_token
  std::string eos_token;
  // Whether the rendered text already starts with the BOS text (encode it
  // with parse_special and without adding BOS again).
  bool renders_bos = false;
};

// Recognises `jinja`. `bos_token` / `eos_token` are the texts of the model's
// BOS / EOS tokens (needed by styles that print them).
absl::StatusOr<ChatFormat> RecognizeChatTemplate(absl::string_view jinja,
                                                 absl::string_view bos_token,
                                                 absl::string_view eos_token);
// Same, using the tokenizer's chat_template and its BOS / EOS texts.
absl::StatusOr<ChatFormat> RecognizeChatTemplate(const Tokenizer& tokenizer);

// Renders a conversation as the template would, ending with the assistant
// header when `add_generation_prompt`. Roles other than system / user /
// assistant, or an order the format cannot express, are InvalidArgument.
absl::StatusOr<std::string> RenderChat(const ChatFormat& format,
                                       const std::vector<ChatMessage>& messages,
                                       bool add_generation_prompt);

}  // namespace otaro::engine::tokenizer

#endif  // OTARO_ENGINE_TOKENIZER_CHAT_TEMPLATE_H_
