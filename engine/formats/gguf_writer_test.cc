// The GGUF writer against the reader: every value type and tensor type it
// writes reads back the same, and bad input is refused with the key or tensor
// named.
#include "engine/formats/gguf_writer.h"

#include <cstring>

#include "common/testing/shared_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::engine::gguf {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<uint8_t> Bytes(const std::vector<float>& values) {
  std::vector<uint8_t> bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

TEST(GgufWriterTest, WritesWhatTheReaderReads) {
  GgufWriter w;
  ASSERT_TRUE(w.SetString("general.architecture", "llama").ok());
  ASSERT_TRUE(w.SetUint32("llama.block_count", 2).ok());
  ASSERT_TRUE(w.SetInt32("x.i32", -7).ok());
  ASSERT_TRUE(w.SetFloat32("x.f32", 1.5f).ok());
  ASSERT_TRUE(w.SetBool("x.bool", true).ok());
  ASSERT_TRUE(w.SetStringArray("x.strings", {"a", "", "ccc"}).ok());
  ASSERT_TRUE(w.SetFloat32Array("x.floats", std::vector<float>{0.5f, -2}).ok());
  ASSERT_TRUE(w.SetInt32Array("x.ints", std::vector<int32_t>{1, -2, 3}).ok());
  // 3 x 2 matrix (ggml dims {2, 3}), a vector, and an F16 pair, padded apart.
  ASSERT_TRUE(w.AddTensor("m", {2, 3}, TensorType::kF32, Bytes({1, 2, 3, 4, 5, 6})).ok());
  ASSERT_TRUE(w.AddTensor("v", {3}, TensorType::kF32, Bytes({7, 8, 9})).ok());
  ASSERT_TRUE(w.AddTensor("h", {2}, TensorType::kF16, {0x00, 0x3c, 0x00, 0xc0}).ok());
  const std::string path = otaro::testing::ScratchDir("writer") + "/t.gguf";
  ASSERT_TRUE(w.WriteAtomically(path).ok());

  auto file = GgufFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->version(), 3u);
  EXPECT_EQ(*(*file)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*file)->GetUint64("llama.block_count"), 2u);
  EXPECT_EQ(*(*file)->GetInt64("x.i32"), -7);
  EXPECT_EQ(*(*file)->GetDouble("x.f32"), 1.5);
  EXPECT_TRUE(*(*file)->GetBool("x.bool"));
  EXPECT_THAT(*(*file)->GetStringArray("x.strings"), ElementsAre("a", "", "ccc"));
  EXPECT_THAT(*(*file)->GetFloatArray("x.floats"), ElementsAre(0.5f, -2.0f));
  EXPECT_THAT(*(*file)->GetInt64Array("x.ints"), ElementsAre(1, -2, 3));
  ASSERT_EQ((*file)->tensors().size(), 3u);
  const TensorInfo* m = (*file)->FindTensor("m");
  ASSERT_NE(m, nullptr);
  EXPECT_THAT(m->dims, ElementsAre(2, 3));
  EXPECT_THAT(*(*file)->DequantizeTensor(*m), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(*(*file)->DequantizeTensor(*(*file)->FindTensor("v")), ElementsAre(7, 8, 9));
  EXPECT_THAT(*(*file)->DequantizeTensor(*(*file)->FindTensor("h")), ElementsAre(1.0f, -2.0f));

  // Every value copies into another file unchanged.
  GgufWriter copy;
  for (const auto& [key, value] : (*file)->metadata()) ASSERT_TRUE(copy.CopyValue(key, value).ok()) << key;
  const std::string copied = otaro::testing::ScratchDir("writer_copy") + "/c.gguf";
  ASSERT_TRUE(copy.WriteAtomically(copied).ok());
  auto again = GgufFile::Open(copied);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ((*again)->metadata().size(), (*file)->metadata().size());
  for (size_t i = 0; i < (*file)->metadata().size(); ++i) {
    const auto& [key, value] = (*file)->metadata()[i];
    EXPECT_EQ((*again)->metadata()[i].first, key);
    EXPECT_EQ((*again)->metadata()[i].second.type(), value.type()) << key;
    EXPECT_EQ((*again)->metadata()[i].second.DebugString(100), value.DebugString(100)) << key;
  }
}

TEST(GgufWriterTest, RefusesRepeatsAndWrongSizes) {
  GgufWriter w;
  ASSERT_TRUE(w.SetUint32("k", 1).ok());
  EXPECT_THAT(w.SetString("k", "x").message(), HasSubstr("'k' is set twice"));
  EXPECT_THAT(w.AddTensor("t", {3}, TensorType::kF32, Bytes({1, 2})).message(),
              HasSubstr("tensor 't'"));
  EXPECT_THAT(w.AddTensor("q", {32}, TensorType::kQ4_0, std::vector<uint8_t>(18)).message(),
              HasSubstr("only F32, F16 and BF16"));
  ASSERT_TRUE(w.AddTensor("t", {2}, TensorType::kF32, Bytes({1, 2})).ok());
  EXPECT_THAT(w.AddTensor("t", {2}, TensorType::kF32, Bytes({1, 2})).message(),
              HasSubstr("added twice"));
}

}  // namespace
}  // namespace otaro::engine::gguf
