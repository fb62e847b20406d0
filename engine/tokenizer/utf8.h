// Small UTF-8 and GPT-2 byte-level helpers shared by the tokenizers.
#ifndef OTARO_ENGINE_TOKENIZER_UTF8_H_
#define OTARO_ENGINE_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace otaro::engine::tokenizer {

// Length of the UTF-8 sequence that starts with `lead` (1 for an invalid
// lead byte, so that any byte string can be walked character by character).
size_t Utf8SequenceLength(uint8_t lead);

// Appends the UTF-8 encoding of `cp` (U+FFFD for invalid code points).
void AppendUtf8(uint32_t cp, std::string* out);

// Decodes one code point at s[*pos] and advances *pos; nullopt (and a one-byte
// advance) on an invalid or truncated sequence.
std::optional<uint32_t> DecodeUtf8(absl::string_view s, size_t* pos);

// True when `s` is entirely valid UTF-8.
bool IsValidUtf8(absl::string_view s);

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
