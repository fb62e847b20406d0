// Datasets built with real tokenizers: text packing on the TinyStories sample
// (stories260K's SentencePiece vocabulary), Alpaca loss masks on the shared
// 2000-example subset, chat masks through SmolLM2's ChatML template, and the
// malformed-record report. Expected values are computed independently here
// (own document split, own encode of the prompt / rendering, decode of the
// scored targets) rather than taken from the code under test.
#include "trainer/data/dataset.h"

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "engine/tokenizer/chat_template.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "trainer/batch.h"
#include "trainer/data/examples.h"

namespace otaro::trainer::data {
namespace {

using engine::tokenizer::DecodeOptions;
using engine::tokenizer::Tokenizer;
using json = nlohmann::json;

const Tokenizer& Stories() {
  static const Tokenizer* tokenizer = [] {
    auto t = engine::LoadModelTokenizer(
        testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"));
    EXPECT_TRUE(t.ok()) << t.status();
    return t->release();
  }();
  return *tokenizer;
}

// SmolLM2-135M-Instruct's tokenizer (ChatML), or null when the default model
// is not there (tools/test.sh fetches it and sets OTARO_DEFAULT_MODEL).
const Tokenizer* SmolLm2() {
  static const Tokenizer* tokenizer = []() -> const Tokenizer* {
    const char* path = std::getenv("OTARO_DEFAULT_MODEL");
    if (path == nullptr || !std::filesystem::exists(path)) return nullptr;
    auto t = engine::LoadModelTokenizer(path);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? t->release() : nullptr;
  }();
  return tokenizer;
}

std::string WriteTemp(const std::string& name, const std::string& content) {
  static const std::string dir = testing::ScratchDir("dataset_test");
  const std::string path = dir + "/" + name;
  EXPECT_TRUE(WriteFileAtomically(path, content).ok());
  return path;
}

DataOptions Options(int64_t seq_len, DataFormat format = DataFormat::kAuto) {
  DataOptions options;
  options.seq_len = seq_len;
  options.format = format;
  return options;
}

struct Row {
  std::vector<int32_t> inputs, targets;
};
Row GetRow(const TokenizedDataset& data, int64_t r) {
  Row row{std::vector<int32_t>(data.seq_len()), std::vector<int32_t>(data.seq_len())};
  data.FillRow(r, row.inputs.data(), row.targets.data());
  return row;
}

// Maximal runs of scored targets in a row, as [begin, end) positions.
std::vector<std::pair<int64_t, int64_t>> ScoredSpans(const Row& row) {
  std::vector<std::pair<int64_t, int64_t>> spans;
  for (int64_t t = 0; t < static_cast<int64_t>(row.targets.size()); ++t) {
    if (row.targets[t] == kIgnoreTarget) continue;
    if (!spans.empty() && spans.back().second == t) {
      spans.back().second = t + 1;
    } else {
      spans.push_back({t, t + 1});
    }
  }
  return spans;
}

std::string DecodeRaw(const Tokenizer& tok, absl::Span<const int32_t> ids, bool special = false) {
  return tok.Decode(ids, DecodeOptions{.render_special = special, .strip_leading_space = false});
}

// ---------------------------------------------------------------- text

TEST(TextDatasetTest, TinyStoriesWindowsAreContiguousSlicesOfTheTokenStream) {
  const Tokenizer& tok = Stories();
  const std::string path =
      testing::SharedPath("data/corpora/tinystories-sample/tinystories_sample.txt");
  std::string content;
  ASSERT_TRUE(ReadFileToString(path, &content).ok());

  // The stream, built independently: split at the separator, BOS + text + EOS.
  ASSERT_TRUE(tok.add_bos());
  ASSERT_NE(tok.eos_id(), engine::tokenizer::kNoToken);
  std::vector<int32_t> stream;
  int documents = 0;
  for (absl::string_view doc : absl::StrSplit(content, "<|endoftext|>")) {
    doc = absl::StripAsciiWhitespace(doc);
    if (doc.empty()) continue;
    ++documents;
    stream.push_back(tok.bos_id());
    for (int32_t id : tok.Encode(doc)) stream.push_back(id);
    stream.push_back(tok.eos_id());
  }
  ASSERT_GT(documents, 2);

  constexpr int64_t T = 64;
  auto loaded = LoadDataset(path, tok, Options(T));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const DataReport& report = loaded->report;
  std::cout << report.ToString() << "\n";
  EXPECT_EQ(report.format, "text");
  EXPECT_EQ(report.records, documents);
  EXPECT_EQ(report.examples, documents);
  EXPECT_EQ(report.malformed, 0);
  const int64_t windows = static_cast<int64_t>(stream.size()) / (T + 1);
  ASSERT_GT(windows, 5);
  EXPECT_EQ(loaded->data.rows(), windows);
  EXPECT_EQ(report.rows, windows);
  EXPECT_EQ(report.dropped_tail_tokens, static_cast<int64_t>(stream.size()) % (T + 1));
  EXPECT_EQ(report.tokens, windows * (T + 1));
  EXPECT_EQ(report.scored_tokens, windows * T);
  for (int64_t r = 0; r < windows; ++r) {
    const auto first = stream.begin() + r * (T + 1);
    EXPECT_EQ(std::vector<int32_t>(loaded->data.RowTokens(r).begin(),
                                   loaded->data.RowTokens(r).end()),
              std::vector<int32_t>(first, first + T + 1))
        << "window " << r;
    const Row row = GetRow(loaded->data, r);
    EXPECT_EQ(row.inputs, std::vector<int32_t>(first, first + T));
    EXPECT_EQ(row.targets, std::vector<int32_t>(first + 1, first + T + 1));
  }
  EXPECT_NE(DecodeRaw(tok, loaded->data.RowTokens(0)).find("Once upon a time there was a little boy"),
            std::string::npos);

  // Padding the tail keeps every token: one more, shorter row.
  DataOptions pad = Options(T);
  pad.text_tail = TailPolicy::kPad;
  auto padded = LoadDataset(path, tok, pad);
  ASSERT_TRUE(padded.ok()) << padded.status();
  ASSERT_EQ(padded->data.rows(), windows + 1);
  const int64_t tail = static_cast<int64_t>(stream.size()) % (T + 1);
  ASSERT_GE(tail, 2);
  const Row last = GetRow(padded->data, windows);
  const auto tail_begin = stream.begin() + windows * (T + 1);
  for (int64_t t = 0; t < T; ++t) {
    if (t < tail - 1) {
      EXPECT_EQ(last.inputs[t], tail_begin[t]);
      EXPECT_EQ(last.targets[t], tail_begin[t + 1]);
    } else {
      EXPECT_EQ(last.inputs[t], padded->data.pad_id());
      EXPECT_EQ(last.targets[t], kIgnoreTarget);
    }
  }
  EXPECT_EQ(padded->report.tokens, static_cast<int64_t>(stream.size()));
}

TEST(TextDatasetTest, FolderOfTextFilesIsOneStreamInNameOrder) {
  const Tokenizer& tok = Stories();
  const std::string dir = testing::ScratchDir("text_folder");
  ASSERT_TRUE(WriteFileAtomically(dir + "/2.txt", "The cat sat on the mat.").ok());
  ASSERT_TRUE(WriteFileAtomically(dir + "/1.txt", "Once upon a time.").ok());
  DataOptions options = Options(4);
  options.text_tail = TailPolicy::kPad;
  auto loaded = LoadDataset(dir, tok, options);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::vector<int32_t> expected;
  for (const char* text : {"Once upon a time.", "The cat sat on the mat."}) {
    expected.push_back(tok.bos_id());
    for (int32_t id : tok.Encode(text)) expected.push_back(id);
    expected.push_back(tok.eos_id());
  }
  std::vector<int32_t> got;
  for (int64_t r = 0; r < loaded->data.rows(); ++r) {
    for (int32_t id : loaded->data.RowTokens(r)) got.push_back(id);
  }
  // A 1-token tail cannot make a row (nothing to predict), so compare the rest.
  if (got.size() + 1 == expected.size()) expected.pop_back();
  EXPECT_EQ(got, expected);
  EXPECT_EQ(loaded->report.files.size(), 2u);
}

TEST(TextDatasetTest, InvalidUtf8DocumentIsReportedWithItsLine) {
  const std::string path = WriteTemp(
      "bad_utf8.txt",
      "A good story about a dog.\n<|endoftext|>\nAnother good one.\nIt has \xC3\x28 bytes.\n"
      "<|endoftext|>\nA third story about a cat.\n");
  auto loaded = LoadDataset(path, Stories(), Options(8));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->report.records, 3);
  EXPECT_EQ(loaded->report.examples, 2);
  ASSERT_EQ(loaded->report.issues.size(), 1u);
  EXPECT_EQ(loaded->report.issues[0].line, 3);  // where the document starts
  EXPECT_EQ(loaded->report.issues[0].reason, "invalid UTF-8 (first bad byte on line 4)");
}

TEST(TextDatasetTest, TooShortForOneWindowIsAClearError) {
  const std::string path = WriteTemp("short.txt", "Tiny.");
  auto loaded = LoadDataset(path, Stories(), Options(256));
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("fewer than one window"), std::string::npos)
      << loaded.status();
}

// ---------------------------------------------------------------- alpaca

// Checks that `row` scores exactly the tokens of `output` + EOS and that its
// context decodes to the Alpaca prompt.
void ExpectAlpacaRow(const Tokenizer& tok, const Row& row, const json& example) {
  const std::string input = example.value("input", "");
  const std::string prompt = AlpacaPrompt(example["instruction"].get<std::string>(), input);
  const auto spans = ScoredSpans(row);
  ASSERT_EQ(spans.size(), 1u);
  const auto [begin, end] = spans[0];
  std::vector<int32_t> scored(row.targets.begin() + begin, row.targets.begin() + end);
  ASSERT_EQ(scored.back(), tok.eos_id());
  scored.pop_back();
  EXPECT_EQ(DecodeRaw(tok, scored), example["output"].get<std::string>());
  // The context (inputs up to the first scored target) is BOS + the prompt.
  std::vector<int32_t> context(row.inputs.begin(), row.inputs.begin() + begin + 1);
  ASSERT_EQ(context.front(), tok.bos_id());
  EXPECT_EQ(DecodeRaw(tok, absl::MakeConstSpan(context).subspan(1)), " " + prompt);
  // After the response: padding only.
  for (size_t t = end; t < row.targets.size(); ++t) EXPECT_EQ(row.targets[t], kIgnoreTarget);
}

TEST(AlpacaDatasetTest, JsonListScoresExactlyTheResponsePlusEos) {
  const Tokenizer& tok = Stories();
  const std::string path =
      testing::SharedPath("data/corpora/alpaca-subset-2k/alpaca_data_2000.json");
  std::string content;
  ASSERT_TRUE(ReadFileToString(path, &content).ok());
  const json examples = json::parse(content);

  // Long enough for every example (the longest prompt is ~1750 tokens with
  // this 512-token vocabulary), so each row can be checked whole.
  constexpr int64_t T = 2048;
  auto loaded = LoadDataset(path, tok, Options(T));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const DataReport& report = loaded->report;
  std::cout << report.ToString() << "\n";
  EXPECT_EQ(report.format, "alpaca");
  EXPECT_EQ(report.records, 2000);
  EXPECT_EQ(report.malformed, 0) << report.ToString();
  ASSERT_EQ(loaded->data.rows(), 2000);
  int checked = 0, with_input = 0;
  for (int64_t r = 0; r < loaded->data.rows(); ++r) {
    if (loaded->data.RowTokens(r).size() == T + 1) continue;  // truncated: checked elsewhere
    SCOPED_TRACE(absl::StrCat("example ", r));
    ExpectAlpacaRow(tok, GetRow(loaded->data, r), examples[r]);
    ++checked;
    with_input += !examples[r].value("input", "").empty();
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_GT(checked, 1990);
  EXPECT_GT(with_input, 400);
  EXPECT_EQ(report.truncated, 2000 - checked);
  int64_t expected_scored = 0;
  for (int64_t r = 0; r < loaded->data.rows(); ++r) {
    const Row row = GetRow(loaded->data, r);
    expected_scored += T - std::count(row.targets.begin(), row.targets.end(), kIgnoreTarget);
  }
  EXPECT_EQ(report.scored_tokens, expected_scored);
}

TEST(AlpacaDatasetTest, JsonLinesGiveTheSameRowsAsTheJsonList) {
  const Tokenizer& tok = Stories();
  std::string content;
  ASSERT_TRUE(ReadFileToString(
      testing::SharedPath("data/corpora/alpaca-subset-2k/alpaca_data_2000.json"), &content).ok());
  const json examples = json::parse(content);
  std::string jsonl, list = "[\n";
  for (int i = 0; i < 40; ++i) {
    jsonl += examples[i].dump() + "\n";
    list += examples[i].dump(2) + (i < 39 ? ",\n" : "\n]\n");
  }
  auto from_lines = LoadDataset(WriteTemp("alpaca40.jsonl", jsonl), tok, Options(1024));
  auto from_list = LoadDataset(WriteTemp("alpaca40.json", list), tok, Options(1024));
  ASSERT_TRUE(from_lines.ok()) << from_lines.status();
  ASSERT_TRUE(from_list.ok()) << from_list.status();
  ASSERT_EQ(from_lines->data.rows(), 40);
  ASSERT_EQ(from_list->data.rows(), 40);
  for (int64_t r = 0; r < 40; ++r) {
    const Row a = GetRow(from_lines->data, r), b = GetRow(from_list->data, r);
    EXPECT_EQ(a.inputs, b.inputs);
    EXPECT_EQ(a.targets, b.targets);
  }
  EXPECT_EQ(from_lines->report.lines, 40);
}

TEST(AlpacaDatasetTest, LongExamplesAreTruncatedAndShortOnesPadded) {
  const Tokenizer& tok = Stories();
  const std::string long_output = absl::StrJoin(std::vector<std::string>(60, "the dog ran"), " ");
  const std::string data =
      json({{"instruction", "Say hi."}, {"output", "Hi."}}).dump() + "\n" +
      json({{"instruction", "Tell a story."}, {"output", long_output}}).dump() + "\n" +
      json({{"instruction", std::string(2000, 'x')}, {"output", "ok"}}).dump() + "\n";
  constexpr int64_t T = 120;
  auto loaded = LoadDataset(WriteTemp("lengths.jsonl", data), tok, Options(T));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->report.examples, 2);
  EXPECT_EQ(loaded->report.truncated, 1);
  ASSERT_EQ(loaded->report.issues.size(), 1u);
  EXPECT_EQ(loaded->report.issues[0].line, 3);
  EXPECT_NE(loaded->report.issues[0].reason.find("prompt alone fills seq_len 120"),
            std::string::npos)
      << loaded->report.issues[0].reason;

  // Short: response + EOS scored, then padding.
  const Row short_row = GetRow(loaded->data, 0);
  ExpectAlpacaRow(tok, short_row, json({{"instruction", "Say hi."}, {"output", "Hi."}}));
  const int64_t n = static_cast<int64_t>(loaded->data.RowTokens(0).size()) - 1;
  for (int64_t t = n; t < T; ++t) {
    EXPECT_EQ(short_row.inputs[t], loaded->data.pad_id());
    EXPECT_EQ(short_row.targets[t], kIgnoreTarget);
  }
  // Long: a full row whose scored part is the start of the response, no EOS.
  ASSERT_EQ(loaded->data.RowTokens(1).size(), static_cast<size_t>(T + 1));
  const Row long_row = GetRow(loaded->data, 1);
  const auto spans = ScoredSpans(long_row);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].second, T);
  const std::string scored = DecodeRaw(
      tok, std::vector<int32_t>(long_row.targets.begin() + spans[0].first, long_row.targets.end()));
  EXPECT_TRUE(absl::StartsWith(long_output, scored)) << scored;
  EXPECT_GT(scored.size(), 20u);
}

