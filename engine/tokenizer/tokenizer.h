// Tokenizers for LLaMA-family models: SentencePiece-style BPE (LLaMA 2,
// TinyLlama, stories260K: scores, byte fallback, the leading "▁") and
// byte-level BPE (GPT-2, LLaMA 3, SmolLM2, Qwen2, DeepSeek: a pre-tokenizer
// regex, then merges by rank). Behaviour follows llama.cpp / Hugging Face
// tokenizers, verified against llama.cpp's tokenizer test vectors.
//
// A Tokenizer is immutable after loading and safe to use from many threads.
// Loaders live in loaders.h.
#ifndef OTARO_ENGINE_TOKENIZER_TOKENIZER_H_
#define OTARO_ENGINE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace otaro::engine::tokenizer {

using TokenId = int32_t;
constexpr TokenId kNoToken = -1;

// Token kinds (the values of GGUF's tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,       // <s>, </s>, <|im_start|>, ...: special, not text
  kUserDefined = 4,   // added tokens that are matched as text before BPE
  kUnused = 5,
  kByte = 6,          // <0xNN> byte fallback tokens
};

enum class ModelKind {
  kSentencePiece,  // scores + byte fallback, spaces as "▁"
  kByteLevelBpe,   // GPT-2 byte-level BPE with merges / ranks
};

// How text is split before byte-level BPE: each regex in turn splits every
// piece into matches and the text between them ("isolated" splitting, as
// Hugging Face's Split pre-tokenizer and llama.cpp do).
struct PreTokenizer {
  std::string name;                  // e.g. "llama3", "qwen2", "gpt-2"
  std::vector<std::string> regexes;  // PCRE2 syntax, applied in order
};

// The pre-tokenizer llama.cpp uses for a tokenizer.ggml.pre value ("gpt-2",
// "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "smollm", ...).
absl::StatusOr<PreTokenizer> PreTokenizerByName(absl::string_view name);

struct TokenInfo {
  std::string piece;  // the vocabulary's string for the token
  std::string bytes;  // what the token contributes to decoded text
  float score = 0;
  TokenType type = TokenType::kNormal;
};

// Everything a tokenizer is built from; loaders fill it in.
struct VocabSpec {
  ModelKind kind = ModelKind::kSentencePiece;
  std::vector<TokenInfo> tokens;  // indexed by id; `bytes` may be left empty
  // Byte-level BPE: merges as pairs of vocabulary pieces (byte-level encoded
  // strings), highest priority first. Empty with `ranks_from_ids` set means
  // tiktoken semantics: a pair's rank is the id of the merged token.
  std::vector<std::pair<std::string, std::string>> merges;
  bool ranks_from_ids = false;
  // Byte-level BPE: use a whole pre-token directly when it is in the vocabulary
  // (Hugging Face "ignore_merges", tiktoken).
  bool ignore_merges = false;
  // Byte-level BPE: pieces are GPT-2 byte-level encoded (false: raw bytes, as
  // in tiktoken files).
  bool byte_level_pieces = true;
  PreTokenizer pre;
  // SentencePiece: prepend a space to the text (and to text after a special
  // token), as SentencePiece's add_dummy_prefix does.
  bool add_space_prefix = true;
  TokenId bos_id = kNoToken;
  TokenId eos_id = kNoToken;
  TokenId unk_id = kNoToken;
  TokenId pad_id = kNoToken;
  bool add_bos = false;
  bool add_eos = false;
  // Extra ids that end a generation (e.g. <|eot_id|>, <|im_end|>).
  std::vector<TokenId> eog_ids;
  std::string chat_template;  // the model's own Jinja template, if any
};

struct EncodeOptions {
  // Add BOS (and EOS) when the model asks for them (add_bos / add_eos).
  bool add_special = false;
  // Recognise the text of control tokens such as "<|im_start|>" in the input
  // (trusted text such as a rendered chat template). User-defined added
  // tokens are always recognised, as in Hugging Face and llama.cpp.
  bool parse_special = false;
};

