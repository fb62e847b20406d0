// A Hugging Face folder as large models ship it: several safetensors shards,
// model.safetensors.index.json, BF16 and F16 tensors. Built here from the real
// stories260K weights, so the expected values are known exactly.
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "common/float16.h"
#include "common/safetensors/safetensors.h"
#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace otaro::engine {
namespace {

std::string StoriesHf() { return testing::SharedPath("data/models/stories260K-hf-converted"); }

// Writes the stories260K tensors into two shards: even-numbered tensors as
// BF16, odd ones as F16 (alternating by name order), with an index.
std::string MakeShardedFolder(const std::string& name, bool write_index) {
  std::string dir = testing::ScratchDir(name);
  std::filesystem::copy_file(StoriesHf() + "/config.json", dir + "/config.json");
  auto file = safetensors::File::Open(StoriesHf() + "/model.safetensors");
  EXPECT_TRUE(file.ok());
  safetensors::Writer shards[2];
  std::vector<std::vector<uint8_t>> storage;
  nlohmann::json weight_map;
  int i = 0;
  for (const auto& tensor : (*file)->tensors()) {
    std::vector<float> values;
    EXPECT_TRUE(tensor.CopyTo(&values).ok());
    const bool bf16 = i % 2 == 0;
    std::vector<uint8_t> bytes(values.size() * 2);
    for (size_t k = 0; k < values.size(); ++k) {
      uint16_t h = bf16 ? FloatToBf16(values[k]) : FloatToFp16(values[k]);
      std::memcpy(&bytes[2 * k], &h, 2);
    }
    storage.push_back(std::move(bytes));
    const int shard = i < 24 ? 0 : 1;
    EXPECT_TRUE(shards[shard]
                    .AddTensor(tensor.name,
                               bf16 ? safetensors::DType::kBF16 : safetensors::DType::kF16,
                               tensor.shape, storage.back())
                    .ok());
    weight_map[tensor.name] = shard == 0 ? "model-00001-of-00002.safetensors"
                                         : "model-00002-of-00002.safetensors";
    ++i;
  }
  EXPECT_TRUE(shards[0].WriteAtomically(dir + "/model-00001-of-00002.safetensors").ok());
  EXPECT_TRUE(shards[1].WriteAtomically(dir + "/model-00002-of-00002.safetensors").ok());
  if (write_index) {
    std::ofstream(dir + "/model.safetensors.index.json")
        << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump();
  }
  return dir;
}

TEST(ShardedFolderTest, LoadsShardsInBf16AndF16) {
  std::string dir = MakeShardedFolder("sharded", /*write_index=*/true);
  LoadOptions options;
  options.quantize = false;
  auto sharded = LoadModel(dir, options);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  auto original = LoadModel(StoriesHf(), options);
  ASSERT_TRUE(original.ok());
  // Every value is the original rounded to the shard's half type.
  const auto& a = (*original)->embed;
  const auto& b = (*sharded)->embed;
  ASSERT_EQ(a.size(), b.size());
  int exact_halves = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    bool as_bf16 = b[k] == Bf16ToFloat(FloatToBf16(a[k]));
    bool as_fp16 = b[k] == Fp16ToFloat(FloatToFp16(a[k]));
    ASSERT_TRUE(as_bf16 || as_fp16) << k;
    exact_halves += as_bf16 || as_fp16;
  }
  EXPECT_EQ(exact_halves, static_cast<int>(a.size()));
  // Quantized loading works from half-precision shards too.
  auto quantized = LoadModel(dir, {});
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  EXPECT_TRUE((*quantized)->layers[4].down.quantized());
}

TEST(ShardedFolderTest, MissingShardIsNamed) {
  std::string dir = MakeShardedFolder("sharded_missing", /*write_index=*/true);
  std::filesystem::remove(dir + "/model-00002-of-00002.safetensors");
  auto model = LoadModel(dir, {});
  ASSERT_FALSE(model.ok());
  EXPECT_TRUE(absl::StrContains(model.status().message(), "model-00002-of-00002.safetensors"))
      << model.status();
}

TEST(ShardedFolderTest, ShardsWithoutIndexAreAMissingModelFile) {
  std::string dir = MakeShardedFolder("sharded_noindex", /*write_index=*/false);
  auto model = LoadModel(dir, {});
  ASSERT_FALSE(model.ok());
  EXPECT_TRUE(absl::StrContains(model.status().message(), "model.safetensors")) << model.status();
}

}  // namespace
}  // namespace otaro::engine