// ---------------------------------------------------------------- chat

TEST(ChatDatasetTest, OnlyAssistantTurnsAreScoredThroughSmolLm2Template) {
  const Tokenizer* tok = SmolLm2();
  if (tok == nullptr) GTEST_SKIP() << "OTARO_DEFAULT_MODEL (SmolLM2 GGUF) not available";
  const std::vector<std::vector<std::pair<std::string, std::string>>> conversations = {
      {{"user", "What is 2+2?"}, {"assistant", "2+2 is 4."}},
      {{"system", "You are terse."},
       {"user", "Name a color."},
       {"assistant", "Blue."},
       {"user", "Another one, please."},
       {"assistant", "Green, like grass in spring."}},
      {{"user", "Hi!"}, {"assistant", " Hello there \n\n"}, {"user", "Bye."}},
  };
  std::string data;
  for (const auto& conversation : conversations) {
    json messages = json::array();
    for (const auto& [role, content] : conversation) {
      messages.push_back({{"role", role}, {"content", content}});
    }
    data += json({{"messages", messages}}).dump() + "\n";
  }
  auto loaded = LoadDataset(WriteTemp("chat.jsonl", data), *tok, Options(512));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->report.format, "chat");
  ASSERT_EQ(loaded->data.rows(), 3);
  auto format = engine::tokenizer::RecognizeChatTemplate(*tok);
  ASSERT_TRUE(format.ok()) << format.status();

  for (size_t c = 0; c < conversations.size(); ++c) {
    SCOPED_TRACE(absl::StrCat("conversation ", c));
    std::vector<engine::tokenizer::ChatMessage> messages;
    std::vector<std::string> assistant;
    for (const auto& [role, content] : conversations[c]) {
      messages.push_back({role, content});
      if (role == "assistant") assistant.push_back(content);
    }
    // The row is the rendered conversation as the engine would encode it.
    auto rendered = RenderChat(*format, messages, false);
    ASSERT_TRUE(rendered.ok());
    const std::vector<int32_t> full = tok->Encode(
        *rendered, {.add_special = tok->add_bos() && !format->renders_bos, .parse_special = true});
    const auto row_tokens = loaded->data.RowTokens(c);
    ASSERT_LE(row_tokens.size(), full.size());
    EXPECT_TRUE(std::equal(row_tokens.begin(), row_tokens.end(), full.begin()));

    const Row row = GetRow(loaded->data, c);
    const auto spans = ScoredSpans(row);
    ASSERT_EQ(spans.size(), assistant.size());
    for (size_t s = 0; s < spans.size(); ++s) {
      const std::vector<int32_t> ids(row.targets.begin() + spans[s].first,
                                     row.targets.begin() + spans[s].second);
      EXPECT_EQ(DecodeRaw(*tok, ids, /*special=*/true), assistant[s] + "<|im_end|>");
    }
    // Nothing after the last assistant turn is kept.
    EXPECT_EQ(spans.back().second, static_cast<int64_t>(row_tokens.size()) - 1);
    // The context holds the system prompt (the template's default when none).
    const std::string context = DecodeRaw(
        *tok, std::vector<int32_t>(row.inputs.begin(), row.inputs.begin() + spans[0].first + 1),
        true);
    EXPECT_TRUE(absl::StartsWith(context, "<|im_start|>system\n")) << context;
    EXPECT_TRUE(absl::EndsWith(context, "<|im_start|>assistant\n")) << context;
  }
}

