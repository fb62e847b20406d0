#include "engine/model/export.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/float16.h"
#include "common/safetensors/safetensors.h"
#include "common/status_macros.h"
#include "engine/formats/gguf.h"
#include "engine/formats/gguf_writer.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"
#include "sefp/checkpoint.h"

namespace otaro::engine {
namespace {

using nlohmann::json;
using tokenizer::ModelKind;
using tokenizer::TokenType;
using tokenizer::VocabSpec;

bool IsLinear(absl::string_view name) { return absl::EndsWith(name, "_proj.weight"); }

std::string PrecisionLabel(int bits, sefp::Reconstruction mode) {
  return absl::StrCat("E5M", bits, " (", sefp::ReconstructionName(mode), ")");
}

// A SEFP checkpoint's weights at one precision: linear layers decoded from
// their planes at E5M<bits>, everything else as stored.
class SefpAtPrecision final : public TensorSource {
 public:
  SefpAtPrecision(std::unique_ptr<sefp::CheckpointReader> reader, ModelConfig config,
                  std::string path, int bits)
      : reader_(std::move(reader)), config_(std::move(config)), path_(std::move(path)),
        bits_(bits) {}

  std::vector<std::string> Names() const override { return ExpectedTensorNames(config_); }
  bool Has(absl::string_view name) const override {
    return reader_->quantized_shapes().count(std::string(name)) > 0 ||
           reader_->FindDense(std::string(name)) != nullptr;
  }
  absl::StatusOr<std::vector<int64_t>> Shape(absl::string_view name) const override {
    if (auto it = reader_->quantized_shapes().find(std::string(name));
        it != reader_->quantized_shapes().end()) {
      return std::vector<int64_t>{it->second.first, it->second.second};
    }
    if (const safetensors::TensorView* view = reader_->FindDense(std::string(name))) {
      return view->shape;
    }
    return absl::NotFoundError(absl::StrCat("tensor '", name, "' missing from ", path_));
  }
  absl::StatusOr<std::vector<float>> ReadFloat32(absl::string_view name) const override {
    if (reader_->quantized_shapes().count(std::string(name)) > 0) {
      OTARO_ASSIGN_OR_RETURN(sefp::SefpTensor tensor, reader_->LoadQuantized(std::string(name)));
      return tensor.DecodeAll(bits_, reader_->metadata().reconstruction);
    }
    const safetensors::TensorView* view = reader_->FindDense(std::string(name));
    if (view == nullptr) {
      return absl::NotFoundError(absl::StrCat("tensor '", name, "' missing from ", path_));
    }
    return view->ToFloat32();
  }
  std::string StorageType(absl::string_view name) const override {
    return reader_->quantized_shapes().count(std::string(name)) > 0 ? absl::StrCat("SEFP E5M", bits_)
                                                                    : "F32";
  }
  std::string Describe() const override {
    return absl::StrCat("SEFP checkpoint ", path_, " at ",
                        PrecisionLabel(bits_, reader_->metadata().reconstruction));
  }

 private:
  std::unique_ptr<sefp::CheckpointReader> reader_;
  ModelConfig config_;
  std::string path_;
  int bits_;
};

// A float source seen as the engine serves it at E5M<bits>: each linear layer
// SEFP-encoded, then decoded at that precision.
class FloatAtPrecision final : public TensorSource {
 public:
  FloatAtPrecision(std::unique_ptr<TensorSource> base, int bits, sefp::Reconstruction mode)
      : base_(std::move(base)), bits_(bits), mode_(mode) {}
  std::vector<std::string> Names() const override { return base_->Names(); }
  bool Has(absl::string_view name) const override { return base_->Has(name); }
  absl::StatusOr<std::vector<int64_t>> Shape(absl::string_view name) const override {
    return base_->Shape(name);
  }
  absl::StatusOr<std::vector<float>> ReadFloat32(absl::string_view name) const override {
    OTARO_ASSIGN_OR_RETURN(std::vector<float> values, base_->ReadFloat32(name));
    if (!IsLinear(name)) return values;
    OTARO_ASSIGN_OR_RETURN(std::vector<int64_t> shape, base_->Shape(name));
    OTARO_ASSIGN_OR_RETURN(sefp::SefpTensor tensor,
                           sefp::EncodeTensor(name, values, shape[0], shape[1]));
    return tensor.DecodeAll(bits_, mode_);
  }
  std::string StorageType(absl::string_view name) const override {
    return IsLinear(name) ? absl::StrCat("SEFP E5M", bits_) : base_->StorageType(name);
  }
  std::string Describe() const override {
    return absl::StrCat(base_->Describe(), " at ", PrecisionLabel(bits_, mode_));
  }

