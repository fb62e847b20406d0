#include "engine/tokenizer/utf8.h"

#include <array>

namespace otaro::engine::tokenizer {

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