struct DecodeOptions {
  // Render control tokens (BOS, <|im_end|>, ...) as their text instead of
  // dropping them.
  bool render_special = false;
  // SentencePiece: drop the space that add_space_prefix put before the first
  // word (as SentencePiece's decoder does).
  bool strip_leading_space = true;
};

class Tokenizer {
 public:
  // Validates `spec` (ids in range, byte tokens present for byte fallback,
  // merges that name real tokens, regexes that compile) and builds the tables.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(VocabSpec spec);
  ~Tokenizer();

  // Everything the tokenizer was built from (for saving it; see vocab_json.h).
  const VocabSpec& spec() const { return spec_; }
  ModelKind kind() const { return spec_.kind; }
  const PreTokenizer& pre_tokenizer() const { return spec_.pre; }
  int32_t vocab_size() const { return static_cast<int32_t>(spec_.tokens.size()); }
  TokenId bos_id() const { return spec_.bos_id; }
  TokenId eos_id() const { return spec_.eos_id; }
  TokenId unk_id() const { return spec_.unk_id; }
  TokenId pad_id() const { return spec_.pad_id; }
  bool add_bos() const { return spec_.add_bos; }
  bool add_eos() const { return spec_.add_eos; }
  const std::string& chat_template() const { return spec_.chat_template; }
  // EOS plus the other end-of-generation tokens.
  const std::vector<TokenId>& end_of_generation_ids() const { return eog_; }
  bool IsEndOfGeneration(TokenId id) const;

  std::vector<TokenId> Encode(absl::string_view text, const EncodeOptions& options = {}) const;

  // Raw bytes of the decoded text (may end in an incomplete UTF-8 character;
  // see StreamingDecoder for text to show). Out-of-range ids decode to "".
  std::string Decode(absl::Span<const TokenId> ids, const DecodeOptions& options = {}) const;

  // The vocabulary string of a token ("▁Hello", "Ġworld", "<0x0A>"), or an
  // OutOfRange error.
  absl::StatusOr<absl::string_view> TokenPiece(TokenId id) const;
  // The bytes a token decodes to (special tokens: their text).
  absl::StatusOr<absl::string_view> TokenBytes(TokenId id) const;
  TokenType token_type(TokenId id) const;
  bool IsSpecial(TokenId id) const;  // control / unknown / user-defined
  // Looks a token up by its vocabulary string.
  std::optional<TokenId> PieceToId(absl::string_view piece) const;

 private:
  struct Impl;
  explicit Tokenizer(VocabSpec spec);
  void EncodeText(absl::string_view text, bool after_special, std::vector<TokenId>* out) const;
  void EncodeSentencePiece(absl::string_view text, std::vector<TokenId>* out) const;
  void EncodeByteLevelWord(absl::string_view word, std::vector<TokenId>* out) const;

  VocabSpec spec_;
  std::vector<TokenId> eog_;
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of token ids into text that never splits a multi-byte UTF-8
// character: Push returns only complete characters and holds back the bytes
// of one that is still incomplete; invalid bytes become U+FFFD.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer* tokenizer, DecodeOptions options = {});
  // Text completed by `id` (valid UTF-8, possibly empty).
  std::string Push(TokenId id);
  // Whatever is held back (an incomplete character becomes U+FFFD); resets.
  std::string Flush();
  // Bytes currently held back.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  DecodeOptions options_;
  bool first_ = true;
  std::string pending_;
};

// Splits `bytes` into the longest valid UTF-8 prefix that does not end inside
// a character that could still be completed, replacing invalid bytes with
// U+FFFD; the held-back tail goes to *rest.
std::string TakeCompleteUtf8(absl::string_view bytes, std::string* rest);

}  // namespace otaro::engine::tokenizer

#endif  // OTARO_ENGINE_TOKENIZER_TOKENIZER_H_
