#include "engine/tokenizer/tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <cstring>
#include <queue>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/tokenizer/utf8.h"

namespace otaro::engine::tokenizer {
namespace {

constexpr absl::string_view kSpmSpace = "\xe2\x96\x81";  // "▁" U+2581

std::string EscapeSpaces(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  for (char c : text) {
    if (c == ' ') {
      out.append(kSpmSpace.data(), kSpmSpace.size());
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string UnescapeSpaces(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    if (text.substr(pos, 3) == kSpmSpace) {
      out.push_back(' ');
      pos += 3;
    } else {
      out.push_back(text[pos++]);
    }
  }
  return out;
}

// "<0x0A>" -> 0x0A.
std::optional<uint8_t> ParseByteToken(absl::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(piece[3]), lo = hex(piece[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

bool IsSpecialType(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUserDefined;
}

// Regexes llama.cpp uses per tokenizer.ggml.pre value (the original Hugging
// Face forms where PCRE2 can take them as they are).
constexpr const char* kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

}  // namespace

absl::StatusOr<PreTokenizer> PreTokenizerByName(absl::string_view name) {
  PreTokenizer p;
  p.name = std::string(name);
  if (name == "gpt-2" || name == "gpt2" || name == "mpt" || name == "olmo" || name == "jais") {
    p.regexes = {kGpt2Regex};
  } else if (name == "llama3" || name == "llama-bpe" || name == "llama-v3" || name == "dbrx" ||
             name == "smaug-bpe") {
    p.regexes = {kLlama3Regex};
  } else if (name == "qwen2" || name == "stablelm2") {
    p.regexes = {kQwen2Regex};
  } else if (name == "smollm" || name == "starcoder" || name == "refact" ||
             name == "command-r" || name == "codeshell" || name == "exaone") {
    p.regexes = {"\\p{N}", kGpt2Regex};
  } else if (name == "deepseek-llm") {
    p.regexes = {
        "[\\r\\n]",
        "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}"
        "\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}"
        "\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"
        "\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"
        "\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
        "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}"
        "\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}"
        "\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
        "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}"
        "\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}"
        "\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}"
        "\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"
        "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
        "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}"
        "\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"
        "\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"
        "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}"
        "\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
        "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"
        "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}"
        "\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
        "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
        "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
        "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
        "\\s+$",
        "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
        "\\p{N}+",
    };
  } else if (name == "deepseek-coder") {
    p.regexes = {
        "[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}",
    };
  } else {
    return absl::UnimplementedError(absl::StrCat(
        "unsupported pre-tokenizer \"", name,
        "\" (supported: gpt-2, llama-bpe/llama3, qwen2, smollm, starcoder, deepseek-llm, "
        "deepseek-coder)"));
  }
  return p;
}

// ---------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::unordered_map<std::string, TokenId> piece_to_id;
  // Byte-level BPE: raw bytes -> id for ordinary tokens.
  std::unordered_map<std::string, TokenId> bytes_to_id;
  // Byte-level BPE: (left id << 32 | right id) -> merge rank.
  std::unordered_map<uint64_t, int32_t> merge_rank;
  // SentencePiece byte fallback.
  TokenId byte_token[256];
  // Special and added tokens, longest text first.
  std::vector<TokenId> specials;
  std::vector<pcre2_code*> regexes;

  Impl() { std::fill(std::begin(byte_token), std::end(byte_token), kNoToken); }
  ~Impl() {
    for (pcre2_code* r : regexes) pcre2_code_free(r);
  }
};

Tokenizer::Tokenizer(VocabSpec spec) : spec_(std::move(spec)), impl_(new Impl()) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(VocabSpec spec) {
  const int64_t n = static_cast<int64_t>(spec.tokens.size());
  if (n == 0) return absl::InvalidArgumentError("tokenizer has an empty vocabulary");
  if (n > (int64_t{1} << 30)) return absl::InvalidArgumentError("vocabulary is absurdly large");
  auto check_id = [&](TokenId id, const char* what) -> absl::Status {
    if (id != kNoToken && (id < 0 || id >= n)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " id ", id, " is outside the vocabulary of ", n, " tokens"));
    }
    return absl::OkStatus();
  };
  for (auto [id, what] : {std::pair{spec.bos_id, "BOS"}, std::pair{spec.eos_id, "EOS"},
                          std::pair{spec.unk_id, "UNK"}, std::pair{spec.pad_id, "PAD"}}) {
    absl::Status s = check_id(id, what);
    if (!s.ok()) return s;
  }
  for (TokenId id : spec.eog_ids) {
    absl::Status s = check_id(id, "end-of-generation");
    if (!s.ok()) return s;
  }
  if (spec.add_bos && spec.bos_id == kNoToken) {
    return absl::InvalidArgumentError("the tokenizer adds BOS but has no BOS token");
  }
  if (spec.add_eos && spec.eos_id == kNoToken) {
    return absl::InvalidArgumentError("the tokenizer adds EOS but has no EOS token");
  }

  std::unique_ptr<Tokenizer> t(new Tokenizer(std::move(spec)));
  VocabSpec& s = t->spec_;
  Impl& impl = *t->impl_;
  impl.piece_to_id.reserve(n * 2);
  for (TokenId id = 0; id < n; ++id) {
    TokenInfo& tok = s.tokens[id];
    impl.piece_to_id[tok.piece] = id;
    if (IsSpecialType(tok.type) && !tok.piece.empty()) impl.specials.push_back(id);
    switch (s.kind) {
      case ModelKind::kSentencePiece:
        if (tok.type == TokenType::kByte) {
          std::optional<uint8_t> b = ParseByteToken(tok.piece);
          if (!b) {
            return absl::InvalidArgumentError(absl::StrCat(
                "token ", id, " \"", tok.piece, "\" has type byte but is not of the form <0xNN>"));
          }
          impl.byte_token[*b] = id;
          tok.bytes = std::string(1, static_cast<char>(*b));
        } else if (tok.type == TokenType::kControl || tok.type == TokenType::kUnknown) {
          tok.bytes.clear();
        } else {
          tok.bytes = UnescapeSpaces(tok.piece);
        }
        break;
      case ModelKind::kByteLevelBpe:
        if (tok.type == TokenType::kControl || tok.type == TokenType::kUnknown) {
          tok.bytes.clear();
        } else if (tok.type == TokenType::kUserDefined || !s.byte_level_pieces) {
          tok.bytes = tok.piece;
        } else {
          std::optional<std::string> raw = ByteLevelDecode(tok.piece);
          tok.bytes = raw ? *raw : tok.piece;
        }
        if (!IsSpecialType(tok.type)) impl.bytes_to_id[tok.bytes] = id;
        break;
    }
  }
  std::stable_sort(impl.specials.begin(), impl.specials.end(), [&](TokenId a, TokenId b) {
    return s.tokens[a].piece.size() > s.tokens[b].piece.size();
  });

  if (s.kind == ModelKind::kSentencePiece) {
    // Vocabularies without typed byte tokens (llama2.c files): find <0xNN>.
    for (int b = 0; b < 256; ++b) {
      if (impl.byte_token[b] != kNoToken) continue;
      auto it = impl.piece_to_id.find(absl::StrFormat("<0x%02X>", b));
      if (it != impl.piece_to_id.end()) impl.byte_token[b] = it->second;
    }
  }
  if (s.kind == ModelKind::kByteLevelBpe && !s.ranks_from_ids && s.merges.empty()) {
    return absl::InvalidArgumentError("byte-level BPE tokenizer has no merges");
  }
  {
    {
      impl.merge_rank.reserve(s.merges.size() * 2);
      for (size_t r = 0; r < s.merges.size(); ++r) {
        const auto& [a, b] = s.merges[r];
        auto ia = impl.piece_to_id.find(a);
        auto ib = impl.piece_to_id.find(b);
        if (ia == impl.piece_to_id.end() || ib == impl.piece_to_id.end()) {
          return absl::InvalidArgumentError(absl::StrCat("merge ", r, " \"", a, " ", b,
                                                         "\" names a token not in the vocabulary"));
        }
        uint64_t key = (static_cast<uint64_t>(ia->second) << 32) | static_cast<uint32_t>(ib->second);
        impl.merge_rank.emplace(key, static_cast<int32_t>(r));  // first (best) rank wins
      }
    }
  }
  if (s.kind == ModelKind::kByteLevelBpe) {
    if (s.pre.regexes.empty()) {
      return absl::InvalidArgumentError("byte-level BPE tokenizer has no pre-tokenizer regex");
    }
    for (const std::string& re : s.pre.regexes) {
      int err = 0;
      PCRE2_SIZE off = 0;
      pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(re.data()), re.size(),
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err,
                                       &off, nullptr);
      if (code == nullptr) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof(msg));
        return absl::InvalidArgumentError(absl::StrCat("pre-tokenizer regex \"", re,
                                                       "\" does not compile at offset ", off,
                                                       ": ", reinterpret_cast<char*>(msg)));
      }
      pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // best effort
      impl.regexes.push_back(code);
    }
  }

