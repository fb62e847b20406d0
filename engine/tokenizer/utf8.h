// Small UTF-8 and GPT-2 byte-level helpers shared by the tokenizers.
#ifndef OTARO_ENGINE_TOKENIZER_UTF8_H_
#define OTARO_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "common/utf8.h"  // Generic UTF-8; this file adds the byte-level BPE mapping.

namespace otaro::engine::tokenizer {

// GPT-2's reversible byte <-> printable code point mapping used by byte-level
// BPE vocabularies ("Ġ" = space, "Ċ" = newline, ...).
uint32_t ByteToUnicode(uint8_t b);
// Inverse: the byte for a mapped code point, or nullopt if it is not one.
std::optional<uint8_t> UnicodeToByte(uint32_t cp);
// Byte-level encodes raw bytes into the mapped UTF-8 string.
std::string ByteLevelEncode(absl::string_view bytes);
// Decodes a byte-level string back to raw bytes; nullopt if it contains a
// code point outside the mapping.
std::optional<std::string> ByteLevelDecode(absl::string_view text);

}  // namespace otaro::engine::tokenizer

#endif  // OTARO_ENGINE_TOKENIZER_UTF8_H_
