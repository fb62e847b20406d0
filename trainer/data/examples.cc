#include "trainer/data/examples.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace otaro::trainer::data {
namespace {

using engine::tokenizer::ChatMessage;
using engine::tokenizer::EncodeOptions;
using engine::tokenizer::kNoToken;
using engine::tokenizer::TokenId;

absl::Status Malformed(absl::string_view reason) {
  return absl::InvalidArgumentError(std::string(reason));
}

// Text tokens with the tokenizer's BOS in front when it adds one. BOS is added
// here rather than through EncodeOptions::add_special, which would also append
// EOS for tokenizers with add_eos and break the prefix comparisons below.
std::vector<TokenId> EncodeWithBos(const Tokenizer& tokenizer, absl::string_view text,
                                   bool add_bos, bool parse_special) {
  std::vector<TokenId> ids;
  if (add_bos) ids.push_back(tokenizer.bos_id());
  std::vector<TokenId> body = tokenizer.Encode(text, EncodeOptions{.parse_special = parse_special});
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

bool AddsBos(const Tokenizer& tokenizer) {
  return tokenizer.add_bos() && tokenizer.bos_id() != kNoToken;
}

// Length of the common prefix: where `prefix`'s tokens stop matching `full`'s.
// Equal to prefix.size() unless tokenisation merged across the boundary.
size_t CommonPrefix(const std::vector<TokenId>& prefix, const std::vector<TokenId>& full) {
  const size_t n = std::min(prefix.size(), full.size());
  size_t i = 0;
  while (i < n && prefix[i] == full[i]) ++i;
  return i;
}

// A string field of an example: absent or null gives "" unless `required`;
// required fields must hold something other than whitespace.
absl::StatusOr<std::string> StringField(const nlohmann::json& record, const char* key,
                                        bool required) {
  const auto it = record.find(key);
  if (it == record.end() || it->is_null()) {
    if (required) return Malformed(absl::StrCat("missing \"", key, "\""));
    return std::string();
  }
  if (!it->is_string()) {
    return Malformed(absl::StrCat("\"", key, "\" is ", it->type_name(), ", not a string"));
  }
  std::string value = it->get<std::string>();
  if (required && absl::StripAsciiWhitespace(value).empty()) {
    return Malformed(absl::StrCat("empty \"", key, "\""));
  }
  return value;
}

}  // namespace

std::vector<TextDocument> SplitDocuments(absl::string_view content, absl::string_view separator) {
  std::vector<TextDocument> documents;
  int64_t line = 1;  // line of content[pos]
  size_t pos = 0;
  while (pos <= content.size()) {
    size_t end = separator.empty() ? absl::string_view::npos : content.find(separator, pos);
    if (end == absl::string_view::npos) end = content.size();
    absl::string_view piece = content.substr(pos, end - pos);
    // Leading whitespace moves the document's first line down.
    size_t skip = 0;
    while (skip < piece.size() && absl::ascii_isspace(static_cast<unsigned char>(piece[skip]))) {
      ++skip;
    }
    const int64_t first_line = line + std::count(piece.begin(), piece.begin() + skip, '\n');
    absl::string_view text = absl::StripTrailingAsciiWhitespace(piece.substr(skip));
    if (!text.empty()) documents.push_back({first_line, text});
    line += std::count(piece.begin(), piece.end(), '\n');
    if (end == content.size()) break;
    line += std::count(separator.begin(), separator.end(), '\n');
    pos = end + separator.size();
  }
  return documents;
}

absl::StatusOr<std::vector<int32_t>> DocumentTokens(const TextDocument& document,
                                                    const Tokenizer& tokenizer) {
  if (!IsValidUtf8(document.text)) {
    size_t pos = 0;
    while (pos < document.text.size()) {
      const size_t at = pos;
      if (!DecodeUtf8(document.text, &pos).has_value()) {
        pos = at;
        break;
      }
    }
    const int64_t bad_line =
        document.line + std::count(document.text.begin(), document.text.begin() + pos, '\n');
    return Malformed(absl::StrCat("invalid UTF-8 (first bad byte on line ", bad_line, ")"));
  }
  std::vector<TokenId> ids =
      EncodeWithBos(tokenizer, document.text, AddsBos(tokenizer), /*parse_special=*/false);
  if (ids.size() == (AddsBos(tokenizer) ? 1u : 0u)) return Malformed("no tokens after tokenising");
  if (tokenizer.eos_id() != kNoToken) ids.push_back(tokenizer.eos_id());
  return ids;
}

std::string AlpacaPrompt(absl::string_view instruction, absl::string_view input) {
  if (input.empty()) {
    return absl::StrCat(
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\n",
        instruction, "\n\n### Response:\n");
  }
  return absl::StrCat(
      "Below is an instruction that describes a task, paired with an input that provides further "
      "context. Write a response that appropriately completes the request.\n\n### Instruction:\n",
      instruction, "\n\n### Input:\n", input, "\n\n### Response:\n");
}

absl::StatusOr<ScoredSequence> AlpacaSequence(const nlohmann::json& record,
                                              const Tokenizer& tokenizer) {
  if (!record.is_object()) {
    return Malformed(absl::StrCat("expected a JSON object, found ", record.type_name()));
  }
  OTARO_ASSIGN_OR_RETURN(const std::string instruction,
                         StringField(record, "instruction", /*required=*/true));
  OTARO_ASSIGN_OR_RETURN(const std::string input, StringField(record, "input", false));
  OTARO_ASSIGN_OR_RETURN(const std::string output, StringField(record, "output", true));

  const bool bos = AddsBos(tokenizer);
  const std::string prompt = AlpacaPrompt(instruction, input);
  // As Stanford Alpaca's train.py: tokenise prompt + output as one text and
  // mask the prompt's tokens, so the response is tokenised in context.
  ScoredSequence seq;
  seq.tokens = EncodeWithBos(tokenizer, prompt + output, bos, /*parse_special=*/false);
  const size_t prompt_end =
      CommonPrefix(EncodeWithBos(tokenizer, prompt, bos, false), seq.tokens);
  if (tokenizer.eos_id() != kNoToken) seq.tokens.push_back(tokenizer.eos_id());
  if (prompt_end >= seq.tokens.size()) return Malformed("no response tokens after tokenising");
  seq.scored.assign(seq.tokens.size(), 0);
  std::fill(seq.scored.begin() + std::max<size_t>(prompt_end, 1), seq.scored.end(), 1);
  return seq;
}

absl::StatusOr<ScoredSequence> ChatSequence(const nlohmann::json& record,
                                            const Tokenizer& tokenizer,
                                            const engine::tokenizer::ChatFormat& format) {
  if (!record.is_object()) {
    return Malformed(absl::StrCat("expected a JSON object, found ", record.type_name()));
  }
  const auto it = record.find("messages");
  if (it == record.end()) return Malformed("missing \"messages\"");
  if (!it->is_array()) {
    return Malformed(absl::StrCat("\"messages\" is ", it->type_name(), ", not a list"));
  }
  if (it->empty()) return Malformed("\"messages\" is empty");
  std::vector<ChatMessage> messages;
  std::vector<size_t> assistant_turns;
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& m = (*it)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) {
      return Malformed(absl::StrCat(where, " is ", m.type_name(), ", not an object"));
    }
    absl::StatusOr<std::string> role = StringField(m, "role", true);
    if (!role.ok()) return Malformed(absl::StrCat(where, ": ", role.status().message()));
    if (*role != "system" && *role != "user" && *role != "assistant") {
      return Malformed(
          absl::StrCat(where, ".role '", *role, "' is not system, user or assistant"));
    }
    absl::StatusOr<std::string> content = StringField(m, "content", true);
    if (!content.ok()) return Malformed(absl::StrCat(where, ": ", content.status().message()));
    if (*role == "assistant") assistant_turns.push_back(i);
    messages.push_back({*std::move(role), *std::move(content)});
  }
  if (assistant_turns.empty()) return Malformed("no assistant message to learn from");

  const bool bos = AddsBos(tokenizer) && !format.renders_bos;
  // Each assistant turn is located by rendering the conversation up to its
  // header and up to its end: both must be prefixes of the whole rendering
  // (true for every supported template unless e.g. a system message comes
  // late and the template's default system prompt shifts everything).
  auto render = [&](size_t count, bool generation_prompt) -> absl::StatusOr<std::string> {
    std::vector<ChatMessage> head(messages.begin(), messages.begin() + count);
    absl::StatusOr<std::string> text = RenderChat(format, head, generation_prompt);
    if (!text.ok()) return Malformed(absl::StrCat("chat template: ", text.status().message()));
    return text;
  };
  OTARO_ASSIGN_OR_RETURN(const std::string full_text, render(messages.size(), false));
  ScoredSequence seq;
  seq.tokens = EncodeWithBos(tokenizer, full_text, bos, /*parse_special=*/true);
  seq.scored.assign(seq.tokens.size(), 0);
  size_t last_scored = 0;
  for (size_t turn : assistant_turns) {
    OTARO_ASSIGN_OR_RETURN(const std::string before, render(turn, true));
    OTARO_ASSIGN_OR_RETURN(const std::string through, render(turn + 1, false));
    if (!absl::StartsWith(full_text, before) || !absl::StartsWith(full_text, through)) {
      return Malformed(absl::StrCat("the chat template renders messages[", turn,
                                    "] differently in context (is a system message late?)"));
    }
    const size_t begin = CommonPrefix(EncodeWithBos(tokenizer, before, bos, true), seq.tokens);
    const size_t end = CommonPrefix(EncodeWithBos(tokenizer, through, bos, true), seq.tokens);
    // The turn is learned through its end-of-turn token; what the template
    // prints after it (a newline before the next header) is not.
    size_t stop = end;
    for (size_t i = begin; i < end; ++i) {
      if (tokenizer.IsEndOfGeneration(seq.tokens[i])) {
        stop = i + 1;
        break;
      }
    }
    for (size_t i = std::max<size_t>(begin, 1); i < stop; ++i) {
      seq.scored[i] = 1;
      last_scored = i;
    }
  }
  if (last_scored == 0) return Malformed("no assistant tokens after tokenising");
  seq.tokens.resize(last_scored + 1);
  seq.scored.resize(last_scored + 1);
  return seq;
}

}  // namespace otaro::trainer::data
