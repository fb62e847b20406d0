#include "common/utf8.h"

#include "gtest/gtest.h"

namespace otaro {
namespace {

TEST(Utf8Test, ValidAndInvalidSequences) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
}

TEST(Utf8Test, DecodeAdvancesAndAppendRoundTrips) {
  std::string s;
  for (uint32_t cp : {0x24u, 0xA2u, 0x20ACu, 0x10348u}) AppendUtf8(cp, &s);
  size_t pos = 0;
  std::vector<uint32_t> decoded;
  while (pos < s.size()) decoded.push_back(*DecodeUtf8(s, &pos));
  EXPECT_EQ(decoded, (std::vector<uint32_t>{0x24, 0xA2, 0x20AC, 0x10348}));
  std::string bad;
  AppendUtf8(0xD800, &bad);
  EXPECT_EQ(bad, "\xEF\xBF\xBD");
}

TEST(Utf8Test, ToValidReplacesEachBadByte) {
  EXPECT_EQ(ToValidUtf8("ok"), "ok");
  EXPECT_EQ(ToValidUtf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(ToValidUtf8("\xC3"), "\xEF\xBF\xBD");
  EXPECT_EQ(ToValidUtf8("\xE2\x82\xAC"), "\xE2\x82\xAC");
  EXPECT_TRUE(IsValidUtf8(ToValidUtf8("\x80\x80\xC0\xAF\xED\xA0\x80")));
}

}  // namespace
}  // namespace otaro
