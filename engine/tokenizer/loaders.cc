#include "engine/tokenizer/loaders.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "engine/tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace otaro::engine::tokenizer {
namespace {

using nlohmann::json;

// Ids may leave a few gaps (filled with unused placeholders), not absurd ones.
constexpr int64_t kMaxIdGap = 65536;

// Control tokens that end a turn in common chat formats.
constexpr const char* kEogTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                     "<|endoftext|>", "<|eom_id|>", "<EOT>"};

void AddEogByText(VocabSpec* spec) {
  for (const char* text : kEogTexts) {
    for (size_t id = 0; id < spec->tokens.size(); ++id) {
      const TokenInfo& t = spec->tokens[id];
      if (t.piece == text && (t.type == TokenType::kControl || t.type == TokenType::kUserDefined)) {
        spec->eog_ids.push_back(static_cast<TokenId>(id));
      }
    }
  }
}

TokenId FindPiece(const VocabSpec& spec, absl::string_view piece) {
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    if (spec.tokens[id].piece == piece) return static_cast<TokenId>(id);
  }
  return kNoToken;
}

absl::StatusOr<json> ParseJson(absl::string_view text, absl::string_view what) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not valid JSON"));
  }
  return j;
}

// "a b" -> {"a", "b"} (split at the first space after the first character,
// as llama.cpp does, so that a merge of a literal space still parses).
std::optional<std::pair<std::string, std::string>> SplitMerge(absl::string_view m) {
  if (m.size() < 3) return std::nullopt;
  size_t sp = m.find(' ', 1);
  if (sp == absl::string_view::npos || sp + 1 >= m.size()) return std::nullopt;
  return std::make_pair(std::string(m.substr(0, sp)), std::string(m.substr(sp + 1)));
}

// tokenizer_config.json's "bos_token": a string or {"content": ...}.
std::optional<std::string> TokenText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

std::string ChatTemplateFromConfig(const json& cfg) {
  if (!cfg.contains("chat_template")) return "";
  const json& ct = cfg["chat_template"];
  if (ct.is_string()) return ct.get<std::string>();
  if (ct.is_array()) {  // [{"name": "default", "template": "..."}, ...]
    for (const json& e : ct) {
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
          e["template"].is_string()) {
        return e["template"].get<std::string>();
      }
    }
  }
  return "";
}

// Applies tokenizer_config.json: added_tokens_decoder, bos/eos, add_bos/eos,
// chat_template.
absl::Status ApplyTokenizerConfig(absl::string_view config_text, VocabSpec* spec) {
  if (config_text.empty()) return absl::OkStatus();
  OTARO_ASSIGN_OR_RETURN(json cfg, ParseJson(config_text, "tokenizer_config.json"));
  if (!cfg.is_object()) {
    return absl::InvalidArgumentError("tokenizer_config.json is not a JSON object");
  }
  if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object()) {
    for (const auto& [key, value] : cfg["added_tokens_decoder"].items()) {
      int64_t id;
      if (!absl::SimpleAtoi(key, &id) || id < 0 || !value.is_object() ||
          !value.contains("content") || !value["content"].is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer_config.json: bad added_tokens_decoder entry \"", key, "\""));
      }
      if (id >= static_cast<int64_t>(spec->tokens.size()) + kMaxIdGap) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer_config.json: added token id ", id, " is far past the vocabulary"));
      }
      if (id >= static_cast<int64_t>(spec->tokens.size())) {
        spec->tokens.resize(id + 1, TokenInfo{"", "", 0, TokenType::kUnused});
      }
      TokenInfo& t = spec->tokens[id];
      t.piece = value["content"].get<std::string>();
      t.type = value.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
    }
  }
  auto id_of = [&](const char* key) -> TokenId {
    if (!cfg.contains(key)) return kNoToken;
    std::optional<std::string> text = TokenText(cfg[key]);
    return text ? FindPiece(*spec, *text) : kNoToken;
  };
  if (TokenId b = id_of("bos_token"); b != kNoToken) spec->bos_id = b;
  if (TokenId e = id_of("eos_token"); e != kNoToken) spec->eos_id = e;
  if (TokenId u = id_of("unk_token"); u != kNoToken) spec->unk_id = u;
  if (TokenId p = id_of("pad_token"); p != kNoToken) spec->pad_id = p;
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
    spec->add_bos = cfg["add_bos_token"].get<bool>() && spec->bos_id != kNoToken;
  }
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) {
    spec->add_eos = cfg["add_eos_token"].get<bool>() && spec->eos_id != kNoToken;
  }
  std::string tmpl = ChatTemplateFromConfig(cfg);
  if (!tmpl.empty()) spec->chat_template = tmpl;
  return absl::OkStatus();
}