 private:
  std::unique_ptr<TensorSource> base_;
  int bits_;
  sefp::Reconstruction mode_;
};

// --- tensors at the export dtype ---------------------------------------------

std::vector<uint8_t> Encode(const std::vector<float>& values, ExportDType dtype) {
  std::vector<uint8_t> bytes;
  if (dtype == ExportDType::kF32) {
    bytes.resize(values.size() * sizeof(float));
    if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
    return bytes;
  }
  bytes.resize(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h =
        dtype == ExportDType::kF16 ? FloatToFp16(values[i]) : FloatToBf16(values[i]);
    std::memcpy(&bytes[2 * i], &h, 2);
  }
  return bytes;
}

gguf::TensorType GgufType(ExportDType dtype) {
  switch (dtype) {
    case ExportDType::kF16: return gguf::TensorType::kF16;
    case ExportDType::kBf16: return gguf::TensorType::kBF16;
    case ExportDType::kF32: break;
  }
  return gguf::TensorType::kF32;
}

// --- GGUF ----------------------------------------------------------------------

// llama.cpp's name for the pre-tokenizer whose regexes these are (tokenizer.ggml.pre).
absl::StatusOr<std::string> LlamaCppPreName(const tokenizer::PreTokenizer& pre) {
  std::vector<std::string> candidates = {pre.name};
  for (const char* name : {"smollm", "llama-bpe", "qwen2", "gpt-2", "deepseek-llm",
                           "deepseek-coder"}) {
    candidates.push_back(name);
  }
  for (const std::string& name : candidates) {
    auto known = tokenizer::PreTokenizerByName(name);
    if (known.ok() && known->regexes == pre.regexes) return name;
  }
  return absl::UnimplementedError(absl::StrCat(
      "the tokenizer's pre-tokenizer ('", pre.name,
      "') matches none llama.cpp names (tokenizer.ggml.pre): export from the GGUF file"));
}

absl::Status WriteGgufTokenizer(const VocabSpec& spec, gguf::GgufWriter& w) {
  const bool spm = spec.kind == ModelKind::kSentencePiece;
  OTARO_RETURN_IF_ERROR(w.SetString("tokenizer.ggml.model", spm ? "llama" : "gpt2"));
  if (!spm) {
    OTARO_ASSIGN_OR_RETURN(std::string pre, LlamaCppPreName(spec.pre));
    OTARO_RETURN_IF_ERROR(w.SetString("tokenizer.ggml.pre", pre));
  }
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (const tokenizer::TokenInfo& token : spec.tokens) {
    pieces.push_back(token.piece);
    scores.push_back(token.score);
    types.push_back(static_cast<int32_t>(token.type));
  }
  OTARO_RETURN_IF_ERROR(w.SetStringArray("tokenizer.ggml.tokens", pieces));
  OTARO_RETURN_IF_ERROR(w.SetFloat32Array("tokenizer.ggml.scores", scores));
  OTARO_RETURN_IF_ERROR(w.SetInt32Array("tokenizer.ggml.token_type", types));
  if (!spm) {
    if (spec.merges.empty()) {
      return absl::UnimplementedError(
          "the tokenizer has ranks but no merge list (tiktoken): llama.cpp needs "
          "tokenizer.ggml.merges; export from a Hugging Face folder or GGUF instead");
    }
    std::vector<std::string> merges;
    for (const auto& [a, b] : spec.merges) merges.push_back(absl::StrCat(a, " ", b));
    OTARO_RETURN_IF_ERROR(w.SetStringArray("tokenizer.ggml.merges", merges));
  }
  auto id = [&](const char* key, tokenizer::TokenId value) -> absl::Status {
    if (value == tokenizer::kNoToken) return absl::OkStatus();
    return w.SetUint32(key, static_cast<uint32_t>(value));
  };
  OTARO_RETURN_IF_ERROR(id("tokenizer.ggml.bos_token_id", spec.bos_id));
  OTARO_RETURN_IF_ERROR(id("tokenizer.ggml.eos_token_id", spec.eos_id));
  OTARO_RETURN_IF_ERROR(id("tokenizer.ggml.unknown_token_id", spec.unk_id));
  OTARO_RETURN_IF_ERROR(id("tokenizer.ggml.padding_token_id", spec.pad_id));
  for (tokenizer::TokenId eog : spec.eog_ids) {
    if (eog != spec.eos_id) {
      OTARO_RETURN_IF_ERROR(id("tokenizer.ggml.eot_token_id", eog));
      break;
    }
  }
  OTARO_RETURN_IF_ERROR(w.SetBool("tokenizer.ggml.add_bos_token", spec.add_bos));
  OTARO_RETURN_IF_ERROR(w.SetBool("tokenizer.ggml.add_eos_token", spec.add_eos));
  if (spm) OTARO_RETURN_IF_ERROR(w.SetBool("tokenizer.ggml.add_space_prefix", spec.add_space_prefix));
  if (!spec.chat_template.empty()) {
    OTARO_RETURN_IF_ERROR(w.SetString("tokenizer.chat_template", spec.chat_template));
  }
  return absl::OkStatus();
}

absl::Status WriteGguf(const TensorSource& source, const ModelConfig& c,
                       const std::string& model_path, const tokenizer::Tokenizer* tok,
                       const ExportOptions& options, const std::string& out_path) {
  if (c.rope_scaling.factor != 0) {
    return absl::UnimplementedError(
        "llama3 RoPE scaling is not exported to GGUF yet (llama.cpp wants a rope_freqs tensor)");
  }
  gguf::GgufWriter w;
  const std::string& arch = c.architecture;
  auto key = [&](absl::string_view name) { return absl::StrCat(arch, ".", name); };
  auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  OTARO_RETURN_IF_ERROR(w.SetString("general.architecture", arch));
  OTARO_RETURN_IF_ERROR(w.SetString("general.name", source.Describe()));
  // llama_ftype: ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_BF16 = 32.
  OTARO_RETURN_IF_ERROR(w.SetUint32("general.file_type",
                                    options.dtype == ExportDType::kF32   ? 0
                                    : options.dtype == ExportDType::kF16 ? 1
                                                                         : 32));
  OTARO_RETURN_IF_ERROR(w.SetUint32(key("vocab_size"), u32(c.vocab_size)));
  OTARO_RETURN_IF_ERROR(w.SetUint32(key("context_length"), u32(c.max_position)));
  OTARO_RETURN_IF_ERROR(w.SetUint32(key("embedding_length"), u32(c.hidden_size)));
  OTARO_RETURN_IF_ERROR(w.SetUint32(key("block_count"), u32(c.num_layers)));
  OTARO_RETURN_IF_ERROR(w.SetUint32(key("feed_forward_length"), u32(c.intermediate_size)));
  OTARO_RETURN_IF_ERROR(w.SetUint32(key("rope.dimension_count"), u32(c.head_dim)));
  OTARO_RETURN_IF_ERROR(w.SetUint32(key("attention.head_count"), u32(c.num_heads)));
  OTARO_RETURN_IF_ERROR(w.SetUint32(key("attention.head_count_kv"), u32(c.num_kv_heads)));
  if (c.head_dim * c.num_heads != c.hidden_size) {
    OTARO_RETURN_IF_ERROR(w.SetUint32(key("attention.key_length"), u32(c.head_dim)));
    OTARO_RETURN_IF_ERROR(w.SetUint32(key("attention.value_length"), u32(c.head_dim)));
  }
  OTARO_RETURN_IF_ERROR(
      w.SetFloat32(key("attention.layer_norm_rms_epsilon"), static_cast<float>(c.rms_norm_eps)));
  OTARO_RETURN_IF_ERROR(w.SetFloat32(key("rope.freq_base"), static_cast<float>(c.rope_theta)));

  // The tokenizer: the source GGUF's own keys, verbatim, when there is one.
  auto format = DetectModelFormat(model_path);
  if (format.ok() && *format == ModelFormat::kGguf) {
    OTARO_ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(model_path));
    for (const auto& [name, value] : file->metadata()) {
      if (absl::StartsWith(name, "tokenizer.")) OTARO_RETURN_IF_ERROR(w.CopyValue(name, value));
    }
  } else if (tok != nullptr) {
    OTARO_RETURN_IF_ERROR(WriteGgufTokenizer(tok->spec(), w));
  } else {
    return absl::FailedPreconditionError(absl::StrCat(
        model_path, " has no tokenizer: llama.cpp cannot load a GGUF without one"));
  }

