// A tokenizer saved as JSON: the VocabSpec it was built from, whatever format
// it was loaded from (GGUF metadata, tokenizer.json, tiktoken, ...). SEFP
// checkpoints carry it so a converted or tuned model is one self-contained file.
#ifndef OTARO_ENGINE_TOKENIZER_VOCAB_JSON_H_
#define OTARO_ENGINE_TOKENIZER_VOCAB_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/tokenizer.h"

namespace otaro::engine::tokenizer {

inline constexpr int kVocabJsonVersion = 1;

std::string VocabSpecToJson(const VocabSpec& spec);

// Errors name the field that is missing or malformed; Tokenizer::Create then
// validates the content as for any other source.
absl::StatusOr<VocabSpec> VocabSpecFromJson(absl::string_view json);

}  // namespace otaro::engine::tokenizer

#endif  // OTARO_ENGINE_TOKENIZER_VOCAB_JSON_H_