TEST(ChatDatasetTest, MalformedConversationsAreReported) {
  const Tokenizer* tok = SmolLm2();
  if (tok == nullptr) GTEST_SKIP() << "OTARO_DEFAULT_MODEL (SmolLM2 GGUF) not available";
  const std::string good =
      R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]})";
  const std::string data = absl::StrJoin(
      {good,
       std::string(R"({"messages":[{"role":"user","content":"Hi"}]})"),
       std::string(R"({"messages":[]})"),
       std::string(R"({"messages":[{"role":"robot","content":"beep"}]})"),
       std::string(R"({"messages":[{"role":"user","content":7}]})"),
       std::string(R"({"messages":"hello"})"),
       std::string(R"({"conversation":[]})"),
       good, good, good, good, good, good, good, good},
      "\n");
  auto loaded = LoadDataset(WriteTemp("chat_bad.jsonl", data), *tok, Options(256));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const auto& issues = loaded->report.issues;
  ASSERT_EQ(issues.size(), 6u) << loaded->report.ToString();
  EXPECT_EQ(issues[0].line, 2);
  EXPECT_EQ(issues[0].reason, "no assistant message to learn from");
  EXPECT_EQ(issues[1].reason, "\"messages\" is empty");
  EXPECT_EQ(issues[2].reason, "messages[0].role 'robot' is not system, user or assistant");
  EXPECT_EQ(issues[3].reason, "messages[0]: \"content\" is number, not a string");
  EXPECT_EQ(issues[4].reason, "\"messages\" is string, not a list");
  EXPECT_EQ(issues[5].line, 7);
  EXPECT_EQ(issues[5].reason, "missing \"messages\"");
  EXPECT_EQ(loaded->report.examples, 9);
}