  t->eog_.clear();
  if (s.eos_id != kNoToken) t->eog_.push_back(s.eos_id);
  for (TokenId id : s.eog_ids) {
    if (std::find(t->eog_.begin(), t->eog_.end(), id) == t->eog_.end()) t->eog_.push_back(id);
  }
  return t;
}

bool Tokenizer::IsEndOfGeneration(TokenId id) const {
  return std::find(eog_.begin(), eog_.end(), id) != eog_.end();
}

absl::StatusOr<absl::string_view> Tokenizer::TokenPiece(TokenId id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::OutOfRangeError(absl::StrCat("token id ", id, " is outside the vocabulary of ",
                                              vocab_size(), " tokens"));
  }
  return absl::string_view(spec_.tokens[id].piece);
}

absl::StatusOr<absl::string_view> Tokenizer::TokenBytes(TokenId id) const {
  if (id < 0 || id >= vocab_size()) {
    return absl::OutOfRangeError(absl::StrCat("token id ", id, " is outside the vocabulary of ",
                                              vocab_size(), " tokens"));
  }
  const TokenInfo& t = spec_.tokens[id];
  if (t.type == TokenType::kControl || t.type == TokenType::kUnknown) {
    return absl::string_view(t.piece);
  }
  return absl::string_view(t.bytes);
}

