#include "engine/tokenizer/utf8.h"

#include <array>

namespace otaro::engine::tokenizer {

size_t Utf8SequenceLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::optional<uint32_t> DecodeUtf8(absl::string_view s, size_t* pos) {
  const uint8_t lead = static_cast<uint8_t>(s[*pos]);
  const size_t n = Utf8SequenceLength(lead);
  if (n == 1) {
    ++*pos;
    if (lead >= 0x80) return std::nullopt;
    return lead;
  }
  if (*pos + n > s.size()) {
    ++*pos;
    return std::nullopt;
  }
  uint32_t cp = lead & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    uint8_t c = static_cast<uint8_t>(s[*pos + k]);
    if ((c & 0xC0) != 0x80) {
      ++*pos;
      return std::nullopt;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF.
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++*pos;
    return std::nullopt;
  }
  *pos += n;
  return cp;
}

bool IsValidUtf8(absl::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (!DecodeUtf8(s, &pos).has_value()) return false;
  }
  return true;
}

namespace {
struct ByteTables {
  std::array<uint32_t, 256> to_cp;
  std::array<int16_t, 324> from_cp;
  ByteTables() {
    from_cp.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteTables& Tables() {
  static const ByteTables* t = new ByteTables();
  return *t;
}
}  // namespace

uint32_t ByteToUnicode(uint8_t b) { return Tables().to_cp[b]; }

std::optional<uint8_t> UnicodeToByte(uint32_t cp) {
  if (cp >= Tables().from_cp.size() || Tables().from_cp[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(Tables().from_cp[cp]);
}

std::string ByteLevelEncode(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(ByteToUnicode(static_cast<uint8_t>(c)), &out);
  return out;
}

std::optional<std::string> ByteLevelDecode(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    std::optional<uint32_t> cp = DecodeUtf8(text, &pos);
    if (!cp) return std::nullopt;
    std::optional<uint8_t> b = UnicodeToByte(*cp);
    if (!b) return std::nullopt;
    out.push_back(static_cast<char>(*b));
  }
  return out;
}

}  // namespace otaro::engine::tokenizer
