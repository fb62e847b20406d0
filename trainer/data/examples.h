// Turning one record of a dataset into tokens plus a loss mask: a text
// document, an Alpaca instruction example, or a chat conversation. Errors
// from these functions are the reason a record is reported as malformed.
#ifndef OTARO_TRAINER_DATA_EXAMPLES_H_
#define OTARO_TRAINER_DATA_EXAMPLES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/chat_template.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace otaro::trainer::data {

using engine::tokenizer::Tokenizer;

// Tokens of one example and which of them are learned: scored[i] says whether
// predicting tokens[i] from tokens[0..i) carries loss (scored[0] is unused).
struct ScoredSequence {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> scored;
};

// One document of a text file, with the line it starts on.
struct TextDocument {
  int64_t line = 0;
  absl::string_view text;
};

// Splits a text file at `separator` (e.g. TinyStories' "<|endoftext|>"; empty:
// the whole file is one document). Documents are trimmed of surrounding
// whitespace; empty ones are left out.
std::vector<TextDocument> SplitDocuments(absl::string_view content, absl::string_view separator);

// A document as the model reads text at inference: BOS when the tokenizer
// adds one (add_bos), the text (never parsing special tokens), then EOS when
// the tokenizer has one, so that packed documents stay separated. Errors:
// invalid UTF-8 (naming the line), nothing left after tokenising.
absl::StatusOr<std::vector<int32_t>> DocumentTokens(const TextDocument& document,
                                                    const Tokenizer& tokenizer);

// The Stanford Alpaca prompt (the "prompt_input" form when `input` is not
// empty, else "prompt_no_input"), ending in "### Response:\n".
std::string AlpacaPrompt(absl::string_view instruction, absl::string_view input);

// {instruction, input?, output}: BOS (if add_bos) + prompt + output + EOS (if
// the tokenizer has one), with only the output and EOS scored. Extra keys are
// ignored; "input" may be absent, null or a string.
absl::StatusOr<ScoredSequence> AlpacaSequence(const nlohmann::json& record,
                                              const Tokenizer& tokenizer);

// {"messages": [{"role", "content"}, ...]} rendered through `format`; each
// assistant turn's content and its end-of-turn token are scored, everything
// else (system and user turns, role headers, the template's default system
// prompt) is context. Tokens after the last assistant turn are dropped.
absl::StatusOr<ScoredSequence> ChatSequence(const nlohmann::json& record,
                                            const Tokenizer& tokenizer,
                                            const engine::tokenizer::ChatFormat& format);

}  // namespace otaro::trainer::data

#endif  // OTARO_TRAINER_DATA_EXAMPLES_H_
