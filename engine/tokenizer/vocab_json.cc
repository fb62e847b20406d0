#include "engine/tokenizer/vocab_json.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace otaro::engine::tokenizer {
namespace {

using nlohmann::json;

// Token strings may hold arbitrary bytes (tiktoken pieces are raw bytes), which
// JSON strings cannot carry: they are stored as arrays of byte values.
json Bytes(const std::string& s) {
  json array = json::array();
  for (unsigned char c : s) array.push_back(static_cast<int>(c));
  return array;
}

bool FromBytes(const json& j, std::string* out) {
  if (!j.is_array()) return false;
  out->clear();
  for (const auto& b : j) {
    if (!b.is_number_integer() || b.get<int>() < 0 || b.get<int>() > 255) return false;
    out->push_back(static_cast<char>(b.get<int>()));
  }
  return true;
}

absl::Status Bad(absl::string_view field) {
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer JSON: field '", field, "' is missing or malformed"));
}

}  // namespace

std::string VocabSpecToJson(const VocabSpec& spec) {
  json j;
  j["version"] = kVocabJsonVersion;
  j["kind"] = spec.kind == ModelKind::kSentencePiece ? "sentencepiece" : "byte_level_bpe";
  json tokens = json::array();
  for (const TokenInfo& t : spec.tokens) {
    tokens.push_back({{"piece", Bytes(t.piece)},
                      {"bytes", Bytes(t.bytes)},
                      {"score", t.score},
                      {"type", static_cast<int>(t.type)}});
  }
  j["tokens"] = std::move(tokens);
  json merges = json::array();
  for (const auto& [a, b] : spec.merges) merges.push_back({Bytes(a), Bytes(b)});
  j["merges"] = std::move(merges);
  j["ranks_from_ids"] = spec.ranks_from_ids;
  j["ignore_merges"] = spec.ignore_merges;
  j["byte_level_pieces"] = spec.byte_level_pieces;
  j["pre_tokenizer"] = {{"name", spec.pre.name}, {"regexes", spec.pre.regexes}};
  j["add_space_prefix"] = spec.add_space_prefix;
  j["bos_id"] = spec.bos_id;
  j["eos_id"] = spec.eos_id;
  j["unk_id"] = spec.unk_id;
  j["pad_id"] = spec.pad_id;
  j["add_bos"] = spec.add_bos;
  j["add_eos"] = spec.add_eos;
  j["eog_ids"] = spec.eog_ids;
  j["chat_template"] = spec.chat_template;
  // Invalid UTF-8 in the template (none in practice) is replaced, not fatal.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<VocabSpec> VocabSpecFromJson(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("tokenizer JSON: not a JSON object");
  }
  if (j.value("version", 0) != kVocabJsonVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer JSON: unsupported version ", j.value("version", 0), " (this build reads ",
        kVocabJsonVersion, ")"));
  }
  VocabSpec spec;
  try {
    const std::string kind = j.at("kind").get<std::string>();
    if (kind == "sentencepiece") {
      spec.kind = ModelKind::kSentencePiece;
    } else if (kind == "byte_level_bpe") {
      spec.kind = ModelKind::kByteLevelBpe;
    } else {
      return Bad("kind");
    }
    const json& tokens = j.at("tokens");
    if (!tokens.is_array()) return Bad("tokens");
    spec.tokens.reserve(tokens.size());
    for (const json& t : tokens) {
      TokenInfo info;
      if (!FromBytes(t.at("piece"), &info.piece) || !FromBytes(t.at("bytes"), &info.bytes)) {
        return Bad("tokens[].piece");
      }
      info.score = t.at("score").get<float>();
      int type = t.at("type").get<int>();
      if (type < 0 || type > static_cast<int>(TokenType::kByte)) return Bad("tokens[].type");
      info.type = static_cast<TokenType>(type);
      spec.tokens.push_back(std::move(info));
    }
    for (const json& m : j.at("merges")) {
      std::pair<std::string, std::string> merge;
      if (!m.is_array() || m.size() != 2 || !FromBytes(m[0], &merge.first) ||
          !FromBytes(m[1], &merge.second)) {
        return Bad("merges");
      }
      spec.merges.push_back(std::move(merge));
    }
    spec.ranks_from_ids = j.at("ranks_from_ids").get<bool>();
    spec.ignore_merges = j.at("ignore_merges").get<bool>();
    spec.byte_level_pieces = j.at("byte_level_pieces").get<bool>();
    spec.pre.name = j.at("pre_tokenizer").at("name").get<std::string>();
    spec.pre.regexes = j.at("pre_tokenizer").at("regexes").get<std::vector<std::string>>();
    spec.add_space_prefix = j.at("add_space_prefix").get<bool>();
    spec.bos_id = j.at("bos_id").get<TokenId>();
    spec.eos_id = j.at("eos_id").get<TokenId>();
    spec.unk_id = j.at("unk_id").get<TokenId>();
    spec.pad_id = j.at("pad_id").get<TokenId>();
    spec.add_bos = j.at("add_bos").get<bool>();
    spec.add_eos = j.at("add_eos").get<bool>();
    spec.eog_ids = j.at("eog_ids").get<std::vector<TokenId>>();
    spec.chat_template = j.at("chat_template").get<std::string>();
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer JSON: ", e.what()));
  }
  return spec;
}

}  // namespace otaro::engine::tokenizer