  const std::vector<GgufTensorName> names = GgufTensorNames(c);
  int64_t done = 0;
  for (const GgufTensorName& name : names) {
    if (!source.Has(name.hf)) continue;
    OTARO_ASSIGN_OR_RETURN(std::vector<float> values, source.ReadFloat32(name.hf));
    OTARO_ASSIGN_OR_RETURN(std::vector<int64_t> shape, source.Shape(name.hf));
    if (name.permute_heads > 0) {
      OTARO_RETURN_IF_ERROR(gguf::ApplyGgufRotaryPermutation(
          absl::MakeSpan(values), shape[0], shape.size() > 1 ? shape[1] : 1,
          name.permute_heads));
    }
    const ExportDType dtype = shape.size() == 1 ? ExportDType::kF32 : options.dtype;
    OTARO_RETURN_IF_ERROR(w.AddTensor(name.gguf,
                                      std::vector<uint64_t>(shape.rbegin(), shape.rend()),
                                      GgufType(dtype), Encode(values, dtype)));
    if (options.progress) options.progress(++done, static_cast<int64_t>(names.size()), name.hf);
  }
  return w.WriteAtomically(out_path);
}

// --- Hugging Face folder ---------------------------------------------------------

std::string ConfigJson(const ModelConfig& c, ExportDType dtype) {
  const bool qwen2 = c.architecture == "qwen2";
  json j = {{"architectures", {qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
            {"model_type", c.architecture},
            {"vocab_size", c.vocab_size},
            {"hidden_size", c.hidden_size},
            {"intermediate_size", c.intermediate_size},
            {"num_hidden_layers", c.num_layers},
            {"num_attention_heads", c.num_heads},
            {"num_key_value_heads", c.num_kv_heads},
            {"head_dim", c.head_dim},
            {"max_position_embeddings", c.max_position},
            {"rms_norm_eps", c.rms_norm_eps},
            {"rope_theta", c.rope_theta},
            {"tie_word_embeddings", c.tie_word_embeddings},
            {"hidden_act", "silu"},
            {"torch_dtype", dtype == ExportDType::kF32   ? "float32"
                            : dtype == ExportDType::kF16 ? "float16"
                                                         : "bfloat16"}};
  if (qwen2) {
    j["use_sliding_window"] = false;
  } else {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = false;
  }
  if (c.rope_scaling.factor != 0) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", c.rope_scaling.factor},
                         {"low_freq_factor", c.rope_scaling.low_freq_factor},
                         {"high_freq_factor", c.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling.original_max_position}};
  }
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  return j.dump(2);
}

std::string GenerationConfigJson(const ModelConfig& c) {
  json j = json::object();
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  return j.dump(2);
}

// SentencePiece BPE as merges (what transformers' LlamaConverter derives from a
// .model file): every split of a vocabulary piece into two pieces, the merged
// piece's score deciding the order (best first), then its id, then the parts'.
std::vector<std::string> SentencePieceMerges(const VocabSpec& spec) {
  std::map<std::string, int32_t> ids;
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    if (spec.tokens[i].type == TokenType::kNormal) ids.emplace(spec.tokens[i].piece, i);
  }
  std::vector<std::tuple<float, int32_t, int32_t, int32_t>> order;  // -score, id, left, right
  for (const auto& [piece, id] : ids) {
    for (size_t cut = 1; cut < piece.size(); ++cut) {
      auto left = ids.find(piece.substr(0, cut));
      auto right = ids.find(piece.substr(cut));
      if (left != ids.end() && right != ids.end()) {
        order.emplace_back(-spec.tokens[id].score, id, left->second, right->second);
      }
    }
  }
  std::sort(order.begin(), order.end());
  std::vector<std::string> merges;
  for (const auto& [score, id, left, right] : order) {
    merges.push_back(absl::StrCat(spec.tokens[left].piece, " ", spec.tokens[right].piece));
  }
  return merges;
}

