// Every supported format loads the same real model; conversion to a SEFP
// checkpoint keeps every value (planes, dense tensors, tokenizer, config).
#include "engine/model/loader.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/match.h"
#include "common/testing/shared_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::engine {
namespace {

std::string StoriesGguf() {
  return testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}
std::string StoriesHf() { return testing::SharedPath("data/models/stories260K-hf-converted"); }

std::string StoriesLlama2c() {
  return testing::SharedPath("data/models/stories260K-llama2c/stories260K.bin");
}

TEST(LoaderTest, DetectsEachFormat) {
  EXPECT_EQ(*DetectModelFormat(StoriesGguf()), ModelFormat::kGguf);
  EXPECT_EQ(*DetectModelFormat(StoriesLlama2c()), ModelFormat::kLlama2c);
  // tok512.bin is not a model, though it is a .bin too.
  EXPECT_FALSE(
      DetectModelFormat(testing::SharedPath("data/models/stories260K-llama2c/tok512.bin")).ok());
  EXPECT_EQ(*DetectModelFormat(StoriesHf()), ModelFormat::kHfFolder);
  std::string dir = testing::ScratchDir("detect");
  std::ofstream(dir + "/junk.bin") << "this is not a model at all";
  auto junk = DetectModelFormat(dir + "/junk.bin");
  ASSERT_FALSE(junk.ok());
  EXPECT_TRUE(absl::StrContains(junk.status().message(), "is not a model")) << junk.status();
  EXPECT_EQ(DetectModelFormat(dir + "/missing").status().code(), absl::StatusCode::kNotFound);
  auto folder = DetectModelFormat(dir);
  ASSERT_FALSE(folder.ok());
  EXPECT_TRUE(absl::StrContains(folder.status().message(), "config.json"));
  // A plain safetensors file (a HF shard) is pointed to its folder.
  auto shard = DetectModelFormat(StoriesHf() + "/model.safetensors");
  ASSERT_FALSE(shard.ok());
  EXPECT_TRUE(absl::StrContains(shard.status().message(), "pass its folder"));
}

TEST(LoaderTest, GgufLoadsQuantizedWithItsTokenizer) {
  LoadOptions options;
  int64_t last_done = 0, total = 0;
  options.progress = [&](int64_t done, int64_t all, absl::string_view) {
    EXPECT_EQ(done, last_done + 1);
    last_done = done;
    total = all;
  };
  auto model = LoadModel(StoriesGguf(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(last_done, total);
  EXPECT_EQ(total, 1 + 5 * 9 + 1);
  const LlamaModel& m = **model;
  EXPECT_EQ(m.source_format, "gguf");
  EXPECT_TRUE(m.quantized);
  ASSERT_EQ(m.layers.size(), 5u);
  EXPECT_TRUE(m.layers[0].q.quantized());
  EXPECT_EQ(m.layers[0].down.in_features, 172);
  ASSERT_NE(m.tokenizer, nullptr);
  EXPECT_EQ(m.tokenizer->vocab_size(), 512);
  // SEFP bytes per linear weight: (m + 1)/8 plus the exponents, read per m (the
  // lm_head, SEFP at E5M8 by default, is counted apart).
  const double head_bytes = static_cast<double>(m.quantized_lm_head->packed->BytesRead(8));
  const double weights = static_cast<double>(m.config.LinearParameterCount());
  for (int bits = 2; bits <= 8; ++bits) {
    double per_weight = (m.LinearBytesRead(bits) - head_bytes) / weights;
    EXPECT_GE(per_weight, (bits + 1) / 8.0 + 1 / 64.0 - 1e-9) << bits;
    // Row padding of the short FFN groups (172 = 64 + 64 + 44) costs a little more.
    EXPECT_LE(per_weight, ((bits + 1) / 8.0 + 1 / 64.0) * 1.12) << bits;
  }
  EXPECT_GT(m.LinearBytesRead(8) - head_bytes, (m.LinearBytesRead(3) - head_bytes) * 2);
}

TEST(LoaderTest, ResidentMaxBitsKeepsOnlyThosePlanes) {
  LoadOptions options;
  options.resident_max_bits = 4;
  auto model = LoadModel(StoriesGguf(), options);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->resident_max_bits, 4);
  EXPECT_EQ((*model)->LinearWeightBytes(), (*model)->LinearBytesRead(4));
  EXPECT_FALSE((*model)->layers[0].q.packed->CheckPrecision(5).ok());
  EXPECT_TRUE((*model)->layers[0].q.packed->CheckPrecision(4).ok());
  options.resident_max_bits = 1;
  EXPECT_FALSE(LoadModel(StoriesGguf(), options).ok());
}

TEST(LoaderTest, HfFolderUnquantizedMatchesGgufValues) {
  LoadOptions options;
  options.quantize = false;
  auto hf = LoadModel(StoriesHf(), options);
  auto gguf = LoadModel(StoriesGguf(), options);
  ASSERT_TRUE(hf.ok()) << hf.status();
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_EQ((*hf)->tokenizer, nullptr);  // The folder has no tokenizer.json.
  EXPECT_FALSE((*hf)->quantized);
  EXPECT_EQ((*hf)->embed, (*gguf)->embed);
  EXPECT_EQ((*hf)->layers[3].k.dense, (*gguf)->layers[3].k.dense);
  EXPECT_EQ((*hf)->layers[4].down.dense, (*gguf)->layers[4].down.dense);
  EXPECT_EQ((*hf)->final_norm, (*gguf)->final_norm);
  EXPECT_EQ(&(*hf)->LmHead(), &(*hf)->embed);  // tied
}

// The three published forms of stories260K load to the same model.
TEST(LoaderTest, Llama2cMatchesTheOtherForms) {
  LoadOptions options;
  options.quantize = false;
  auto llama2c = LoadModel(StoriesLlama2c(), options);
  auto hf = LoadModel(StoriesHf(), options);
  ASSERT_TRUE(llama2c.ok()) << llama2c.status();
  ASSERT_TRUE(hf.ok()) << hf.status();
  const LlamaModel& a = **llama2c;
  const LlamaModel& b = **hf;
  EXPECT_EQ(a.source_format, "llama2c");
  EXPECT_EQ(a.config.ParameterCount(), 260032);
  EXPECT_EQ(a.config.max_position, 512);
  EXPECT_EQ(a.embed, b.embed);
  EXPECT_EQ(a.final_norm, b.final_norm);
  for (size_t i = 0; i < b.layers.size(); ++i) {
    EXPECT_EQ(a.layers[i].q.dense, b.layers[i].q.dense) << i;  // RoPE rows un-permuted
    EXPECT_EQ(a.layers[i].k.dense, b.layers[i].k.dense) << i;
    EXPECT_EQ(a.layers[i].v.dense, b.layers[i].v.dense) << i;
    EXPECT_EQ(a.layers[i].gate.dense, b.layers[i].gate.dense) << i;
    EXPECT_EQ(a.layers[i].down.dense, b.layers[i].down.dense) << i;
    EXPECT_EQ(a.layers[i].up.dense, b.layers[i].up.dense) << i;
    EXPECT_EQ(a.layers[i].post_attention_norm, b.layers[i].post_attention_norm) << i;
  }
  // Its tokenizer (tok512.bin beside it) encodes like the GGUF's.
  auto gguf = LoadModel(StoriesGguf(), options);
  ASSERT_TRUE(gguf.ok());
  ASSERT_NE(a.tokenizer, nullptr);
  const std::string text = "Lily and Ben played in the park.";
  EXPECT_EQ(a.tokenizer->Encode(text), (*gguf)->tokenizer->Encode(text));
}

TEST(LoaderTest, SefpCheckpointRoundTripKeepsEverything) {
  std::string out = testing::ScratchDir("convert") + "/stories.sefp";
  int64_t progress_calls = 0;
  auto summary = ConvertToSefpCheckpoint(StoriesGguf(), out, sefp::Reconstruction::kTruncate,
                                         [&](int64_t, int64_t, absl::string_view) {
                                           ++progress_calls;
                                         });
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->parameters, 260032);
  EXPECT_EQ(summary->tensors, 47);
  EXPECT_EQ(progress_calls, 47);
  EXPECT_EQ(*DetectModelFormat(out), ModelFormat::kSefp);

  auto from_gguf = LoadModel(StoriesGguf(), {});
  auto from_sefp = LoadModel(out, {});
  ASSERT_TRUE(from_gguf.ok() && from_sefp.ok()) << from_sefp.status();
  const LlamaModel& a = **from_gguf;
  const LlamaModel& b = **from_sefp;
  EXPECT_EQ(b.source_format, "sefp");
  // The checkpoint records its reconstruction mode; the engine uses it.
  EXPECT_EQ(b.reconstruction, sefp::Reconstruction::kTruncate);
  EXPECT_EQ(b.config.hidden_size, a.config.hidden_size);
  EXPECT_EQ(b.config.eos_token_ids, a.config.eos_token_ids);
  EXPECT_EQ(b.embed, a.embed);
  EXPECT_EQ(b.final_norm, a.final_norm);
  for (size_t i = 0; i < a.layers.size(); ++i) {
    EXPECT_EQ(b.layers[i].input_norm, a.layers[i].input_norm);
    for (int bits : {3, 8}) {
      std::vector<float> row_a(a.layers[i].up.in_features), row_b(row_a.size());
      for (int64_t r = 0; r < a.layers[i].up.out_features; r += 37) {
        ASSERT_TRUE(a.layers[i].up.packed->DecodeRow(r, bits, sefp::Reconstruction::kTruncate,
                                                     row_a.data()).ok());
        ASSERT_TRUE(b.layers[i].up.packed->DecodeRow(r, bits, sefp::Reconstruction::kTruncate,
                                                     row_b.data()).ok());
        ASSERT_EQ(row_a, row_b) << "layer " << i << " row " << r << " m=" << bits;
      }
    }
  }
  ASSERT_NE(b.tokenizer, nullptr);
  const std::string text = "Once upon a time, Lily saw a big dog.";
  EXPECT_EQ(b.tokenizer->Encode(text), a.tokenizer->Encode(text));
  // Converting a checkpoint again is refused (tune from the original weights).
  EXPECT_FALSE(ConvertToSefpCheckpoint(out, out + "2", sefp::Reconstruction::kMidpoint).ok());
}

TEST(LoaderTest, TruncatedCheckpointIsAClearError) {
  std::string dir = testing::ScratchDir("truncated");
  ASSERT_TRUE(ConvertToSefpCheckpoint(StoriesGguf(), dir + "/m.sefp",
                                      sefp::Reconstruction::kMidpoint).ok());
  std::ifstream in(dir + "/m.sefp", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(dir + "/cut.sefp", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  auto model = LoadModel(dir + "/cut.sefp", {});
  EXPECT_FALSE(model.ok());
}

TEST(LoaderTest, MasterCheckpointRoundTripIsExactAndLoadsAsAModel) {
  const std::string dir = testing::ScratchDir("master");
  ModelConfig config;
  auto source = OpenModelSource(StoriesGguf(), &config);
  ASSERT_TRUE(source.ok()) << source.status();
  auto tokenizer = LoadModelTokenizer(StoriesGguf());
  ASSERT_TRUE(tokenizer.ok());
  CheckpointProvenance provenance{"stories260K gguf", R"({"job":"test"})"};
  ASSERT_TRUE(WriteMasterCheckpoint(**source, config, tokenizer->get(), provenance,
                                    dir + "/master.safetensors")
                  .ok());
  EXPECT_EQ(*DetectModelFormat(dir + "/master.safetensors"), ModelFormat::kMaster);

  ModelConfig reread;
  auto master = OpenModelSource(dir + "/master.safetensors", &reread);
  ASSERT_TRUE(master.ok()) << master.status();
  EXPECT_EQ(ModelConfigToJson(reread), ModelConfigToJson(config));
  for (const std::string& name : ExpectedTensorNames(config)) {
    EXPECT_EQ(*(*master)->ReadFloat32(name), *(*source)->ReadFloat32(name)) << name;
  }
  // It serves like any float model: same SEFP planes as the GGUF it came from.
  auto from_master = LoadModel(dir + "/master.safetensors", {});
  auto from_gguf = LoadModel(StoriesGguf(), {});
  ASSERT_TRUE(from_master.ok() && from_gguf.ok()) << from_master.status();
  EXPECT_EQ((*from_master)->source_format, "master");
  std::vector<float> a(config.hidden_size), b(config.hidden_size);
  ASSERT_TRUE((*from_master)->layers[2].q.packed->DecodeRow(5, 4, sefp::Reconstruction::kMidpoint, a.data()).ok());
  ASSERT_TRUE((*from_gguf)->layers[2].q.packed->DecodeRow(5, 4, sefp::Reconstruction::kMidpoint, b.data()).ok());
  EXPECT_EQ(a, b);
  ASSERT_NE((*from_master)->tokenizer, nullptr);
  EXPECT_EQ((*from_master)->tokenizer->Encode("Lily"), (*from_gguf)->tokenizer->Encode("Lily"));
}

TEST(LoaderTest, SefpCheckpointIsNotAFloatSource) {
  const std::string out = testing::ScratchDir("not_float") + "/m.sefp";
  ASSERT_TRUE(ConvertToSefpCheckpoint(StoriesGguf(), out, sefp::Reconstruction::kMidpoint).ok());
  ModelConfig config;
  auto source = OpenModelSource(out, &config);
  ASSERT_FALSE(source.ok());
  EXPECT_THAT(std::string(source.status().message()), ::testing::HasSubstr("SEFP checkpoint"));
}

TEST(LoaderTest, BuildModelFromAnySourceMatchesLoadModel) {
  ModelConfig config;
  auto source = OpenModelSource(StoriesHf(), &config);
  ASSERT_TRUE(source.ok());
  auto built = BuildModel(**source, config, nullptr, "in memory", {});
  auto loaded = LoadModel(StoriesHf(), {});
  ASSERT_TRUE(built.ok() && loaded.ok()) << built.status();
  EXPECT_EQ((*built)->source, "in memory");
  EXPECT_EQ((*built)->embed, (*loaded)->embed);
  std::vector<float> a(config.intermediate_size), b(config.intermediate_size);
  ASSERT_TRUE((*built)->layers[4].down.packed->DecodeRow(7, 3, sefp::Reconstruction::kMidpoint, a.data()).ok());
  ASSERT_TRUE((*loaded)->layers[4].down.packed->DecodeRow(7, 3, sefp::Reconstruction::kMidpoint, b.data()).ok());
  EXPECT_EQ(a, b);
}

// The default model of the quick start: SmolLM2-135M-Instruct, Q4_1 GGUF.
TEST(LoaderTest, DefaultModelSmolLM2Loads) {
  const char* path = std::getenv("OTARO_DEFAULT_MODEL");
  ASSERT_NE(path, nullptr) << "OTARO_DEFAULT_MODEL is not set: run tools/test.sh";
  auto model = LoadModel(path, {});
  ASSERT_TRUE(model.ok()) << model.status();
  const LlamaModel& m = **model;
  EXPECT_EQ(m.config.num_layers, 30);
  EXPECT_EQ(m.config.hidden_size, 576);
  EXPECT_EQ(m.config.num_kv_heads, 3);
  EXPECT_EQ(m.config.vocab_size, 49152);
  EXPECT_TRUE(m.config.tie_word_embeddings);
  // ~134.5M parameters, ~106M of them in linear layers.
  EXPECT_EQ(m.config.ParameterCount(), 134515008);
  ASSERT_NE(m.tokenizer, nullptr);
  EXPECT_FALSE(m.tokenizer->chat_template().empty());
  auto ids = m.tokenizer->Encode("Hello, world!");
  EXPECT_EQ(m.tokenizer->Decode(ids), "Hello, world!");
  EXPECT_EQ(m.saturated_groups, 0);
}

}  // namespace
}  // namespace otaro::engine
