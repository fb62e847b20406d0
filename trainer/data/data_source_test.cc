// Reading dataset files: size cap, folders, format detection, and the split of
// JSON into records that keep their line numbers.
#include "trainer/data/data_source.h"

#include <filesystem>

#include "common/atomic_file.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"

namespace otaro::trainer::data {
namespace {

std::string Write(const std::string& dir, const std::string& name, const std::string& content) {
  const std::string path = dir + "/" + name;
  EXPECT_TRUE(WriteFileAtomically(path, content).ok());
  return path;
}

TEST(DataSourceTest, JsonLinesKeepLineNumbersAndSkipBlankLines) {
  const auto records = SplitJsonLines("{\"a\":1}\n\n  \n{\"b\":2}\r\nnot json\n");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].line, 1);
  EXPECT_EQ(records[1].line, 4);
  EXPECT_EQ(records[1].text, "{\"b\":2}");  // '\r' dropped
  EXPECT_EQ(records[2].line, 5);
  EXPECT_EQ(records[2].text, "not json");
}

TEST(DataSourceTest, JsonListElementsAreFoundByBracketMatching) {
  const std::string content =
      "[\n  {\"a\": \"x, ]\\\" }\"},\n  {\"b\": [1, {\"c\": 2}]},\n  {broken},\n  42\n]\n";
  auto records = SplitJsonList(content);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 4u);
  EXPECT_EQ((*records)[0].text, "{\"a\": \"x, ]\\\" }\"}");
  EXPECT_EQ((*records)[0].line, 2);
  EXPECT_EQ((*records)[1].text, "{\"b\": [1, {\"c\": 2}]}");
  EXPECT_EQ((*records)[1].line, 3);
  EXPECT_EQ((*records)[2].text, "{broken}");
  EXPECT_EQ((*records)[2].line, 4);
  EXPECT_EQ((*records)[3].text, "42");
  EXPECT_EQ((*records)[3].line, 5);

  EXPECT_TRUE(SplitJsonList("[]")->empty());
  EXPECT_TRUE(SplitJsonList(" \n[ \n ] \n")->empty());
}

TEST(DataSourceTest, BrokenJsonListsAreErrors) {
  auto unclosed = SplitJsonList("[\n{\"a\": 1},\n{\"b\": \"never closed}\n");
  ASSERT_FALSE(unclosed.ok());
  EXPECT_NE(unclosed.status().message().find("never closed"), std::string::npos);
  EXPECT_NE(unclosed.status().message().find("line 3"), std::string::npos)
      << unclosed.status();
  EXPECT_FALSE(SplitJsonList("{\"a\": 1}").ok());
  auto trailing = SplitJsonList("[1]\n[2]");
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.status().message().find("line 2"), std::string::npos);
}

TEST(DataSourceTest, CountLines) {
  EXPECT_EQ(CountLines(""), 0);
  EXPECT_EQ(CountLines("a"), 1);
  EXPECT_EQ(CountLines("a\n"), 1);
  EXPECT_EQ(CountLines("a\nb"), 2);
  EXPECT_EQ(CountLines("\n\n"), 2);
}

TEST(DataSourceTest, ParseDataFormat) {
  EXPECT_EQ(*ParseDataFormat("chat"), DataFormat::kChat);
  EXPECT_EQ(*ParseDataFormat("alpaca"), DataFormat::kAlpaca);
  EXPECT_EQ(*ParseDataFormat("text"), DataFormat::kText);
  EXPECT_EQ(*ParseDataFormat("auto"), DataFormat::kAuto);
  EXPECT_FALSE(ParseDataFormat("csv").ok());
}

TEST(DataSourceTest, ReadInputFilesErrorsNameThePath) {
  const std::string dir = testing::ScratchDir("read_errors");
  auto missing = ReadInputFiles(dir + "/nope.txt", 1 << 20);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope.txt"), std::string::npos);

  auto empty = ReadInputFiles(Write(dir, "empty.jsonl", " \n\n"), 1 << 20);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("is empty"), std::string::npos) << empty.status();

  const std::string big = Write(dir, "big.txt", std::string(1000, 'a'));
  auto capped = ReadInputFiles(big, 999);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(capped.status().message().find("1000 bytes"), std::string::npos) << capped.status();
  EXPECT_TRUE(ReadInputFiles(big, 1000).ok());

  std::filesystem::create_directories(dir + "/no_txt");
  Write(dir + "/no_txt", "data.json", "[]");
  auto no_txt = ReadInputFiles(dir + "/no_txt", 1 << 20);
  ASSERT_FALSE(no_txt.ok());
  EXPECT_NE(no_txt.status().message().find("no .txt files"), std::string::npos);
}

TEST(DataSourceTest, FolderOfTextFilesIsSortedAndCappedInTotal) {
  const std::string dir = testing::ScratchDir("folder");
  Write(dir, "b.txt", "second");
  Write(dir, "a.txt", "first");
  Write(dir, "ignored.md", "not text data");
  auto files = ReadInputFiles(dir, 1 << 20);
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[0].content, "first");
  EXPECT_EQ((*files)[1].content, "second");
  EXPECT_EQ(*DetectFormat(dir, *files), DataFormat::kText);
  // 11 bytes in all: each file fits under 10, both together do not.
  EXPECT_EQ(ReadInputFiles(dir, 10).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(DataSourceTest, DetectFormatFromContent) {
  const std::string dir = testing::ScratchDir("detect");
  auto detect = [&](const std::string& name, const std::string& content) {
    const std::string path = Write(dir, name, content);
    auto files = ReadInputFiles(path, 1 << 20);
    EXPECT_TRUE(files.ok()) << files.status();
    return DetectFormat(path, *files);
  };
  EXPECT_EQ(*detect("a.jsonl", "{\"instruction\": \"x\", \"output\": \"y\"}\n"),
            DataFormat::kAlpaca);
  EXPECT_EQ(*detect("b.json", "[{\"instruction\": \"x\", \"output\": \"y\"}]"),
            DataFormat::kAlpaca);
  // A broken first line does not hide the format of the next.
  EXPECT_EQ(*detect("c.jsonl", "{oops\n{\"messages\": []}\n"), DataFormat::kChat);
  EXPECT_EQ(*detect("d", "Once upon a time"), DataFormat::kText);
  EXPECT_EQ(*detect("e.txt", "{\"messages\": []}"), DataFormat::kText);
  auto unknown = detect("f.jsonl", "{\"question\": \"x\", \"answer\": \"y\"}\n");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("question"), std::string::npos) << unknown.status();
  EXPECT_FALSE(detect("g.json", "plain words").ok());
}

TEST(DataSourceTest, SharedCorporaAreDetected) {
  const std::string alpaca = testing::SharedPath("data/corpora/alpaca-subset-2k/alpaca_data_2000.json");
  auto files = ReadInputFiles(alpaca, 64 << 20);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(*DetectFormat(alpaca, *files), DataFormat::kAlpaca);
  auto records = SplitJsonList((*files)[0].content);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 2000u);
  EXPECT_EQ((*records)[0].line, 2);
}

}  // namespace
}  // namespace otaro::trainer::data
