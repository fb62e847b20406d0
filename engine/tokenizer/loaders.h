// Building Tokenizers from the files models come with.
#ifndef OTARO_ENGINE_TOKENIZER_LOADERS_H_
#define OTARO_ENGINE_TOKENIZER_LOADERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"

namespace otaro::engine::tokenizer {

// From GGUF metadata: tokenizer.ggml.model ("llama" = SentencePiece, "gpt2" =
// byte-level BPE), tokens, scores, token_type, merges, pre, bos/eos/unk/pad/eot
// ids, add_bos_token / add_eos_token / add_space_prefix, tokenizer.chat_template.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromGguf(const gguf::GgufFile& file);

// From the text of a Hugging Face tokenizer.json (a BPE model: byte-level, or
// SentencePiece-style with byte_fallback and "▁"), plus optionally the text of
// tokenizer_config.json (add_bos_token, bos/eos tokens, chat_template).
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromHfTokenizerJson(
    absl::string_view tokenizer_json, absl::string_view tokenizer_config_json = "");

// From GPT-2 style vocab.json + merges.txt texts with the given pre-tokenizer;
// added/special tokens from tokenizer_config.json's added_tokens_decoder (and
// its bos/eos/chat_template) when given.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromVocabAndMerges(
    absl::string_view vocab_json, absl::string_view merges_txt, const PreTokenizer& pre,
    absl::string_view tokenizer_config_json = "");

// A Hugging Face model or tokenizer folder: tokenizer.json if present, else
// vocab.json + merges.txt with the pre-tokenizer implied by tokenizer_config's
// tokenizer_class (Qwen2Tokenizer, GPT2Tokenizer); tokenizer_config.json and
// generation_config.json (eos ids) are used when present.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromHfDirectory(const std::string& dir);

// A tiktoken file ("base64(token bytes) rank" per line) with special tokens
// appended after the ranks, in order.
struct TiktokenOptions {
  PreTokenizer pre;
  std::vector<std::string> special_tokens;  // ids: n_ranks, n_ranks + 1, ...
  std::string bos_token;
  std::string eos_token;
  std::vector<std::string> end_of_generation_tokens;
  bool add_bos = true;
  std::string chat_template;
};
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromTiktoken(absl::string_view contents,
                                                             const TiktokenOptions& options);
// Meta's LLaMA 3 settings: its split regex and its 256 special tokens
// (<|begin_of_text|> = 128000, ..., <|eot_id|> = 128009, reserved ones).
TiktokenOptions Llama3TiktokenOptions();

// llama2.c's tokenizer.bin (int32 max token length; per token float score,
// int32 length, bytes): a SentencePiece vocabulary with <unk>=0, <s>=1, </s>=2.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromLlama2cTokenizer(absl::string_view contents);

}  // namespace otaro::engine::tokenizer

#endif  // OTARO_ENGINE_TOKENIZER_LOADERS_H_