TEST(ChatDatasetTest, ModelWithoutChatTemplateIsRefused) {
  const std::string data =
      R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]})";
  auto loaded = LoadDataset(WriteTemp("chat_stories.jsonl", data), Stories(), Options(64));
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(loaded.status().message().find("chat template"), std::string::npos);
}

// ---------------------------------------------------------------- malformed data

TEST(MalformedDataTest, ReportListsBadLinesWithReasons) {
  const std::string good1 = R"({"instruction": "Name a fruit.", "output": "Apple."})";
  const std::string good2 =
      R"({"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "extra": 1})";
  const std::string good3 = R"({"instruction": "Say yes.", "input": null, "output": "Yes."})";
  const std::vector<std::string> lines = {
      good1,                                             // 1
      "{\"instruction\": \"broken\"",                    // 2 bad JSON
      R"({"instruction": 5, "output": "x"})",            // 3 wrong type
      good2,                                             // 4
      R"({"instruction": "No output."})",                // 5 missing field
      "",                                                // 6 blank: skipped
      "[1, 2]",                                          // 7 not an object
      "{\"instruction\": \"\xFF\", \"output\": \"y\"}",  // 8 invalid UTF-8
      R"({"instruction": "Empty.", "output": "  "})",    // 9 empty field
      good3, good1, good2, good3, good1, good2,          // 10..15
  };
  auto loaded =
      LoadDataset(WriteTemp("mixed.jsonl", absl::StrJoin(lines, "\n") + "\n"), Stories(),
                  Options(256));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const DataReport& report = loaded->report;
  EXPECT_EQ(report.lines, 15);
  EXPECT_EQ(report.records, 14);
  EXPECT_EQ(report.examples, 8);
  EXPECT_EQ(report.malformed, 6);
  EXPECT_EQ(loaded->data.rows(), 8);
  ASSERT_EQ(report.issues.size(), 6u);
  const std::vector<std::pair<int64_t, std::string>> expected = {
      {2, "not valid JSON: "},
      {3, "\"instruction\" is number, not a string"},
      {5, "missing \"output\""},
      {7, "expected a JSON object, found array"},
      {8, "invalid UTF-8"},
      {9, "empty \"output\""},
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(report.issues[i].line, expected[i].first);
    EXPECT_TRUE(absl::StartsWith(report.issues[i].reason, expected[i].second))
        << report.issues[i].reason;
    EXPECT_TRUE(absl::EndsWith(report.issues[i].file, "mixed.jsonl"));
  }
  const std::string text = report.ToString();
  EXPECT_NE(text.find("mixed.jsonl:3: \"instruction\" is number, not a string"), std::string::npos)
      << text;
  EXPECT_NE(text.find("malformed 6 (42.9%)"), std::string::npos) << text;
}

