// The same weights in two formats must load to the same tensors: stories260K
// as a Hugging Face folder (F32 safetensors) and as GGUF (with llama.cpp's q/k
// row permutation, which the GGUF source undoes).
#include "engine/model/tensor_source.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"

namespace otaro::engine {
namespace {

std::string Stories(const std::string& relative) {
  return testing::SharedPath("data/models/" + relative);
}

TEST(TensorSourceTest, HfFolderConfigIsStories260K) {
  ModelConfig config;
  auto source = OpenHfFolder(Stories("stories260K-hf-converted"), &config);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_EQ(config.architecture, "llama");
  EXPECT_EQ(config.hidden_size, 64);
  EXPECT_EQ(config.intermediate_size, 172);
  EXPECT_EQ(config.num_layers, 5);
  EXPECT_EQ(config.num_heads, 8);
  EXPECT_EQ(config.num_kv_heads, 4);
  EXPECT_EQ(config.head_dim, 8);
  EXPECT_EQ(config.vocab_size, 512);
  EXPECT_TRUE(config.tie_word_embeddings);
  EXPECT_EQ(config.bos_token_id, 1);
  EXPECT_EQ(config.eos_token_ids, std::vector<int64_t>{2});
  EXPECT_TRUE(CheckTensors(**source, config).ok());
  // The MANIFEST's parameter count.
  EXPECT_EQ(config.ParameterCount(), 260032);
}

TEST(TensorSourceTest, GgufAndHfFolderHoldIdenticalTensors) {
  ModelConfig hf_config, gguf_config;
  auto hf = OpenHfFolder(Stories("stories260K-hf-converted"), &hf_config);
  auto gguf = OpenGguf(Stories("stories260K-gguf/stories260K.gguf"), &gguf_config);
  ASSERT_TRUE(hf.ok()) << hf.status();
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_EQ(gguf_config.hidden_size, hf_config.hidden_size);
  EXPECT_EQ(gguf_config.num_kv_heads, hf_config.num_kv_heads);
  EXPECT_EQ(gguf_config.head_dim, hf_config.head_dim);
  EXPECT_EQ(gguf_config.vocab_size, hf_config.vocab_size);
  EXPECT_NEAR(gguf_config.rms_norm_eps, hf_config.rms_norm_eps, 1e-12);
  // The GGUF's output.weight is a byte-identical copy of token_embd.weight: tied.
  EXPECT_TRUE(gguf_config.tie_word_embeddings);
  ASSERT_TRUE(CheckTensors(**gguf, gguf_config).ok());
  int compared = 0;
  for (const std::string& name : ExpectedTensorNames(hf_config)) {
    auto a = (*hf)->ReadFloat32(name);
    auto b = (*gguf)->ReadFloat32(name);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ(*a, *b) << name;
    ++compared;
  }
  EXPECT_EQ(compared, 1 + 5 * 9 + 1);
}

TEST(TensorSourceTest, NotAModelFolder) {
  ModelConfig config;
  auto source = OpenHfFolder(testing::ScratchDir("empty_model"), &config);
  ASSERT_FALSE(source.ok());
  EXPECT_TRUE(absl::StrContains(source.status().message(), "config.json"));
}

class BrokenFolderTest : public ::testing::Test {
 protected:
  // A copy of the stories260K folder whose config.json the test rewrites.
  std::string CopyWithConfig(const std::string& name, const std::string& edit_from,
                             const std::string& edit_to) {
    std::string dir = testing::ScratchDir(name);
    std::string src = Stories("stories260K-hf-converted");
    std::filesystem::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
    std::ifstream in(src + "/config.json");
    std::string text((std::istreambuf_iterator<char>(in)), {});
    size_t at = text.find(edit_from);
    EXPECT_NE(at, std::string::npos) << edit_from;
    text.replace(at, edit_from.size(), edit_to);
    std::ofstream(dir + "/config.json") << text;
    return dir;
  }
};

TEST_F(BrokenFolderTest, UnsupportedArchitectureIsNamed) {
  std::string dir = CopyWithConfig("arch", "\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"");
  std::string text;
  {
    std::ifstream in(dir + "/config.json");
    text.assign((std::istreambuf_iterator<char>(in)), {});
  }
  size_t at = text.find("LlamaForCausalLM");
  text.replace(at, 16, "GPT2LMHeadModel");
  std::ofstream(dir + "/config.json") << text;
  ModelConfig config;
  auto source = OpenHfFolder(dir, &config);
  ASSERT_FALSE(source.ok());
  EXPECT_TRUE(absl::StrContains(source.status().message(), "unsupported architecture 'gpt2'"))
      << source.status();
}

TEST_F(BrokenFolderTest, WrongShapeNamesTheTensor) {
  std::string dir = CopyWithConfig("shape", "\"intermediate_size\": 172",
                                   "\"intermediate_size\": 176");
  ModelConfig config;
  auto source = OpenHfFolder(dir, &config);
  ASSERT_TRUE(source.ok()) << source.status();
  absl::Status status = CheckTensors(**source, config);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "model.layers.0.mlp.gate_proj.weight"))
      << status;
}

TEST_F(BrokenFolderTest, MissingTensorIsNamed) {
  // An untied model needs lm_head.weight, which this file does not have.
  std::string dir = CopyWithConfig("untied", "\"tie_word_embeddings\": true",
                                   "\"tie_word_embeddings\": false");
  ModelConfig config;
  auto source = OpenHfFolder(dir, &config);
  ASSERT_TRUE(source.ok());
  absl::Status status = CheckTensors(**source, config);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(status.message(), "lm_head.weight")) << status;
}

TEST_F(BrokenFolderTest, InconsistentHeadsAreRefused) {
  std::string dir = CopyWithConfig("heads", "\"num_key_value_heads\": 4",
                                   "\"num_key_value_heads\": 3");
  ModelConfig config;
  auto source = OpenHfFolder(dir, &config);
  ASSERT_FALSE(source.ok());
  EXPECT_TRUE(absl::StrContains(source.status().message(), "num_key_value_heads"));
}

TEST(ModelConfigTest, Llama3RopeScalingAndEosListFromHfConfig) {
  auto config = ParseHfConfig(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": 128001})",
                              R"({"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->head_dim, 64);
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 32.0);
  EXPECT_EQ(config->rope_scaling.original_max_position, 8192);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  // LLaMA-3.2-1B: 1.236B parameters with tied embeddings.
  EXPECT_EQ(config->ParameterCount(), 1235814400);
}

TEST(ModelConfigTest, SlidingWindowAndOtherActivationsAreRefused) {
  const char* base = R"({"model_type": "mistral", "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10,
    "max_position_embeddings": 32768, "sliding_window": 4096})";
  auto config = ParseHfConfig(base);
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(absl::StrContains(config.status().message(), "sliding_window"));
  auto gelu = ParseHfConfig(R"({"model_type": "llama", "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
    "vocab_size": 10, "hidden_act": "gelu"})");
  ASSERT_FALSE(gelu.ok());
  EXPECT_TRUE(absl::StrContains(gelu.status().message(), "hidden_act"));
  EXPECT_FALSE(ParseHfConfig("not json").ok());
  auto missing = ParseHfConfig(R"({"model_type": "llama"})");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "vocab_size"));
}

}  // namespace
}  // namespace otaro::engine