TokenType Tokenizer::token_type(TokenId id) const {
  if (id < 0 || id >= vocab_size()) return TokenType::kUndefined;
  return spec_.tokens[id].type;
}

bool Tokenizer::IsSpecial(TokenId id) const { return IsSpecialType(token_type(id)); }

std::optional<TokenId> Tokenizer::PieceToId(absl::string_view piece) const {
  auto it = impl_->piece_to_id.find(std::string(piece));
  if (it == impl_->piece_to_id.end()) return std::nullopt;
  return it->second;
}

// ---------------------------------------------------------------------------
// Encoding.

std::vector<TokenId> Tokenizer::Encode(absl::string_view text, const EncodeOptions& options) const {
  std::vector<TokenId> out;
  if (options.add_special && spec_.add_bos) out.push_back(spec_.bos_id);

  // Split out special / added tokens, longest first.
  struct Fragment {
    bool is_token;
    TokenId id;
    absl::string_view text;
  };
  std::vector<Fragment> frags;
  if (!text.empty()) frags.push_back({false, kNoToken, text});
  for (TokenId sid : impl_->specials) {
    const TokenInfo& st = spec_.tokens[sid];
    if (!options.parse_special &&
        (st.type == TokenType::kControl || st.type == TokenType::kUnknown)) {
      continue;
    }
    const absl::string_view needle = st.piece;
    std::vector<Fragment> next;
    bool changed = false;
    for (const Fragment& f : frags) {
      if (f.is_token || f.text.find(needle) == absl::string_view::npos) {
        next.push_back(f);
        continue;
      }
      changed = true;
      absl::string_view rest = f.text;
      size_t pos;
      while ((pos = rest.find(needle)) != absl::string_view::npos) {
        if (pos > 0) next.push_back({false, kNoToken, rest.substr(0, pos)});
        next.push_back({true, sid, needle});
        rest.remove_prefix(pos + needle.size());
      }
      if (!rest.empty()) next.push_back({false, kNoToken, rest});
    }
    if (changed) frags = std::move(next);
  }

  bool after_special = true;
  for (const Fragment& f : frags) {
    if (f.is_token) {
      out.push_back(f.id);
      after_special = true;
    } else {
      EncodeText(f.text, after_special, &out);
      after_special = false;
    }
  }
  if (options.add_special && spec_.add_eos) out.push_back(spec_.eos_id);
  return out;
}

