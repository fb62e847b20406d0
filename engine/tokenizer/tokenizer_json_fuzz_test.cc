// Runs the tokenizer.json fuzz entry point under gcc over hand-made seeds
// (byte-level with Split/Digits/ByteLevel steps, SentencePiece-style with
// byte fallback) and a few thousand deterministic mutations.
#include <string>
#include <vector>

#include "engine/tokenizer/loaders.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tools/fuzz/fuzz_driver.h"

namespace otaro::engine::tokenizer {
namespace {

std::vector<uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

TEST(TokenizerJsonFuzz, SeedsAndMutationsDoNotCrash) {
  nlohmann::json bl;
  nlohmann::json vocab;
  int id = 0;
  for (const char* p : {"a", "b", "c", "Ġ", "Ċ", "1", "2", "ab", "Ġa", "Ġab", "é", "Ã", "©"}) {
    vocab[p] = id++;
  }
  bl["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", "Ġ a", "Ġa b"}},
                 {"ignore_merges", true}};
  bl["added_tokens"] = {{{"id", id}, {"content", "<s>"}, {"special", true}},
                        {{"id", id + 1}, {"content", "</s>"}, {"special", false}}};
  bl["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Digits"}, {"individual_digits", true}},
        {{"type", "Split"}, {"pattern", {{"Regex", "\\s?\\p{L}+|\\s+(?!\\S)|\\s+"}}},
         {"behavior", "Isolated"}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  bl["decoder"] = {{"type", "ByteLevel"}};
  nlohmann::json spm;
  nlohmann::json v2 = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"<0x41>", 3}, {"<0xC3>", 4},
                       {"▁", 5},     {"a", 6},   {"b", 7},    {"ab", 8},     {"▁ab", 9}};
  spm["model"] = {{"type", "BPE"}, {"vocab", v2}, {"merges", nlohmann::json::array({nlohmann::json::array({"a", "b"}),
                                                 nlohmann::json::array({"▁", "ab"})})},
                  {"byte_fallback", true}, {"unk_token", "<unk>"}};
  spm["pre_tokenizer"] = {{"type", "Metaspace"}, {"prepend_scheme", "first"}};
  std::vector<std::vector<uint8_t>> seeds = {Bytes(bl.dump()), Bytes(spm.dump()),
                                             Bytes(bl.dump(1)), Bytes("{}")};
  // The first two seeds are valid tokenizers.
  EXPECT_TRUE(LoadFromHfTokenizerJson(bl.dump()).ok()) << LoadFromHfTokenizerJson(bl.dump()).status();
  EXPECT_TRUE(LoadFromHfTokenizerJson(spm.dump()).ok()) << LoadFromHfTokenizerJson(spm.dump()).status();
  size_t runs = otaro::fuzz::RunSeedsAndMutations(seeds, 3000, /*rng_seed=*/424242);
  EXPECT_EQ(runs, seeds.size() + 3000);
}

}  // namespace
}  // namespace otaro::engine::tokenizer