TEST(MalformedDataTest, OnlyTheFirstTwentyIssuesAreListed) {
  std::string data;
  for (int i = 0; i < 25; ++i) data += "{oops\n";
  for (int i = 0; i < 75; ++i) data += R"({"instruction": "Hi.", "output": "Hello."})" "\n";
  auto loaded = LoadDataset(WriteTemp("many_bad.jsonl", data), Stories(), Options(128));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->report.malformed, 25);
  ASSERT_EQ(loaded->report.issues.size(), 20u);
  EXPECT_EQ(loaded->report.issues[19].line, 20);
  EXPECT_NE(loaded->report.ToString().find("... and 5 more"), std::string::npos);
}

TEST(MalformedDataTest, MostlyBrokenDataFailsBeforeTraining) {
  std::string data;
  for (int i = 0; i < 3; ++i) data += R"({"instruction": "Hi.", "output": "Hello."})" "\n";
  for (int i = 0; i < 7; ++i) data += R"({"prompt": "Hi.", "completion": "Hello."})" "\n";
  const std::string path = WriteTemp("mostly_bad.jsonl", data);
  auto loaded = LoadDataset(path, Stories(), Options(128));
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string message(loaded.status().message());
  EXPECT_NE(message.find("70.0% of its records are malformed (limit 50.0%)"), std::string::npos)
      << message;
  EXPECT_NE(message.find("mostly_bad.jsonl:4: missing \"instruction\""), std::string::npos)
      << message;
  // A looser limit accepts it.
  DataOptions loose = Options(128);
  loose.max_malformed_fraction = 0.8;
  EXPECT_TRUE(LoadDataset(path, Stories(), loose).ok());
}