void Tokenizer::EncodeText(absl::string_view text, bool after_special,
                           std::vector<TokenId>* out) const {
  if (spec_.kind == ModelKind::kSentencePiece) {
    std::string escaped;
    if (spec_.add_space_prefix && after_special) escaped = std::string(kSpmSpace);
    escaped += EscapeSpaces(text);
    EncodeSentencePiece(escaped, out);
    return;
  }
  // Byte-level BPE: isolated splits by each regex in turn.
  std::vector<absl::string_view> pieces = {text};
  pcre2_match_data* md = nullptr;
  for (pcre2_code* re : impl_->regexes) {
    if (md != nullptr) pcre2_match_data_free(md);
    md = pcre2_match_data_create_from_pattern(re, nullptr);
    std::vector<absl::string_view> next;
    for (absl::string_view piece : pieces) {
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t start = 0;      // where the next search begins
      size_t emitted = 0;    // end of what has been pushed
      while (start <= piece.size()) {
        int rc = pcre2_match(re, subject, piece.size(), start, 0, md, nullptr);
        if (rc < 0) break;  // no match (or an error: keep the rest as one piece)
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {  // empty match: step over one character
          if (ms >= piece.size()) break;
          start = ms + Utf8SequenceLength(static_cast<uint8_t>(piece[ms]));
          continue;
        }
        if (ms > emitted) next.push_back(piece.substr(emitted, ms - emitted));
        next.push_back(piece.substr(ms, me - ms));
        emitted = start = me;
      }
      if (emitted < piece.size()) next.push_back(piece.substr(emitted));
    }
    pieces = std::move(next);
  }
  if (md != nullptr) pcre2_match_data_free(md);
  for (absl::string_view w : pieces) EncodeByteLevelWord(w, out);
}

