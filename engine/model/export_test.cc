// otaro export: every format and source reads back in otaro with the same
// weights (bit for bit in float32; exactly the F16 / SEFP-at-M rounding
// otherwise), the same config and the same tokenization, and the Hugging Face
// folder gives transformers' own logits (tests/fixtures/stories260K_reference).
#include "engine/model/export.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include <openssl/evp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "common/float16.h"
#include "common/testing/shared_data.h"
#include "engine/cpu/reference_forward.h"
#include "engine/formats/gguf.h"
#include "engine/model/loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace otaro::engine {
namespace {

using ::testing::HasSubstr;

std::string StoriesGguf() {
  return otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}

constexpr char kText[] = "Once upon a time, Lily saw a big red ball. \"Hello!\" she said.\n";

std::map<std::string, std::vector<float>> Tensors(const TensorSource& source,
                                                  const ModelConfig& config) {
  std::map<std::string, std::vector<float>> out;
  for (const std::string& name : ExpectedTensorNames(config)) {
    auto values = source.ReadFloat32(name);
    EXPECT_TRUE(values.ok()) << name << ": " << values.status();
    if (values.ok()) out[name] = std::move(*values);
  }
  return out;
}

std::map<std::string, std::vector<float>> Tensors(const std::string& path, ModelConfig* config) {
  auto source = OpenModelSource(path, config);
  EXPECT_TRUE(source.ok()) << path << ": " << source.status();
  if (!source.ok()) return {};
  return Tensors(**source, *config);
}

void ExpectSameConfig(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(ModelConfigToJson(a), ModelConfigToJson(b));
}

std::vector<tokenizer::TokenId> Ids(const std::string& model) {
  auto tok = LoadModelTokenizer(model);
  EXPECT_TRUE(tok.ok()) << model << ": " << tok.status();
  if (!tok.ok()) return {};
  tokenizer::EncodeOptions options;
  options.add_special = true;
  return (*tok)->Encode(kText, options);
}

ExportOptions Options(ExportFormat format, ExportDType dtype = ExportDType::kF32, int bits = 0) {
  ExportOptions options;
  options.format = format;
  options.dtype = dtype;
  options.bits = bits;
  return options;
}

// GGUF -> GGUF: identical tensors (the q/k permutation redone on write and undone
// on read), config, tokenizer keys (copied) and token ids.
TEST(ExportTest, GgufRoundTripIsExact) {
  const std::string out = otaro::testing::ScratchDir("gguf") + "/m.gguf";
  auto summary = ExportModel(StoriesGguf(), out, Options(ExportFormat::kGguf));
  ASSERT_TRUE(summary.ok()) << summary.status();
  ModelConfig a, b;
  const auto want = Tensors(StoriesGguf(), &a);
  const auto got = Tensors(out, &b);
  ExpectSameConfig(a, b);
  ASSERT_EQ(want.size(), got.size());
  for (const auto& [name, values] : want) EXPECT_EQ(values, got.at(name)) << name;
  EXPECT_EQ(Ids(StoriesGguf()), Ids(out));

  // Every tokenizer key of the source, verbatim; the file says F32.
  auto src = gguf::GgufFile::Open(StoriesGguf());
  auto dst = gguf::GgufFile::Open(out);
  ASSERT_TRUE(src.ok() && dst.ok());
  for (const auto& [key, value] : (*src)->metadata()) {
    if (!absl::StartsWith(key, "tokenizer.")) continue;
    const gguf::Value* copy = (*dst)->Find(key);
    ASSERT_NE(copy, nullptr) << key;
    EXPECT_EQ(copy->DebugString(1000000), value.DebugString(1000000)) << key;
  }
  EXPECT_EQ(*(*dst)->GetUint64("general.file_type"), 0u);
  EXPECT_EQ(*(*dst)->GetString("general.architecture"), "llama");
  // llama.cpp keeps the q/k rows permuted: the raw bytes are the source's.
  const gguf::TensorInfo* q_src = (*src)->FindTensor("blk.0.attn_q.weight");
  const gguf::TensorInfo* q_dst = (*dst)->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q_src, nullptr);
  ASSERT_NE(q_dst, nullptr);
  EXPECT_EQ(*(*src)->DequantizeTensor(*q_src), *(*dst)->DequantizeTensor(*q_dst));
}

