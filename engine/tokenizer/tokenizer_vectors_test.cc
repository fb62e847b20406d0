// llama.cpp's tokenizer test vectors (tests/test-tokenizer-0 format): every
// case of every file must match. As in that test, text is encoded without
// BOS/EOS (add_special = false) and without parsing special tokens.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/testing/shared_data.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/vocab_json.h"
#include "engine/tokenizer/loaders.h"
#include "gtest/gtest.h"

namespace otaro::engine::tokenizer {
namespace {

struct Case {
  std::string text;
  std::vector<TokenId> ids;
};

std::string Read(const std::string& rel) {
  std::string s;
  absl::Status st = ReadFileToString(otaro::testing::SharedPath(rel), &s);
  EXPECT_TRUE(st.ok()) << st;
  return s;
}

std::vector<Case> ReadCases(const std::string& name) {
  std::string inp = Read("data/tokenizer-vectors/ggml-vocab-" + name + ".gguf.inp");
  std::string out = Read("data/tokenizer-vectors/ggml-vocab-" + name + ".gguf.out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos;
  while ((pos = inp.find(sep)) != std::string::npos) {  // as test-tokenizer-0 reads it
    texts.push_back(inp.substr(0, pos));
    inp.erase(0, pos + sep.size());
  }
  std::vector<std::string> lines = absl::StrSplit(out, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  EXPECT_EQ(texts.size(), lines.size()) << name;
  std::vector<Case> cases;
  for (size_t k = 0; k < texts.size() && k < lines.size(); ++k) {
    Case c{texts[k], {}};
    for (absl::string_view t : absl::StrSplit(lines[k], ' ', absl::SkipEmpty())) {
      int id;
      EXPECT_TRUE(absl::SimpleAtoi(t, &id)) << t;
      c.ids.push_back(id);
    }
    cases.push_back(std::move(c));
  }
  return cases;
}

// Returns the number of matching cases; every mismatch is reported.
int CheckAll(const Tokenizer& tok, const std::string& name) {
  std::vector<Case> cases = ReadCases(name.substr(0, name.find(' ')));
  EXPECT_EQ(cases.size(), 46u) << name;
  int ok = 0;
  for (size_t k = 0; k < cases.size(); ++k) {
    std::vector<TokenId> got = tok.Encode(cases[k].text);
    if (got == cases[k].ids) {
      ++ok;
    } else {
      ADD_FAILURE() << name << " case " << k << " \"" << cases[k].text << "\"\n  expected "
                    << absl::StrJoin(cases[k].ids, " ") << "\n  got      "
                    << absl::StrJoin(got, " ");
    }
  }
  std::printf("%s: %d/%zu cases match\n", name.c_str(), ok, cases.size());
  return ok;
}

// The tokenizer after a save/load through vocab_json (how SEFP checkpoints
// carry it): it must encode every vector exactly like the original.
std::unique_ptr<Tokenizer> RoundTrip(const Tokenizer& tok) {
  auto spec = VocabSpecFromJson(VocabSpecToJson(tok.spec()));
  EXPECT_TRUE(spec.ok()) << spec.status();
  if (!spec.ok()) return nullptr;
  auto copy = Tokenizer::Create(*std::move(spec));
  EXPECT_TRUE(copy.ok()) << copy.status();
  return copy.ok() ? std::move(*copy) : nullptr;
}

int CheckAllWithRoundTrip(const Tokenizer& tok, const std::string& name) {
  int ok = CheckAll(tok, name);
  std::unique_ptr<Tokenizer> copy = RoundTrip(tok);
  if (copy == nullptr) return 0;
  EXPECT_EQ(CheckAll(*copy, name + " (saved + reloaded)"), ok);
  return ok;
}

std::unique_ptr<Tokenizer> FromVocabGguf(const std::string& name) {
  auto f = gguf::GgufFile::Open(
      otaro::testing::SharedPath("data/tokenizer-vectors/ggml-vocab-" + name + ".gguf"));
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return nullptr;
  auto t = LoadFromGguf(**f);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

class GgufVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufVectors, AllCasesMatch) {
  std::unique_ptr<Tokenizer> tok = FromVocabGguf(GetParam());
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(CheckAllWithRoundTrip(*tok, GetParam()), 46);
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, GgufVectors,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-llm",
                                           "deepseek-coder"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

TEST(TiktokenVectors, Llama3AllCasesMatch) {
  auto tok = LoadFromTiktoken(Read("data/tokenizers/llama3-tiktoken/tokenizer.model"),
                              Llama3TiktokenOptions());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 128256);
  EXPECT_EQ((*tok)->bos_id(), 128000);
  EXPECT_EQ(*(*tok)->PieceToId("<|eot_id|>"), 128009);
  EXPECT_EQ(*(*tok)->PieceToId("<|reserved_special_token_250|>"), 128255);
  EXPECT_EQ(CheckAllWithRoundTrip(**tok, "llama-bpe"), 46);
}

TEST(VocabMergesVectors, Qwen2AllCasesMatch) {
  auto tok = LoadFromHfDirectory(otaro::testing::SharedPath("data/tokenizers/qwen2"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->pre_tokenizer().name, "qwen2");
  EXPECT_EQ(CheckAllWithRoundTrip(**tok, "qwen2"), 46);
}

}  // namespace
}  // namespace otaro::engine::tokenizer