// Collects the regexes of a tokenizer.json pre_tokenizer (ByteLevel, Split,
// Digits, Sequence). Sets *byte_level when a ByteLevel step is present.
absl::Status CollectPreTokenizer(const json& p, std::vector<std::string>* regexes,
                                 bool* byte_level) {
  if (p.is_null()) return absl::OkStatus();
  if (!p.is_object()) return absl::InvalidArgumentError("pre_tokenizer is not an object");
  std::string type = p.value("type", "");
  if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array()) {
      return absl::InvalidArgumentError("pre_tokenizer Sequence without pretokenizers");
    }
    for (const json& q : p["pretokenizers"]) {
      OTARO_RETURN_IF_ERROR(CollectPreTokenizer(q, regexes, byte_level));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    *byte_level = true;
    if (p.value("add_prefix_space", false)) {
      return absl::UnimplementedError("ByteLevel pre-tokenizer with add_prefix_space is not supported");
    }
    if (p.value("use_regex", true)) {
      regexes->push_back(
          "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
    }
    return absl::OkStatus();
  }
  if (type == "Split") {
    std::string behavior = p.value("behavior", "");
    if (behavior != "Isolated") {
      return absl::UnimplementedError(
          absl::StrCat("Split pre-tokenizer behavior \"", behavior, "\" is not supported"));
    }
    if (p.value("invert", false)) {
      return absl::UnimplementedError("inverted Split pre-tokenizer is not supported");
    }
    const json& pat = p.contains("pattern") ? p["pattern"] : json();
    if (pat.is_object() && pat.contains("Regex") && pat["Regex"].is_string()) {
      regexes->push_back(pat["Regex"].get<std::string>());
    } else if (pat.is_object() && pat.contains("String") && pat["String"].is_string()) {
      std::string lit = pat["String"].get<std::string>();
      regexes->push_back(absl::StrCat("\\Q", lit, "\\E"));
    } else {
      return absl::InvalidArgumentError("Split pre-tokenizer without a pattern");
    }
    return absl::OkStatus();
  }
  if (type == "Digits") {
    regexes->push_back(p.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+");
    return absl::OkStatus();
  }
  if (type == "Metaspace") return absl::OkStatus();  // handled as SentencePiece style
  return absl::UnimplementedError(absl::StrCat("pre_tokenizer type \"", type, "\" is not supported"));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfJsonImpl(absl::string_view tokenizer_json,
                                                          absl::string_view config_json) {
  OTARO_ASSIGN_OR_RETURN(json j, ParseJson(tokenizer_json, "tokenizer.json"));
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) {
    return absl::InvalidArgumentError("tokenizer.json has no \"model\" object");
  }
  const json& model = j["model"];
  std::string mtype = model.value("type", "BPE");
  if (mtype != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat("tokenizer.json model type \"", mtype, "\" is not supported (only BPE)"));
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError("tokenizer.json model has no vocab object");
  }
  VocabSpec spec;
  const json& vocab = model["vocab"];
  const int64_t n_vocab = static_cast<int64_t>(vocab.size());
  const json empty_array = json::array();
  const json& added = j.contains("added_tokens") && j["added_tokens"].is_array()
                          ? j["added_tokens"]
                          : empty_array;
  const int64_t limit = n_vocab + static_cast<int64_t>(added.size()) + kMaxIdGap;
  std::vector<bool> seen;
  for (const auto& [piece, idv] : vocab.items()) {
    if (!idv.is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: vocab entry \"", piece,
                                                     "\" has a non-integer id"));
    }
    int64_t id = idv.get<int64_t>();
    if (id < 0 || id >= limit) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: vocab id ", id, " of \"", piece, "\" is out of range"));
    }
    if (id >= static_cast<int64_t>(spec.tokens.size())) {
      spec.tokens.resize(id + 1, TokenInfo{"", "", 0, TokenType::kUnused});
      seen.resize(id + 1, false);
    }
    if (seen[id]) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: vocab id ", id, " is used twice"));
    }
    seen[id] = true;
    spec.tokens[id] = TokenInfo{piece, "", -static_cast<float>(id), TokenType::kNormal};
  }
  for (const json& a : added) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string()) {
      return absl::InvalidArgumentError("tokenizer.json: malformed added_tokens entry");
    }
    int64_t id = a["id"].get<int64_t>();
    if (id < 0 || id >= limit) {
      return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: added token id ", id,
                                                     " is out of range"));
    }
    if (id >= static_cast<int64_t>(spec.tokens.size())) {
      spec.tokens.resize(id + 1, TokenInfo{"", "", 0, TokenType::kUnused});
    }
    TokenInfo& t = spec.tokens[id];
    t.piece = a["content"].get<std::string>();
    t.type = a.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
  }
  if (model.contains("merges") && model["merges"].is_array()) {
    for (const json& m : model["merges"]) {
      if (m.is_string()) {
        auto pair = SplitMerge(m.get<std::string>());
        if (!pair) {
          return absl::InvalidArgumentError(
              absl::StrCat("tokenizer.json: malformed merge \"", m.get<std::string>(), "\""));
        }
        spec.merges.push_back(*pair);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        return absl::InvalidArgumentError("tokenizer.json: malformed merge entry");
      }
    }
  }
  spec.ignore_merges = model.value("ignore_merges", false);
  const bool byte_fallback = model.value("byte_fallback", false);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    spec.unk_id = FindPiece(spec, model["unk_token"].get<std::string>());
  }

  bool byte_level = false;
  std::vector<std::string> regexes;
  OTARO_RETURN_IF_ERROR(CollectPreTokenizer(
      j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), &regexes, &byte_level));
  if (j.contains("decoder") && j["decoder"].is_object() &&
      j["decoder"].value("type", "") == "ByteLevel") {
    byte_level = true;
  }
  if (byte_level) {
    spec.kind = ModelKind::kByteLevelBpe;
    spec.pre.name = "tokenizer.json";
    spec.pre.regexes = regexes;
    if (spec.pre.regexes.empty()) {
      return absl::UnimplementedError("byte-level tokenizer.json without a pre-tokenizer regex");
    }
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      std::string nt = j["normalizer"].is_object() ? j["normalizer"].value("type", "") : "";
      if (nt != "NFC") {  // NFC is not applied: exact for input that is already NFC
        return absl::UnimplementedError(
            absl::StrCat("byte-level tokenizer.json normalizer \"", nt, "\" is not supported"));
      }
    }
  } else if (byte_fallback) {
    // SentencePiece-style BPE: "▁" for spaces, a dummy prefix, <0xNN> bytes.
    spec.kind = ModelKind::kSentencePiece;
    spec.add_space_prefix = true;
    for (TokenInfo& t : spec.tokens) {
      if (t.type == TokenType::kNormal && t.piece.size() == 6 && t.piece.rfind("<0x", 0) == 0 &&
          t.piece[5] == '>') {
        t.type = TokenType::kByte;
      }
    }
    if (j.contains("pre_tokenizer") && j["pre_tokenizer"].is_object() &&
        j["pre_tokenizer"].value("type", "") == "Metaspace") {
      std::string scheme = j["pre_tokenizer"].value("prepend_scheme", "always");
      spec.add_space_prefix = scheme != "never";
    }
    if (spec.merges.empty()) {
      return absl::InvalidArgumentError("SentencePiece-style tokenizer.json without merges");
    }
  } else {
    return absl::UnimplementedError(
        "tokenizer.json is neither byte-level BPE nor SentencePiece-style BPE (byte_fallback)");
  }
  if (spec.unk_id != kNoToken) spec.tokens[spec.unk_id].type = TokenType::kUnknown;

  // BOS from the post-processor template ("<s> $A" style).
  if (j.contains("post_processor") && j["post_processor"].is_object()) {
    const json& pp = j["post_processor"];
    if (pp.value("type", "") == "TemplateProcessing" && pp.contains("single") &&
        pp["single"].is_array() && !pp["single"].empty()) {
      const json& first = pp["single"][0];
      if (first.is_object() && first.contains("SpecialToken") &&
          first["SpecialToken"].is_object() && first["SpecialToken"].contains("id") &&
          first["SpecialToken"]["id"].is_string()) {
        TokenId b = FindPiece(spec, first["SpecialToken"]["id"].get<std::string>());
        if (b != kNoToken) {
          spec.bos_id = b;
          spec.add_bos = true;
        }
      }
    }
  }
  OTARO_RETURN_IF_ERROR(ApplyTokenizerConfig(config_json, &spec));
  AddEogByText(&spec);
  return Tokenizer::Create(std::move(spec));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromGguf(const gguf::GgufFile& f) {
  OTARO_ASSIGN_OR_RETURN(absl::string_view model, f.GetString("tokenizer.ggml.model"));
  VocabSpec spec;
  if (model == "llama") {
    spec.kind = ModelKind::kSentencePiece;
  } else if (model == "gpt2") {
    spec.kind = ModelKind::kByteLevelBpe;
  } else {
    return absl::UnimplementedError(absl::StrCat("GGUF tokenizer model \"", model,
                                                 "\" is not supported (only llama, gpt2)"));
  }
  OTARO_ASSIGN_OR_RETURN(std::vector<absl::string_view> tokens,
                         f.GetStringArray("tokenizer.ggml.tokens"));
  spec.tokens.resize(tokens.size());
  for (size_t k = 0; k < tokens.size(); ++k) spec.tokens[k].piece = std::string(tokens[k]);
  if (f.Has("tokenizer.ggml.scores")) {
    OTARO_ASSIGN_OR_RETURN(std::vector<float> scores, f.GetFloatArray("tokenizer.ggml.scores"));
    if (scores.size() != tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF has ", tokens.size(), " tokens but ",
                                                     scores.size(), " scores"));
    }
    for (size_t k = 0; k < scores.size(); ++k) spec.tokens[k].score = scores[k];
  }
  if (f.Has("tokenizer.ggml.token_type")) {
    OTARO_ASSIGN_OR_RETURN(std::vector<int64_t> types,
                           f.GetInt64Array("tokenizer.ggml.token_type"));
    if (types.size() != tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF has ", tokens.size(), " tokens but ",
                                                     types.size(), " token types"));
    }
    for (size_t k = 0; k < types.size(); ++k) {
      int64_t t = types[k];
      spec.tokens[k].type = (t >= 0 && t <= 6) ? static_cast<TokenType>(t) : TokenType::kNormal;
    }
  }
  if (spec.kind == ModelKind::kByteLevelBpe) {
    OTARO_ASSIGN_OR_RETURN(std::vector<absl::string_view> merges,
                           f.GetStringArray("tokenizer.ggml.merges"));
    spec.merges.reserve(merges.size());
    for (size_t k = 0; k < merges.size(); ++k) {
      auto pair = SplitMerge(merges[k]);
      if (!pair) {
        return absl::InvalidArgumentError(
            absl::StrCat("GGUF merge ", k, " \"", merges[k], "\" is not \"left right\""));
      }
      spec.merges.push_back(std::move(*pair));
    }
    std::string pre = "default";
    if (f.Has("tokenizer.ggml.pre")) {
      OTARO_ASSIGN_OR_RETURN(absl::string_view p, f.GetString("tokenizer.ggml.pre"));
      pre = std::string(p);
    }
    // llama.cpp falls back to a generic GPT-2 style split for "default".
    OTARO_ASSIGN_OR_RETURN(spec.pre, PreTokenizerByName(pre == "default" ? "gpt-2" : pre));
    spec.ignore_merges = spec.pre.name == "llama3" || spec.pre.name == "llama-bpe";
  }
  const int64_t n = static_cast<int64_t>(tokens.size());
  auto id_key = [&](const char* key, TokenId* out) -> absl::Status {
    if (!f.Has(key)) return absl::OkStatus();
    OTARO_ASSIGN_OR_RETURN(int64_t v, f.GetInt64(key));
    *out = (v >= 0 && v < n) ? static_cast<TokenId>(v) : kNoToken;  // 0xFFFFFFFF = none
    return absl::OkStatus();
  };
  OTARO_RETURN_IF_ERROR(id_key("tokenizer.ggml.bos_token_id", &spec.bos_id));
  OTARO_RETURN_IF_ERROR(id_key("tokenizer.ggml.eos_token_id", &spec.eos_id));
  OTARO_RETURN_IF_ERROR(id_key("tokenizer.ggml.unknown_token_id", &spec.unk_id));
  OTARO_RETURN_IF_ERROR(id_key("tokenizer.ggml.padding_token_id", &spec.pad_id));
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    TokenId id = kNoToken;
    OTARO_RETURN_IF_ERROR(id_key(key, &id));
    if (id != kNoToken) spec.eog_ids.push_back(id);
  }
  spec.add_bos = spec.kind == ModelKind::kSentencePiece;
  if (f.Has("tokenizer.ggml.add_bos_token")) {
    OTARO_ASSIGN_OR_RETURN(spec.add_bos, f.GetBool("tokenizer.ggml.add_bos_token"));
  }
  if (f.Has("tokenizer.ggml.add_eos_token")) {
    OTARO_ASSIGN_OR_RETURN(spec.add_eos, f.GetBool("tokenizer.ggml.add_eos_token"));
  }
  if (f.Has("tokenizer.ggml.add_space_prefix")) {
    OTARO_ASSIGN_OR_RETURN(spec.add_space_prefix, f.GetBool("tokenizer.ggml.add_space_prefix"));
  }
  if (spec.add_bos && spec.bos_id == kNoToken) spec.add_bos = false;
  if (spec.add_eos && spec.eos_id == kNoToken) spec.add_eos = false;
  if (f.Has("tokenizer.chat_template")) {
    OTARO_ASSIGN_OR_RETURN(absl::string_view t, f.GetString("tokenizer.chat_template"));
    spec.chat_template = std::string(t);
  }
  AddEogByText(&spec);
  return Tokenizer::Create(std::move(spec));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromHfTokenizerJson(
    absl::string_view tokenizer_json, absl::string_view tokenizer_config_json) {
  try {
    return LoadHfJsonImpl(tokenizer_json, tokenizer_config_json);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed tokenizer JSON: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromVocabAndMerges(
    absl::string_view vocab_json, absl::string_view merges_txt, const PreTokenizer& pre,
    absl::string_view tokenizer_config_json) {
  try {
    OTARO_ASSIGN_OR_RETURN(json vocab, ParseJson(vocab_json, "vocab.json"));
    if (!vocab.is_object()) return absl::InvalidArgumentError("vocab.json is not a JSON object");
    VocabSpec spec;
    spec.kind = ModelKind::kByteLevelBpe;
    spec.pre = pre;
    const int64_t limit = static_cast<int64_t>(vocab.size()) + kMaxIdGap;
    for (const auto& [piece, idv] : vocab.items()) {
      if (!idv.is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat("vocab.json: \"", piece, "\" has no integer id"));
      }
      int64_t id = idv.get<int64_t>();
      if (id < 0 || id >= limit) {
        return absl::InvalidArgumentError(absl::StrCat("vocab.json: id ", id, " is out of range"));
      }
      if (id >= static_cast<int64_t>(spec.tokens.size())) {
        spec.tokens.resize(id + 1, TokenInfo{"", "", 0, TokenType::kUnused});
      }
      spec.tokens[id] = TokenInfo{piece, "", 0, TokenType::kNormal};
    }
    size_t line_no = 0;
    for (absl::string_view line : absl::StrSplit(merges_txt, '\n')) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() || (line_no == 1 && absl::StartsWith(line, "#version"))) continue;
      auto pair = SplitMerge(line);
      if (!pair) {
        return absl::InvalidArgumentError(
            absl::StrCat("merges.txt line ", line_no, " is not \"left right\": \"", line, "\""));
      }
      spec.merges.push_back(std::move(*pair));
    }
    OTARO_RETURN_IF_ERROR(ApplyTokenizerConfig(tokenizer_config_json, &spec));
    AddEogByText(&spec);
    return Tokenizer::Create(std::move(spec));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed tokenizer JSON: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromHfDirectory(const std::string& dir) {
  namespace fs = std::filesystem;
  auto read_if = [&](const char* name, std::string* out) -> absl::StatusOr<bool> {
    fs::path p = fs::path(dir) / name;
    std::error_code ec;
    if (!fs::exists(p, ec)) return false;
    OTARO_RETURN_IF_ERROR(ReadFileToString(p.string(), out));
    return true;
  };
  std::string config, tok_json, generation;
  OTARO_ASSIGN_OR_RETURN(bool has_config, read_if("tokenizer_config.json", &config));
  OTARO_ASSIGN_OR_RETURN(bool has_json, read_if("tokenizer.json", &tok_json));
  OTARO_ASSIGN_OR_RETURN(bool has_gen, read_if("generation_config.json", &generation));
  absl::StatusOr<std::unique_ptr<Tokenizer>> result;
  if (has_json) {
    result = LoadFromHfTokenizerJson(tok_json, config);
  } else {
    std::string vocab, merges;
    OTARO_ASSIGN_OR_RETURN(bool has_vocab, read_if("vocab.json", &vocab));
    OTARO_ASSIGN_OR_RETURN(bool has_merges, read_if("merges.txt", &merges));
    if (!has_vocab || !has_merges) {
      return absl::NotFoundError(absl::StrCat(
          dir, " has no tokenizer.json and no vocab.json + merges.txt: cannot load a tokenizer"));
    }
    std::string cls;
    if (has_config) {
      json cfg = json::parse(config, nullptr, false);
      if (cfg.is_object()) cls = cfg.value("tokenizer_class", "");
    }
    std::string pre_name;
    if (cls == "Qwen2Tokenizer" || cls == "Qwen2TokenizerFast") {
      pre_name = "qwen2";
    } else if (cls == "GPT2Tokenizer" || cls == "GPT2TokenizerFast") {
      pre_name = "gpt-2";
    } else {
      return absl::UnimplementedError(absl::StrCat(
          dir, ": vocab.json + merges.txt with tokenizer_class \"", cls,
          "\": the pre-tokenizer is unknown (supported: Qwen2Tokenizer, GPT2Tokenizer)"));
    }
    OTARO_ASSIGN_OR_RETURN(PreTokenizer pre, PreTokenizerByName(pre_name));
    result = LoadFromVocabAndMerges(vocab, merges, pre, config);
  }
  if (!result.ok()) {
    return absl::Status(result.status().code(), absl::StrCat(dir, ": ", result.status().message()));
  }
  (void)has_gen;  // generation_config eos ids are applied by the model loader
  return result;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromTiktoken(absl::string_view contents,
                                                            const TiktokenOptions& options) {
  VocabSpec spec;
  spec.kind = ModelKind::kByteLevelBpe;
  spec.byte_level_pieces = false;
  spec.ranks_from_ids = true;
  spec.ignore_merges = true;
  spec.pre = options.pre;
  size_t line_no = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(line, ' ');
    std::string bytes;
    int64_t rank;
    if (!absl::Base64Unescape(parts.first, &bytes) || !absl::SimpleAtoi(parts.second, &rank)) {
      return absl::InvalidArgumentError(
          absl::StrCat("tiktoken line ", line_no, " is not \"base64 rank\""));
    }
    if (rank != static_cast<int64_t>(spec.tokens.size())) {
      return absl::InvalidArgumentError(absl::StrCat("tiktoken line ", line_no, " has rank ",
                                                     rank, "; expected ", spec.tokens.size()));
    }
    spec.tokens.push_back(TokenInfo{bytes, bytes, 0, TokenType::kNormal});
  }
  for (const std::string& s : options.special_tokens) {
    spec.tokens.push_back(TokenInfo{s, "", 0, TokenType::kControl});
  }
  auto find = [&](const std::string& text) -> TokenId {
    return text.empty() ? kNoToken : FindPiece(spec, text);
  };
  spec.bos_id = find(options.bos_token);
  spec.eos_id = find(options.eos_token);
  spec.add_bos = options.add_bos && spec.bos_id != kNoToken;
  for (const std::string& e : options.end_of_generation_tokens) {
    TokenId id = find(e);
    if (id != kNoToken) spec.eog_ids.push_back(id);
  }
  spec.chat_template = options.chat_template;
  return Tokenizer::Create(std::move(spec));
}

TiktokenOptions Llama3TiktokenOptions() {
  TiktokenOptions o;
  o.pre = *PreTokenizerByName("llama3");
  o.special_tokens = {"<|begin_of_text|>",
                      "<|end_of_text|>",
                      "<|reserved_special_token_0|>",
                      "<|reserved_special_token_1|>",
                      "<|reserved_special_token_2|>",
                      "<|reserved_special_token_3|>",
                      "<|start_header_id|>",
                      "<|end_header_id|>",
                      "<|reserved_special_token_4|>",
                      "<|eot_id|>"};
  for (int i = 5; i < 256 - 5; ++i) {
    o.special_tokens.push_back(absl::StrCat("<|reserved_special_token_", i, "|>"));
  }
  o.bos_token = "<|begin_of_text|>";
  o.eos_token = "<|end_of_text|>";
  o.end_of_generation_tokens = {"<|eot_id|>"};
  o.add_bos = true;
  return o;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadFromLlama2cTokenizer(absl::string_view contents) {
  if (contents.size() < 4) return absl::InvalidArgumentError("llama2.c tokenizer is truncated");
  size_t pos = 4;  // max_token_length, unused
  VocabSpec spec;
  spec.kind = ModelKind::kSentencePiece;
  while (pos < contents.size()) {
    if (contents.size() - pos < 8) {
      return absl::InvalidArgumentError(
          absl::StrCat("llama2.c tokenizer is truncated at token ", spec.tokens.size()));
    }
    float score;
    int32_t len;
    std::memcpy(&score, contents.data() + pos, 4);
    std::memcpy(&len, contents.data() + pos + 4, 4);
    pos += 8;
    if (len < 0 || static_cast<size_t>(len) > contents.size() - pos) {
      return absl::InvalidArgumentError(absl::StrCat("llama2.c tokenizer token ",
                                                     spec.tokens.size(), " has bad length ", len));
    }
    std::string text(contents.substr(pos, len));
    pos += len;
    TokenInfo t;
    t.score = score;
    // llama2.c stores "▁" as a space and wraps <s> / </s> in newlines.
    std::string piece;
    for (char c : text) {
      if (c == ' ') {
        piece += "\xe2\x96\x81";
      } else {
        piece.push_back(c);
      }
    }
    const size_t id = spec.tokens.size();
    if (id == 0) {
      t.type = TokenType::kUnknown;
    } else if (id == 1 || id == 2) {
      t.type = TokenType::kControl;
      piece = std::string(absl::StripAsciiWhitespace(text));
    } else if (piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece[5] == '>') {
      t.type = TokenType::kByte;
    }
    t.piece = piece;
    spec.tokens.push_back(std::move(t));
  }
  if (spec.tokens.size() < 3) {
    return absl::InvalidArgumentError("llama2.c tokenizer has fewer than 3 tokens");
  }
  spec.unk_id = 0;
  spec.bos_id = 1;
  spec.eos_id = 2;
  spec.add_bos = true;
  return Tokenizer::Create(std::move(spec));
}

}  // namespace otaro::engine::tokenizer