// A master checkpoint (what the tuner writes: the tokenizer as otaro's JSON) ->
// GGUF: the tokenizer.ggml.* keys are built from otaro's tokenizer and
// tokenize the same.
TEST(ExportTest, MasterCheckpointToGgufBuildsTheTokenizerMetadata) {
  const std::string dir = otaro::testing::ScratchDir("master_to_gguf");
  ModelConfig a, b;
  auto source = OpenModelSource(StoriesGguf(), &a);
  ASSERT_TRUE(source.ok()) << source.status();
  auto tok = LoadModelTokenizer(StoriesGguf());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string master = dir + "/master.safetensors";
  ASSERT_TRUE(WriteMasterCheckpoint(**source, a, tok->get(), {}, master).ok());
  auto summary = ExportModel(master, dir + "/m.gguf", Options(ExportFormat::kGguf));
  ASSERT_TRUE(summary.ok()) << summary.status();
  const auto want = Tensors(**source, a);
  const auto got = Tensors(dir + "/m.gguf", &b);
  ExpectSameConfig(a, b);
  for (const auto& [name, values] : want) EXPECT_EQ(values, got.at(name)) << name;
  EXPECT_EQ(Ids(StoriesGguf()), Ids(dir + "/m.gguf"));
  auto dst = gguf::GgufFile::Open(dir + "/m.gguf");
  ASSERT_TRUE(dst.ok());
  EXPECT_EQ(*(*dst)->GetString("tokenizer.ggml.model"), "llama");
  auto src = gguf::GgufFile::Open(StoriesGguf());
  EXPECT_EQ((*(*dst)->GetStringArray("tokenizer.ggml.tokens")),
            (*(*src)->GetStringArray("tokenizer.ggml.tokens")));
}

// GGUF -> HF folder: config.json, model.safetensors and a generated
// tokenizer.json that otaro reads back to the same ids; transformers' logits
// (computed on the original HF folder) within 1e-4 of the exported weights'.
TEST(ExportTest, HfFolderReadsBackAndGivesTransformersLogits) {
  const std::string out = otaro::testing::ScratchDir("gguf_to_hf") + "/m";
  auto summary = ExportModel(StoriesGguf(), out, Options(ExportFormat::kHfFolder));
  ASSERT_TRUE(summary.ok()) << summary.status();
  ModelConfig a, b;
  const auto want = Tensors(StoriesGguf(), &a);
  const auto got = Tensors(out, &b);
  ASSERT_EQ(want.size(), got.size());
  for (const auto& [name, values] : want) EXPECT_EQ(values, got.at(name)) << name;
  EXPECT_EQ(Ids(StoriesGguf()), Ids(out));

  LoadOptions load;
  load.quantize = false;
  auto model = LoadModel(out, load);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<cpu::testing::DenseLayer> layers = cpu::testing::DenseLayersOf(**model);
  std::ifstream in("tests/fixtures/stories260K_reference/logits.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  double worst = 0;
  for (const nlohmann::json& prompt : fixture["prompts"]) {
    const std::vector<int> tokens = prompt["tokens"].get<std::vector<int>>();
    const std::vector<double> logits = cpu::testing::ReferenceForward(**model, layers, tokens);
    const int64_t vocab = (*model)->config.vocab_size;
    for (size_t t = 0; t < tokens.size(); ++t) {
      const std::vector<double> reference = prompt["logits"][t].get<std::vector<double>>();
      for (int64_t v = 0; v < vocab; ++v) {
        worst = std::max(worst, std::abs(logits[t * vocab + v] - reference[v]));
      }
    }
  }
  EXPECT_LT(worst, 1e-4);
}

// The HF folder as transformers itself reads it: tests/fixtures/
// make_hf_export_reference.py loaded an export of the same model with
// AutoModelForCausalLM + AutoTokenizer and recorded the files' SHA-256, the
// prompts' ids and the logits. Byte-identical files today mean transformers
// accepts today's export; otaro's ids and float32 logits on the folder must
// equal transformers' (within 1e-4).
TEST(ExportTest, HfFolderIsWhatTransformersLoadedWithTheSameIdsAndLogits) {
  std::ifstream in("tests/fixtures/hf_export_reference/reference.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json fixture = nlohmann::json::parse(in);
  const std::string out = otaro::testing::ScratchDir("gguf_to_hf_transformers") + "/m";
  ASSERT_TRUE(ExportModel(StoriesGguf(), out, Options(ExportFormat::kHfFolder)).ok());
  for (const auto& [name, want] : fixture["files_sha256"].items()) {
    std::ifstream file(out + "/" + name, std::ios::binary);
    ASSERT_TRUE(file.good()) << name << " is no longer exported";
    const std::string bytes((std::istreambuf_iterator<char>(file)), {});
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    ASSERT_EQ(EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr), 1);
    std::string hex;
    for (unsigned int i = 0; i < length; ++i) hex += absl::StrFormat("%02x", digest[i]);
    EXPECT_EQ(hex, want.get<std::string>())
        << name << " differs from the file transformers loaded: if the export changed on "
        << "purpose, rerun tests/fixtures/make_hf_export_reference.py (needs torch)";
  }

  auto tok = LoadModelTokenizer(out);
  ASSERT_TRUE(tok.ok()) << tok.status();
  LoadOptions load;
  load.quantize = false;
  auto model = LoadModel(out, load);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::vector<cpu::testing::DenseLayer> layers = cpu::testing::DenseLayersOf(**model);
  const int64_t vocab = (*model)->config.vocab_size;
  double worst = 0;
  for (const nlohmann::json& prompt : fixture["prompts"]) {
    tokenizer::EncodeOptions options;
    options.add_special = true;
    const std::vector<tokenizer::TokenId> ids =
        (*tok)->Encode(prompt["text"].get<std::string>(), options);
    const std::vector<int> tokens = prompt["tokens"].get<std::vector<int>>();
    ASSERT_EQ(std::vector<int>(ids.begin(), ids.end()), tokens) << prompt["text"];
    const std::vector<double> logits = cpu::testing::ReferenceForward(**model, layers, tokens);
    for (size_t t = 0; t < tokens.size(); ++t) {
      const std::vector<double> reference = prompt["logits"][t].get<std::vector<double>>();
      ASSERT_EQ(static_cast<int64_t>(reference.size()), vocab);
      for (int64_t v = 0; v < vocab; ++v) {
        worst = std::max(worst, std::abs(logits[t * vocab + v] - reference[v]));
      }
    }
  }
  EXPECT_LT(worst, 1e-4);
}

// F16 / BF16 are the source rounded once; SEFP checkpoints need --bits and give
// exactly the weights the engine decodes at that precision.
TEST(ExportTest, HalfPrecisionAndSefpAtAPrecision) {
  const std::string dir = otaro::testing::ScratchDir("dtypes");
  ModelConfig a, b;
  const auto want = Tensors(StoriesGguf(), &a);
  ASSERT_TRUE(
      ExportModel(StoriesGguf(), dir + "/h", Options(ExportFormat::kHfFolder, ExportDType::kF16))
          .ok());
  for (const auto& [name, values] : Tensors(dir + "/h", &b)) {
    const std::vector<float>& source = want.at(name);
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(values[i], Fp16ToFloat(FloatToFp16(source[i]))) << name << "[" << i << "]";
    }
  }
  ASSERT_TRUE(
      ExportModel(StoriesGguf(), dir + "/b.gguf", Options(ExportFormat::kGguf, ExportDType::kBf16))
          .ok());
  for (const auto& [name, values] : Tensors(dir + "/b.gguf", &b)) {
    const std::vector<float>& source = want.at(name);
    const bool vector = absl::StrContains(name, "norm");  // 1-D: F32 in GGUF
    for (size_t i = 0; i < values.size(); ++i) {
      ASSERT_EQ(values[i], vector ? source[i] : Bf16ToFloat(FloatToBf16(source[i])))
          << name << "[" << i << "]";
    }
  }

  const std::string sefp_path = dir + "/m.sefp";
  ASSERT_TRUE(
      ConvertToSefpCheckpoint(StoriesGguf(), sefp_path, sefp::Reconstruction::kTruncate).ok());
  auto refused = ExportModel(sefp_path, dir + "/x.gguf", Options(ExportFormat::kGguf));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("--bits"));

  auto summary = ExportModel(sefp_path, dir + "/e5m4.gguf", Options(ExportFormat::kGguf,
                                                                    ExportDType::kF32, 4));
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_THAT(summary->source, HasSubstr("E5M4 (truncate)"));
  // The float source seen at E5M4 truncate is the same weights.
  ExportOptions view = Options(ExportFormat::kGguf, ExportDType::kF32, 4);
  view.reconstruction = sefp::Reconstruction::kTruncate;
  auto expected = OpenExportSource(StoriesGguf(), view, &a);
  ASSERT_TRUE(expected.ok()) << expected.status();
  const auto quantized = Tensors(**expected, a);
  for (const auto& [name, values] : Tensors(dir + "/e5m4.gguf", &b)) {
    EXPECT_EQ(values, quantized.at(name)) << name;
    if (absl::EndsWith(name, "_proj.weight")) {
      EXPECT_NE(values, want.at(name)) << name;
    }
  }
  EXPECT_FALSE(ExportModel(sefp_path, dir + "/y.gguf", Options(ExportFormat::kGguf,
                                                               ExportDType::kF32, 9))
                   .ok());
}