void Tokenizer::EncodeByteLevelWord(absl::string_view word, std::vector<TokenId>* out) const {
  if (word.empty()) return;
  const auto& b2id = impl_->bytes_to_id;
  auto lookup = [&](absl::string_view s) -> TokenId {
    auto it = b2id.find(std::string(s));
    return it == b2id.end() ? kNoToken : it->second;
  };
  if (spec_.ignore_merges) {
    TokenId whole = lookup(word);
    if (whole != kNoToken) {
      out->push_back(whole);
      return;
    }
  }
  struct Sym {
    size_t start, len;
    int prev, next;
    TokenId id;
  };
  const int n = static_cast<int>(word.size());
  std::vector<Sym> syms(n);
  for (int i = 0; i < n; ++i) {
    syms[i] = {static_cast<size_t>(i), 1, i - 1, i + 1 < n ? i + 1 : -1, lookup(word.substr(i, 1))};
  }
  struct Bigram {
    int32_t rank;
    int left, right;
    size_t left_len, right_len;
  };
  auto worse = [](const Bigram& a, const Bigram& b) {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  auto add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    int32_t rank;
    if (spec_.ranks_from_ids) {
      TokenId merged = lookup(word.substr(syms[l].start, syms[l].len + syms[r].len));
      if (merged == kNoToken) return;
      rank = merged;
    } else {
      if (syms[l].id == kNoToken || syms[r].id == kNoToken) return;
      uint64_t key = (static_cast<uint64_t>(syms[l].id) << 32) | static_cast<uint32_t>(syms[r].id);
      auto it = impl_->merge_rank.find(key);
      if (it == impl_->merge_rank.end()) return;
      rank = it->second;
    }
    queue.push({rank, l, r, syms[l].len, syms[r].len});
  };
  for (int i = 0; i + 1 < n; ++i) add(i, i + 1);
  while (!queue.empty()) {
    Bigram b = queue.top();
    queue.pop();
    Sym& l = syms[b.left];
    Sym& r = syms[b.right];
    if (l.len != b.left_len || r.len != b.right_len || l.next != b.right || r.len == 0) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    l.id = lookup(word.substr(l.start, l.len));
    add(l.prev, b.left);
    add(b.left, l.next);
  }
  for (int i = 0; i != -1; i = syms[i].next) {
    const Sym& s = syms[i];
    if (s.id != kNoToken) {
      out->push_back(s.id);
      continue;
    }
    for (size_t k = 0; k < s.len; ++k) {  // should not happen with a sane vocabulary
      TokenId b = lookup(word.substr(s.start + k, 1));
      if (b != kNoToken) {
        out->push_back(b);
      } else if (spec_.unk_id != kNoToken) {
        out->push_back(spec_.unk_id);
      }
    }
  }
}

// SentencePiece BPE as llama.cpp's SPM tokenizer does it: start from UTF-8
// characters, repeatedly merge the adjacent pair whose concatenation is the
// vocabulary token with the highest score (leftmost on ties), then emit each
// symbol, falling back to <0xNN> byte tokens.
void Tokenizer::EncodeSentencePiece(absl::string_view text, std::vector<TokenId>* out) const {
  if (text.empty()) return;
  struct Sym {
    size_t start, len;
    int prev, next;
  };
  std::vector<Sym> syms;
  size_t off = 0;
  int index = 0;
  while (off < text.size()) {
    size_t len = std::min(Utf8SequenceLength(static_cast<uint8_t>(text[off])), text.size() - off);
    off += len;
    syms.push_back({off - len, len, index - 1, off == text.size() ? -1 : index + 1});
    ++index;
  }
  struct Bigram {
    float score;
    int left, right;
    size_t size;
  };
  auto worse = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  auto add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    std::string s(text.substr(syms[l].start, syms[l].len + syms[r].len));
    auto it = impl_->piece_to_id.find(s);
    if (it == impl_->piece_to_id.end()) return;
    float score = spec_.tokens[it->second].score;
    if (!spec_.merges.empty()) {
      // Merges given (tokenizer.json): only listed pairs merge, best rank first.
      auto li = impl_->piece_to_id.find(std::string(text.substr(syms[l].start, syms[l].len)));
      auto ri = impl_->piece_to_id.find(std::string(text.substr(syms[r].start, syms[r].len)));
      if (li == impl_->piece_to_id.end() || ri == impl_->piece_to_id.end()) return;
      uint64_t key = (static_cast<uint64_t>(li->second) << 32) | static_cast<uint32_t>(ri->second);
      auto m = impl_->merge_rank.find(key);
      if (m == impl_->merge_rank.end()) return;
      score = -static_cast<float>(m->second);
    }
    queue.push({score, l, r, s.size()});
  };
  for (size_t i = 1; i < syms.size(); ++i) add(static_cast<int>(i) - 1, static_cast<int>(i));
  while (!queue.empty()) {
    Bigram b = queue.top();
    queue.pop();
    Sym& l = syms[b.left];
    Sym& r = syms[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.size) continue;
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    add(l.prev, b.left);
    add(b.left, l.next);
  }
  // Every merge made a vocabulary token, so a final symbol is a token or a
  // single character that is not one: that goes out as <0xNN> byte tokens.
  for (int i = 0; i != -1; i = syms[i].next) {
    absl::string_view s = text.substr(syms[i].start, syms[i].len);
    auto tok = impl_->piece_to_id.find(std::string(s));
    if (tok != impl_->piece_to_id.end()) {
      out->push_back(tok->second);
      continue;
    }
    for (char c : s) {
      TokenId b = impl_->byte_token[static_cast<uint8_t>(c)];
      if (b == kNoToken) {
        auto single = impl_->piece_to_id.find(std::string(1, c));
        b = single != impl_->piece_to_id.end() ? single->second : spec_.unk_id;
      }
      if (b != kNoToken) out->push_back(b);
    }
  }
}

