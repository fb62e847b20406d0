#include "tools/make_model/random_model.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "engine/model/loader.h"
#include "gtest/gtest.h"
#include "sefp/checkpoint.h"

namespace otaro::tools {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

TEST(RandomModelTest, KnownShapesAreValid) {
  for (const std::string& name : RandomModelShapes()) {
    auto c = RandomModelShape(name);
    ASSERT_TRUE(c.ok()) << name << ": " << c.status();
  }
  auto llama = RandomModelShape("llama-3.2-1b");
  ASSERT_TRUE(llama.ok());
  EXPECT_EQ(llama->hidden_size, 2048);
  EXPECT_EQ(llama->intermediate_size, 8192);
  EXPECT_EQ(llama->num_layers, 16);
  EXPECT_EQ(llama->num_heads, 32);
  EXPECT_EQ(llama->num_kv_heads, 8);
  EXPECT_EQ(llama->head_dim, 64);
  EXPECT_EQ(llama->vocab_size, 128256);
  EXPECT_TRUE(llama->tie_word_embeddings);
  // LLaMA-3.2-1B: 1.236B parameters, 0.973B of them in the linear layers.
  EXPECT_EQ(llama->ParameterCount(), 1235814400);
  EXPECT_EQ(llama->LinearParameterCount(), 973078528);
  EXPECT_FALSE(RandomModelShape("llama-7b").ok());
}

TEST(RandomModelTest, TinyModelLoadsWithTheRightShapes) {
  auto config = RandomModelShape("tiny");
  ASSERT_TRUE(config.ok());
  RandomModelOptions options;
  options.seed = 7;
  auto checkpoint = MakeRandomCheckpoint(*config, options);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const std::string path = TempPath("tiny.sefp");
  ASSERT_TRUE(sefp::WriteCheckpoint(path, *checkpoint).ok());

  auto model = engine::LoadModel(path);
  ASSERT_TRUE(model.ok()) << model.status();
  const engine::ModelConfig& c = (*model)->config;
  EXPECT_EQ(c.architecture, "llama");
  EXPECT_EQ(c.hidden_size, config->hidden_size);
  EXPECT_EQ(c.intermediate_size, config->intermediate_size);
  EXPECT_EQ(c.num_layers, config->num_layers);
  EXPECT_EQ(c.num_heads, config->num_heads);
  EXPECT_EQ(c.num_kv_heads, config->num_kv_heads);
  EXPECT_EQ(c.head_dim, config->head_dim);
  EXPECT_EQ(c.vocab_size, config->vocab_size);
  EXPECT_EQ(c.tie_word_embeddings, config->tie_word_embeddings);
  EXPECT_EQ((*model)->tokenizer, nullptr);
  EXPECT_EQ((*model)->embed.size(), static_cast<size_t>(c.vocab_size * c.hidden_size));
  // The untied lm_head is held as SEFP planes (the default lm_head precision):
  // no float32 copy.
  EXPECT_TRUE((*model)->lm_head.empty());
  ASSERT_TRUE((*model)->quantized_lm_head.has_value());
  EXPECT_EQ((*model)->quantized_lm_head->out_features, c.vocab_size);
  EXPECT_EQ((*model)->quantized_lm_head->in_features, c.hidden_size);
  EXPECT_EQ((*model)->final_norm, std::vector<float>(c.hidden_size, 1.0f));
  ASSERT_EQ((*model)->layers.size(), static_cast<size_t>(c.num_layers));
  for (const engine::LlamaLayer& layer : (*model)->layers) {
    EXPECT_EQ(layer.input_norm, std::vector<float>(c.hidden_size, 1.0f));
    EXPECT_EQ(layer.post_attention_norm, std::vector<float>(c.hidden_size, 1.0f));
    EXPECT_EQ(layer.q.out_features, c.q_dim());
    EXPECT_EQ(layer.q.in_features, c.hidden_size);
    EXPECT_EQ(layer.k.out_features, c.kv_dim());
    EXPECT_EQ(layer.v.out_features, c.kv_dim());
    EXPECT_EQ(layer.o.out_features, c.hidden_size);
    EXPECT_EQ(layer.o.in_features, c.q_dim());
    EXPECT_EQ(layer.gate.out_features, c.intermediate_size);
    EXPECT_EQ(layer.up.out_features, c.intermediate_size);
    EXPECT_EQ(layer.down.out_features, c.hidden_size);
    EXPECT_EQ(layer.down.in_features, c.intermediate_size);
    EXPECT_TRUE(layer.q.quantized());
  }

  // Embeddings ~N(0, 0.02): mean near 0, standard deviation near 0.02.
  double sum = 0, sum2 = 0;
  for (float v : (*model)->embed) {
    sum += v;
    sum2 += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>((*model)->embed.size());
  EXPECT_NEAR(sum / n, 0.0, 0.001);
  EXPECT_NEAR(std::sqrt(sum2 / n), 0.02, 0.001);
  // The linear weights, decoded at E5M8, too.
  auto tensor = checkpoint->quantized.at("model.layers.1.mlp.down_proj.weight");
  auto w = tensor.DecodeAll(8, sefp::Reconstruction::kMidpoint);
  ASSERT_TRUE(w.ok()) << w.status();
  sum2 = 0;
  for (float v : *w) sum2 += static_cast<double>(v) * v;
  EXPECT_NEAR(std::sqrt(sum2 / w->size()), 0.02, 0.001);
}

TEST(RandomModelTest, SeedDecidesTheWeights) {
  auto config = RandomModelShape("tiny");
  ASSERT_TRUE(config.ok());
  RandomModelOptions a, b;
  a.seed = 1;
  b.seed = 2;
  auto ca = MakeRandomCheckpoint(*config, a), ca2 = MakeRandomCheckpoint(*config, a),
       cb = MakeRandomCheckpoint(*config, b);
  ASSERT_TRUE(ca.ok() && ca2.ok() && cb.ok());
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  EXPECT_EQ(ca->quantized.at(name).planes, ca2->quantized.at(name).planes);
  EXPECT_EQ(ca->dense.at("model.embed_tokens.weight").bytes,
            ca2->dense.at("model.embed_tokens.weight").bytes);
  EXPECT_NE(ca->quantized.at(name).planes, cb->quantized.at(name).planes);
  EXPECT_NE(ca->dense.at("model.embed_tokens.weight").bytes,
            cb->dense.at("model.embed_tokens.weight").bytes);
}

}  // namespace
}  // namespace otaro::tools