// The quick start's model (SmolLM2-135M-Instruct, Q4_1 GGUF, byte-level BPE):
// dequantized to F32, tensors and tokenizer round-trip exactly.
TEST(ExportTest, SmolLm2GgufRoundTrip) {
  const char* model = std::getenv("OTARO_DEFAULT_MODEL");
  if (model == nullptr || !std::ifstream(model).good()) {
    GTEST_SKIP() << "OTARO_DEFAULT_MODEL (SmolLM2 GGUF) not available";
  }
  const std::string dir = otaro::testing::ScratchDir("smollm2");
  ASSERT_TRUE(ExportModel(model, dir + "/m.gguf", Options(ExportFormat::kGguf)).ok());
  ModelConfig a, b;
  const auto want = Tensors(model, &a);
  const auto got = Tensors(dir + "/m.gguf", &b);
  ExpectSameConfig(a, b);
  for (const auto& [name, values] : want) EXPECT_EQ(values, got.at(name)) << name;
  EXPECT_EQ(Ids(model), Ids(dir + "/m.gguf"));
  // ... and as a Hugging Face folder with a generated byte-level tokenizer.json.
  ASSERT_TRUE(ExportModel(model, dir + "/hf", Options(ExportFormat::kHfFolder, ExportDType::kBf16))
                  .ok());
  EXPECT_EQ(Ids(model), Ids(dir + "/hf"));
}

}  // namespace
}  // namespace otaro::engine