TEST(MalformedDataTest, BadPathsEmptyFilesAndBadOptionsAreClearErrors) {
  const Tokenizer& tok = Stories();
  auto missing = LoadDataset("/nonexistent/data.jsonl", tok, Options(64));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/data.jsonl"), std::string::npos);

  auto empty = LoadDataset(WriteTemp("empty.txt", ""), tok, Options(64));
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.status().message().find("empty"), std::string::npos) << empty.status();

  auto all_bad = LoadDataset(WriteTemp("all_bad.jsonl", "{x\n{y\n"), tok,
                             Options(64, DataFormat::kAlpaca));
  ASSERT_FALSE(all_bad.ok());
  EXPECT_NE(all_bad.status().message().find("no usable alpaca records"), std::string::npos)
      << all_bad.status();

  auto empty_list = LoadDataset(WriteTemp("empty_list.json", "[]"), tok,
                                Options(64, DataFormat::kAlpaca));
  EXPECT_FALSE(empty_list.ok());

  DataOptions capped = Options(64);
  capped.max_bytes = 100;
  auto too_big = LoadDataset(
      testing::SharedPath("data/corpora/tinystories-sample/tinystories_sample.txt"), tok, capped);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(BuildDataset({{"mem", std::string(101, 'a')}}, DataFormat::kText, tok, capped)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);

  EXPECT_EQ(LoadDataset(WriteTemp("ok.txt", "Some text."), tok, Options(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(BuildDataset({{"mem", "x"}}, DataFormat::kAuto, tok, Options(8)).ok());
}

// Random bytes, random JSON fragments and mutated good lines must only ever
// give OK or an error status.
TEST(MalformedDataTest, RandomLinesNeverCrash) {
  const std::vector<std::string> fragments = {
      "{", "}", "[", "]", "\"", ":", ",", "\\", "\"instruction\"", "\"output\"", "\"input\"",
      "\"messages\"", "\"role\"", "\"content\"", "\"assistant\"", "\"user\"", "null", "1e400",
      "\"\\ud800\"", "\xFF", "\xC3", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "\n", " ",
      "\"x\"", "[]", "{}", "true"};
  const std::string good_alpaca = R"({"instruction": "Hi.", "input": "", "output": "Hello."})";
  const std::string good_chat =
      R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Yo"}]})";
  std::mt19937_64 rng(1234);
  int ok = 0, failed = 0;
  for (int round = 0; round < 60; ++round) {
    std::string content;
    for (int line = 0; line < 40; ++line) {
      std::string s;
      switch (rng() % 4) {
        case 0:  // raw bytes
          for (int i = rng() % 60; i > 0; --i) s += static_cast<char>(rng() % 256);
          break;
        case 1:  // JSON-ish fragments
          for (int i = rng() % 20; i > 0; --i) s += fragments[rng() % fragments.size()];
          break;
        default:  // a good line with a few bytes changed
          s = rng() % 2 ? good_alpaca : good_chat;
          for (int i = rng() % 4; i > 0; --i) s[rng() % s.size()] = static_cast<char>(rng() % 256);
      }
      content += s + "\n";
    }
    if (round % 3 == 0) content = "[" + content + "]";
    for (DataFormat format : {DataFormat::kText, DataFormat::kAlpaca, DataFormat::kChat}) {
      const Tokenizer& tok = format == DataFormat::kChat && SmolLm2() != nullptr ? *SmolLm2()
                                                                                 : Stories();
      DataOptions options = Options(1 + static_cast<int64_t>(rng() % 64), format);
      auto loaded = BuildDataset({{"fuzz", content}}, format, tok, options);
      if (loaded.ok()) {
        ++ok;
        // Every row is well formed.
        std::vector<int32_t> inputs(options.seq_len), targets(options.seq_len);
        for (int64_t r = 0; r < loaded->data.rows(); ++r) {
          loaded->data.FillRow(r, inputs.data(), targets.data());
          for (int32_t id : inputs) ASSERT_TRUE(id >= 0 && id < tok.vocab_size());
          for (int32_t id : targets) ASSERT_TRUE(id == kIgnoreTarget || (id >= 0 && id < tok.vocab_size()));
        }
        EXPECT_LE(loaded->report.malformed + loaded->report.examples, loaded->report.records);
      } else {
        ++failed;
        EXPECT_FALSE(loaded.status().message().empty());
      }
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_GT(failed, 0);
}

// ---------------------------------------------------------------- held-out split

TEST(HoldOutTest, LastRowsAreHeldOutInOrder) {
  auto loaded = LoadDataset(
      testing::SharedPath("data/corpora/tinystories-sample/tinystories_sample.txt"), Stories(),
      Options(32));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const TokenizedDataset& all = loaded->data;
  auto split = HoldOutTail(all, 0.1);
  ASSERT_TRUE(split.ok()) << split.status();
  const int64_t eval_rows = (all.rows() + 9) / 10;
  EXPECT_EQ(split->eval.rows(), eval_rows);
  EXPECT_EQ(split->train.rows(), all.rows() - eval_rows);
  for (int64_t r = 0; r < eval_rows; ++r) {
    const auto a = split->eval.RowTokens(r), b = all.RowTokens(all.rows() - eval_rows + r);
    EXPECT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
  }
  EXPECT_EQ(split->eval.seq_len(), 32);
  EXPECT_FALSE(HoldOutTail(all, 0).ok());
  EXPECT_FALSE(HoldOutTail(all, 1).ok());
  EXPECT_FALSE(HoldOutTail(all.Slice(0, 1), 0.5).ok());
  // Tiny fractions still hold out one row; huge ones leave one for training.
  EXPECT_EQ(HoldOutTail(all, 1e-9)->eval.rows(), 1);
  EXPECT_EQ(HoldOutTail(all, 0.999999)->train.rows(), 1);
}

}  // namespace
}  // namespace otaro::trainer::data
