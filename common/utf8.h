// UTF-8 validation, decoding and repair: one copy for the tokenizers (streamed
// text), the metrics exposition (label values), and file metadata writers.
#ifndef OTARO_COMMON_UTF8_H_
#define OTARO_COMMON_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace otaro {

// Length of the sequence a lead byte announces (1 for ASCII and for bytes that
// cannot start a sequence).
size_t Utf8SequenceLength(uint8_t lead);

// Appends the encoding of `cp` (U+FFFD for surrogates and values past U+10FFFF).
void AppendUtf8(uint32_t cp, std::string* out);

// Decodes the code point at *pos and advances past it; on an invalid,
// truncated, overlong or surrogate sequence returns nullopt and advances one byte.
std::optional<uint32_t> DecodeUtf8(absl::string_view s, size_t* pos);

bool IsValidUtf8(absl::string_view s);

// `s` with every invalid byte replaced by U+FFFD.
std::string ToValidUtf8(absl::string_view s);

}  // namespace otaro

#endif  // OTARO_COMMON_UTF8_H_