// tokenizer.json (Hugging Face tokenizers) and tokenizer_config.json of `spec`.
std::pair<std::string, std::string> HfTokenizerFiles(const VocabSpec& spec, int64_t max_length) {
  const bool spm = spec.kind == ModelKind::kSentencePiece;
  json vocab = json::object();
  json added = json::array();
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    const tokenizer::TokenInfo& t = spec.tokens[i];
    vocab[t.piece] = i;
    if (t.type == TokenType::kControl || t.type == TokenType::kUserDefined ||
        t.type == TokenType::kUnknown) {
      added.push_back({{"id", i},
                       {"content", t.piece},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", t.type != TokenType::kUserDefined}});
    }
  }
  json merges = json::array();
  if (spm) {
    for (const std::string& m : SentencePieceMerges(spec)) merges.push_back(m);
  } else {
    for (const auto& [a, b] : spec.merges) merges.push_back(absl::StrCat(a, " ", b));
  }
  auto piece = [&](tokenizer::TokenId id) -> json {
    return id == tokenizer::kNoToken ? json(nullptr) : json(spec.tokens[id].piece);
  };
  json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", spm ? piece(spec.unk_id) : json(nullptr)},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", spm},
                {"byte_fallback", spm},
                {"ignore_merges", spec.ignore_merges},
                {"vocab", vocab},
                {"merges", merges}};
  json tj = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr},
             {"added_tokens", added}, {"model", model}};
  if (spm) {
    json normalizers = json::array();
    if (spec.add_space_prefix) normalizers.push_back({{"type", "Prepend"}, {"prepend", "▁"}});
    normalizers.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}});
    tj["normalizer"] = {{"type", "Sequence"}, {"normalizers", normalizers}};
    tj["pre_tokenizer"] = nullptr;
    json decoders = {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
                     {{"type", "ByteFallback"}},
                     {{"type", "Fuse"}}};
    if (spec.add_space_prefix) {
      decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    }
    tj["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
  } else {
    json pre = json::array();
    for (const std::string& regex : spec.pre.regexes) {
      pre.push_back({{"type", "Split"},
                     {"pattern", {{"Regex", regex}}},
                     {"behavior", "Isolated"},
                     {"invert", false}});
    }
    pre.push_back({{"type", "ByteLevel"},
                   {"add_prefix_space", false},
                   {"trim_offsets", true},
                   {"use_regex", false}});
    tj["normalizer"] = nullptr;
    tj["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", pre}};
    tj["decoder"] = {{"type", "ByteLevel"},
                     {"add_prefix_space", true},
                     {"trim_offsets", true},
                     {"use_regex", true}};
  }
  // BOS (and EOS) as the model adds them.
  if ((spec.add_bos && spec.bos_id != tokenizer::kNoToken) ||
      (spec.add_eos && spec.eos_id != tokenizer::kNoToken)) {
    json single = json::array(), pair = json::array(), special = json::object();
    auto add_special = [&](tokenizer::TokenId id) {
      const std::string& p = spec.tokens[id].piece;
      special[p] = {{"id", p}, {"ids", {id}}, {"tokens", {p}}};
      return json{{"SpecialToken", {{"id", p}, {"type_id", 0}}}};
    };
    const bool bos = spec.add_bos && spec.bos_id != tokenizer::kNoToken;
    const bool eos = spec.add_eos && spec.eos_id != tokenizer::kNoToken;
    if (bos) single.push_back(add_special(spec.bos_id));
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (eos) single.push_back(add_special(spec.eos_id));
    pair = single;
    if (bos) pair.push_back(add_special(spec.bos_id));
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    if (eos) pair.push_back(add_special(spec.eos_id));
    tj["post_processor"] = {
        {"type", "TemplateProcessing"}, {"single", single}, {"pair", pair},
        {"special_tokens", special}};
  } else {
    tj["post_processor"] = nullptr;
  }

  json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                 {"add_bos_token", spec.add_bos},
                 {"add_eos_token", spec.add_eos},
                 {"clean_up_tokenization_spaces", false},
                 {"model_max_length", max_length}};
  if (spec.bos_id != tokenizer::kNoToken) config["bos_token"] = piece(spec.bos_id);
  if (spec.eos_id != tokenizer::kNoToken) config["eos_token"] = piece(spec.eos_id);
  if (spec.unk_id != tokenizer::kNoToken) config["unk_token"] = piece(spec.unk_id);
  if (spec.pad_id != tokenizer::kNoToken) config["pad_token"] = piece(spec.pad_id);
  if (!spec.chat_template.empty()) config["chat_template"] = spec.chat_template;
  return {tj.dump(), config.dump(2)};
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::Status WriteHfFolder(const TensorSource& source, const ModelConfig& c,
                           const std::string& model_path, const tokenizer::Tokenizer* tok,
                           const ExportOptions& options, const std::string& out_dir) {
  OTARO_RETURN_IF_ERROR(CreateDirectories(out_dir));
  OTARO_RETURN_IF_ERROR(
      WriteFileAtomically(out_dir + "/config.json", ConfigJson(c, options.dtype)));
  OTARO_RETURN_IF_ERROR(
      WriteFileAtomically(out_dir + "/generation_config.json", GenerationConfigJson(c)));

  safetensors::Writer writer;
  OTARO_RETURN_IF_ERROR(writer.SetMetadata("format", "pt"));
  const safetensors::DType dtype = options.dtype == ExportDType::kF32   ? safetensors::DType::kF32
                                   : options.dtype == ExportDType::kF16 ? safetensors::DType::kF16
                                                                        : safetensors::DType::kBF16;
  const std::vector<std::string> names = ExpectedTensorNames(c);
  std::vector<std::vector<uint8_t>> bytes;  // the writer borrows them until written
  bytes.reserve(names.size());
  int64_t done = 0;
  for (const std::string& name : names) {
    OTARO_ASSIGN_OR_RETURN(std::vector<float> values, source.ReadFloat32(name));
    OTARO_ASSIGN_OR_RETURN(std::vector<int64_t> shape, source.Shape(name));
    bytes.push_back(Encode(values, options.dtype));
    OTARO_RETURN_IF_ERROR(writer.AddTensor(name, dtype, shape, bytes.back()));
    if (options.progress) options.progress(++done, static_cast<int64_t>(names.size()), name);
  }
  OTARO_RETURN_IF_ERROR(writer.WriteAtomically(out_dir + "/model.safetensors"));

  // The tokenizer: a Hugging Face source's own files, else built from otaro's.
  auto format = DetectModelFormat(model_path);
  if (format.ok() && *format == ModelFormat::kHfFolder) {
    for (const char* file : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "vocab.json", "merges.txt", "tokenizer.model"}) {
      const std::string from = absl::StrCat(model_path, "/", file);
      if (!IsFile(from)) continue;
      std::string contents;
      OTARO_RETURN_IF_ERROR(ReadFileToString(from, &contents));
      OTARO_RETURN_IF_ERROR(WriteFileAtomically(absl::StrCat(out_dir, "/", file), contents));
    }
  } else if (tok != nullptr) {
    const auto [tokenizer_json, tokenizer_config] = HfTokenizerFiles(tok->spec(), c.max_position);
    OTARO_RETURN_IF_ERROR(WriteFileAtomically(out_dir + "/tokenizer.json", tokenizer_json));
    OTARO_RETURN_IF_ERROR(
        WriteFileAtomically(out_dir + "/tokenizer_config.json", tokenizer_config));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExportFormat> ParseExportFormat(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(text);
  if (name == "gguf") return ExportFormat::kGguf;
  if (name == "hf") return ExportFormat::kHfFolder;
  return absl::InvalidArgumentError(absl::StrCat("unknown export format '", text, "' (gguf, hf)"));
}

absl::StatusOr<ExportDType> ParseExportDType(absl::string_view text) {
  const std::string name = absl::AsciiStrToLower(text);
  if (name == "f32" || name == "float32") return ExportDType::kF32;
  if (name == "f16" || name == "float16") return ExportDType::kF16;
  if (name == "bf16" || name == "bfloat16") return ExportDType::kBf16;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", text, "' (f32, f16, bf16)"));
}

absl::StatusOr<std::unique_ptr<TensorSource>> OpenExportSource(const std::string& model_path,
                                                               const ExportOptions& options,
                                                               ModelConfig* config) {
  if (options.bits != 0) OTARO_RETURN_IF_ERROR(sefp::CheckPrecision(options.bits));
  OTARO_ASSIGN_OR_RETURN(ModelFormat format, DetectModelFormat(model_path));
  if (format == ModelFormat::kSefp) {
    if (options.bits == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          model_path, " is a SEFP checkpoint: say which precision to export with --bits M "
                      "(2..8), or export the float master checkpoint"));
    }
    OTARO_ASSIGN_OR_RETURN(auto reader, sefp::CheckpointReader::Open(model_path));
    auto it = reader->metadata().extra.find("model_config");
    if (it == reader->metadata().extra.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(model_path, " is a SEFP checkpoint without a model config"));
    }
    OTARO_ASSIGN_OR_RETURN(*config, ModelConfigFromJson(it->second));
    auto source = std::make_unique<SefpAtPrecision>(std::move(reader), *config, model_path,
                                                    options.bits);
    OTARO_RETURN_IF_ERROR(CheckTensors(*source, *config));
    return std::unique_ptr<TensorSource>(std::move(source));
  }
  OTARO_ASSIGN_OR_RETURN(auto source, OpenModelSource(model_path, config));
  if (options.bits == 0) return source;
  return std::unique_ptr<TensorSource>(
      std::make_unique<FloatAtPrecision>(std::move(source), options.bits, options.reconstruction));
}

absl::StatusOr<ExportSummary> ExportModel(const std::string& model_path,
                                          const std::string& out_path,
                                          const ExportOptions& options) {
  ModelConfig config;
  OTARO_ASSIGN_OR_RETURN(auto source, OpenExportSource(model_path, options, &config));
  std::unique_ptr<tokenizer::Tokenizer> tok;
  if (auto loaded = LoadModelTokenizer(model_path); loaded.ok()) {
    tok = std::move(*loaded);
  } else if (loaded.status().code() != absl::StatusCode::kNotFound) {
    return loaded.status();
  }
  if (options.format == ExportFormat::kGguf) {
    OTARO_RETURN_IF_ERROR(WriteGguf(*source, config, model_path, tok.get(), options, out_path));
  } else {
    OTARO_RETURN_IF_ERROR(WriteHfFolder(*source, config, model_path, tok.get(), options, out_path));
  }
  ExportSummary summary;
  summary.source = source->Describe();
  summary.tensors = static_cast<int64_t>(ExpectedTensorNames(config).size());
  summary.parameters = config.ParameterCount();
  return summary;
}

}  // namespace otaro::engine
