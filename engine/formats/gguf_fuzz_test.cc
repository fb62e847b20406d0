// Runs the GGUF fuzz entry point under gcc: hand-made seeds of every tensor
// type, the head of the real stories260K file, and a few thousand
// deterministic mutations. Passing means no crash, hang or sanitizer report.
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "common/testing/shared_data.h"
#include "engine/formats/gguf.h"
#include "engine/formats/gguf_test_util.h"
#include "gtest/gtest.h"
#include "tools/fuzz/fuzz_driver.h"

namespace otaro::engine::gguf {
namespace {

TEST(GgufFuzz, SeedsAndMutationsDoNotCrash) {
  using testing::MakeGguf;
  using testing::TestTensor;
  std::vector<std::vector<uint8_t>> seeds;
  auto blocks = [](size_t bytes) {
    std::vector<uint8_t> b(bytes);
    for (size_t k = 0; k < bytes; ++k) b[k] = static_cast<uint8_t>(k * 37 + 11);
    return b;
  };
  seeds.push_back(MakeGguf({{"f32", {4, 2}, 0, blocks(32)}, {"f16", {8}, 1, blocks(16)}}));
  seeds.push_back(MakeGguf({{"q8", {32}, 8, blocks(34)}, {"q40", {32}, 2, blocks(18)},
                            {"q41", {32}, 3, blocks(20)}}));
  seeds.push_back(MakeGguf({{"q4k", {256}, 12, blocks(144)}, {"q6k", {256}, 14, blocks(210)},
                            {"bf16", {2}, 30, blocks(4)}}, 64, 2));
  seeds.push_back(MakeGguf({}));
  auto real = MappedFile::Open(
      otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"));
  ASSERT_TRUE(real.ok()) << real.status();
  // Header, metadata (the 512-token vocabulary) and tensor table, plus a bit.
  seeds.emplace_back((*real)->data(), (*real)->data() + 16384);
  for (const auto& s : seeds) EXPECT_FALSE(s.empty());
  // The hand-made seeds are valid files.
  for (size_t k = 0; k < 4; ++k) EXPECT_TRUE(GgufFile::Parse(seeds[k]).ok()) << k;
  size_t runs = otaro::fuzz::RunSeedsAndMutations(seeds, 4000, /*rng_seed=*/20240601);
  EXPECT_EQ(runs, seeds.size() + 4000);
}

}  // namespace
}  // namespace otaro::engine::gguf
