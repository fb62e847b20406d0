// libFuzzer entry point for the fine-tuning dataset readers (BuildDataset,
// which DetectFormat / LoadDataset feed): the first byte picks the format
// (text, Alpaca, chat, or auto-detection), the rest is the file's content. A
// small SentencePiece-style tokenizer with byte fallback and a ChatML template
// tokenises it. Every row is then read back as the trainer reads it.
// Built and run by tools/fuzz/run_all.sh.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "engine/tokenizer/loaders.h"
#include "nlohmann/json.hpp"
#include "trainer/data/data_source.h"
#include "trainer/data/dataset.h"

namespace {

using otaro::engine::tokenizer::Tokenizer;

const Tokenizer& FuzzTokenizer() {
  static const Tokenizer* tok = [] {
    nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
    for (int b = 0; b < 256; ++b) vocab[absl::StrFormat("<0x%02X>", b)] = 3 + b;
    int id = 3 + 256;
    for (const char* p : {"\xe2\x96\x81", "a", "b", "ab", "\xe2\x96\x81" "ab"}) vocab[p] = id++;
    nlohmann::json added = nlohmann::json::array();
    for (const char* s : {"<|im_start|>", "<|im_end|>", "<|endoftext|>"}) {
      added.push_back({{"id", id}, {"content", s}, {"special", true}});
      vocab[s] = id++;
    }
    nlohmann::json tj = {
        {"model",
         {{"type", "BPE"},
          {"vocab", vocab},
          {"merges", nlohmann::json::array({"a b", "\xe2\x96\x81 ab"})},
          {"byte_fallback", true},
          {"unk_token", "<unk>"}}},
        {"added_tokens", added},
        {"pre_tokenizer", {{"type", "Metaspace"}, {"prepend_scheme", "first"}}}};
    nlohmann::json cfg = {
        {"bos_token", "<s>"},
        {"eos_token", "<|im_end|>"},
        {"chat_template",
         "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
         "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
         "%}{{ '<|im_start|>assistant\\n' }}{% endif %}"}};
    auto t = otaro::engine::tokenizer::LoadFromHfTokenizerJson(tj.dump(), cfg.dump());
    if (!t.ok()) {
      fprintf(stderr, "fuzz tokenizer: %s\n", t.status().ToString().c_str());
      abort();
    }
    return t->release();
  }();
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace d = otaro::trainer::data;
  if (size < 1 || size > (1u << 16)) return 0;
  const Tokenizer& tok = FuzzTokenizer();
  std::vector<d::InputFile> files(1);
  files[0].path = "fuzz.jsonl";
  files[0].content.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  d::DataFormat format;
  switch (data[0] % 4) {
    case 0: format = d::DataFormat::kText; files[0].path = "fuzz.txt"; break;
    case 1: format = d::DataFormat::kAlpaca; break;
    case 2: format = d::DataFormat::kChat; break;
    default: {
      files[0].path = "fuzz.data";
      auto detected = d::DetectFormat(files[0].path, files);
      if (!detected.ok()) return 0;
      format = *detected;
    }
  }
  d::DataOptions options;
  options.seq_len = 16 + (data[0] >> 2) % 48;
  options.text_tail = (data[0] & 0x80) ? d::TailPolicy::kPad : d::TailPolicy::kDrop;
  auto loaded = d::BuildDataset(files, format, tok, options);
  if (!loaded.ok()) return 0;
  const d::TokenizedDataset& ds = loaded->data;
  std::vector<int32_t> inputs(options.seq_len), targets(options.seq_len);
  for (int64_t r = 0; r < ds.rows(); ++r) {
    (void)ds.RowTokens(r);
    ds.FillRow(r, inputs.data(), targets.data());
  }
  if (ds.rows() >= 2) (void)d::HoldOutTail(ds, 0.5);
  return 0;
}