// ---------------------------------------------------------------------------
// Decoding.

std::string Tokenizer::Decode(absl::Span<const TokenId> ids, const DecodeOptions& options) const {
  std::string out;
  bool first = true;
  for (TokenId id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    const TokenInfo& t = spec_.tokens[id];
    absl::string_view b = t.bytes;
    if (t.type == TokenType::kControl || t.type == TokenType::kUnknown) {
      b = options.render_special ? absl::string_view(t.piece) : absl::string_view();
    }
    if (b.empty()) continue;
    if (first && spec_.kind == ModelKind::kSentencePiece && spec_.add_space_prefix &&
        options.strip_leading_space && b[0] == ' ') {
      b.remove_prefix(1);
    }
    first = false;
    out.append(b.data(), b.size());
  }
  return out;
}

std::string TakeCompleteUtf8(absl::string_view bytes, std::string* rest) {
  std::string out;
  rest->clear();
  size_t pos = 0;
  while (pos < bytes.size()) {
    const uint8_t lead = static_cast<uint8_t>(bytes[pos]);
    const size_t n = Utf8SequenceLength(lead);
    if (n > 1 && pos + n > bytes.size()) {
      // Possibly incomplete: hold back if what is there could still be valid.
      bool plausible = true;
      for (size_t k = pos + 1; k < bytes.size(); ++k) {
        if ((static_cast<uint8_t>(bytes[k]) & 0xC0) != 0x80) plausible = false;
      }
      if (plausible) {
        *rest = std::string(bytes.substr(pos));
        return out;
      }
    }
    size_t p = pos;
    std::optional<uint32_t> cp = DecodeUtf8(bytes, &p);
    if (cp) {
      out.append(bytes.data() + pos, p - pos);
    } else {
      AppendUtf8(0xFFFD, &out);
    }
    pos = p;
  }
  return out;
}

StreamingDecoder::StreamingDecoder(const Tokenizer* tokenizer, DecodeOptions options)
    : tokenizer_(tokenizer), options_(options) {}

std::string StreamingDecoder::Push(TokenId id) {
  // Only the first token with any text loses the SentencePiece prefix space
  // (exactly as Decode does for a whole sequence).
  DecodeOptions o = options_;
  o.strip_leading_space = false;
  std::string piece = tokenizer_->Decode(absl::MakeConstSpan(&id, 1), o);
  if (!piece.empty() && first_) {
    first_ = false;
    o.strip_leading_space = options_.strip_leading_space;
    piece = tokenizer_->Decode(absl::MakeConstSpan(&id, 1), o);
  }
  pending_ += piece;
  std::string rest;
  std::string out = TakeCompleteUtf8(pending_, &rest);
  pending_ = std::move(rest);
  return out;
}

std::string StreamingDecoder::Flush() {
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    size_t p = pos;
    std::optional<uint32_t> cp = DecodeUtf8(pending_, &p);
    if (cp) {
      out.append(pending_.data() + pos, p - pos);
    } else {
      AppendUtf8(0xFFFD, &out);
    }
    pos = p;
  }
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace otaro::engine::tokenizer
