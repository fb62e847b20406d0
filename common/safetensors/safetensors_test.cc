#include "common/safetensors/safetensors.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/testing/shared_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::safetensors {
namespace {

using ::testing::HasSubstr;

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A file from a literal header and a data section.
std::string RawFile(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

std::string ErrorOf(const std::string& file) {
  auto v = View::Parse(Bytes(file));
  EXPECT_FALSE(v.ok()) << "parsed a malformed file";
  return v.ok() ? "" : std::string(v.status().message());
}

TEST(SafetensorsTest, RoundTripInMemoryAndOnDisk) {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -0.0f};
  std::vector<uint16_t> b = {0x3c00, 0xbc00, 0x7bff};
  std::vector<int8_t> c = {-128, 0, 15};
  Writer w;
  ASSERT_TRUE(w.SetMetadata("format", "test").ok());
  EXPECT_EQ(w.SetMetadata("bad", "\xff").code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(w.AddTensor("a", DType::kF32, {2, 3},
                          {reinterpret_cast<const uint8_t*>(a.data()), a.size() * 4})
                  .ok());
  ASSERT_TRUE(w.AddTensor("b", DType::kF16, {3},
                          {reinterpret_cast<const uint8_t*>(b.data()), b.size() * 2})
                  .ok());
  ASSERT_TRUE(w.AddTensor("c", DType::kI8, {3},
                          {reinterpret_cast<const uint8_t*>(c.data()), c.size()})
                  .ok());
  EXPECT_FALSE(w.AddTensor("c", DType::kI8, {3},
                           {reinterpret_cast<const uint8_t*>(c.data()), c.size()})
                   .ok());
  EXPECT_FALSE(w.AddTensor("d", DType::kI8, {4},
                           {reinterpret_cast<const uint8_t*>(c.data()), c.size()})
                   .ok());

  std::string path = otaro::testing::ScratchDir("safetensors") + "/t.safetensors";
  ASSERT_TRUE(w.WriteAtomically(path).ok());
  auto file = File::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  std::string serialized = w.Serialize();
  auto view = View::Parse(Bytes(serialized));
  ASSERT_TRUE(view.ok()) << view.status();
  for (const View* v : std::vector<const View*>{&(*file)->view(), &*view}) {
    EXPECT_EQ(v->metadata().at("format"), "test");
    ASSERT_EQ(v->tensors().size(), 3u);
    const TensorView* ta = v->Find("a");
    ASSERT_NE(ta, nullptr);
    EXPECT_EQ(ta->dtype, DType::kF32);
    EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
    std::vector<float> back;
    ASSERT_TRUE(ta->CopyTo(&back).ok());
    ASSERT_EQ(back.size(), a.size());
    EXPECT_EQ(std::memcmp(back.data(), a.data(), a.size() * 4), 0);
    std::vector<uint16_t> wrong;
    EXPECT_FALSE(ta->CopyTo(&wrong).ok());
    EXPECT_EQ(v->Find("c")->bytes[0], 0x80);
    EXPECT_EQ(v->Find("missing"), nullptr);
  }
  // Data section of our files starts on a 64-byte boundary.
  uint64_t hl = 0;
  std::memcpy(&hl, serialized.data(), 8);
  EXPECT_EQ((8 + hl) % 64, 0u);
}

TEST(SafetensorsTest, ToFloat32ConvertsEachFloatDtypeExactly) {
  const float f32[2] = {1.5f, -0.25f};
  const uint16_t f16[2] = {0x3e00, 0xb400};   // 1.5, -0.25
  const uint16_t bf16[2] = {0x3fc0, 0xbe80};  // 1.5, -0.25
  const int32_t i32[2] = {1, 2};
  Writer w;
  auto bytes = [](const void* p, size_t n) {
    return absl::Span<const uint8_t>(static_cast<const uint8_t*>(p), n);
  };
  ASSERT_TRUE(w.AddTensor("a", DType::kF32, {2}, bytes(f32, sizeof(f32))).ok());
  ASSERT_TRUE(w.AddTensor("b", DType::kF16, {2}, bytes(f16, sizeof(f16))).ok());
  ASSERT_TRUE(w.AddTensor("c", DType::kBF16, {2}, bytes(bf16, sizeof(bf16))).ok());
  ASSERT_TRUE(w.AddTensor("d", DType::kI32, {2}, bytes(i32, sizeof(i32))).ok());
  const std::string file = w.Serialize();
  auto view = View::Parse(bytes(file.data(), file.size()));
  ASSERT_TRUE(view.ok()) << view.status();
  for (const char* name : {"a", "b", "c"}) {
    auto values = view->Find(name)->ToFloat32();
    ASSERT_TRUE(values.ok()) << values.status();
    EXPECT_EQ(*values, (std::vector<float>{1.5f, -0.25f})) << name;
  }
  auto ints = view->Find("d")->ToFloat32();
  ASSERT_FALSE(ints.ok());
  EXPECT_EQ(ints.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ints.status().message()), ::testing::HasSubstr("tensor 'd' has dtype I32"));
}

TEST(SafetensorsTest, EmptyFileAndNoTensors) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("too short"));
  auto v = View::Parse(Bytes(RawFile("{}", "")));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_TRUE(v->tensors().empty());
}

TEST(SafetensorsTest, HeaderLargerThanFile) {
  std::string f = RawFile(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x");
  f[0] = static_cast<char>(0xff);
  f[3] = 0x01;
  EXPECT_THAT(ErrorOf(f), HasSubstr("larger than the file"));
}

TEST(SafetensorsTest, TruncatedData) {
  std::string f = RawFile(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                          std::string(16, '\0'));
  f.resize(f.size() - 3);
  EXPECT_THAT(ErrorOf(f), HasSubstr("past the end"));
}

TEST(SafetensorsTest, MalformedHeaders) {
  const std::string d4(4, '\0');
  EXPECT_THAT(ErrorOf(RawFile("{not json", d4)), HasSubstr("not valid JSON"));
  EXPECT_THAT(ErrorOf(RawFile("[1,2]", "")), HasSubstr("not a JSON object"));
  EXPECT_THAT(ErrorOf(RawFile(R"({"a":{"dtype":"Q7","shape":[4],"data_offsets":[0,4]}})", d4)),
              HasSubstr("unknown safetensors dtype"));
  EXPECT_THAT(ErrorOf(RawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", d4)),
              HasSubstr("8 bytes but data_offsets span 4"));
  EXPECT_THAT(ErrorOf(RawFile(R"({"a":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}})", d4)),
              HasSubstr("non-negative"));
  EXPECT_THAT(ErrorOf(RawFile(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[4,0]}})", d4)),
              HasSubstr("reversed"));
  EXPECT_THAT(ErrorOf(RawFile(R"({"a":{"dtype":"U8","shape":[4]}})", d4)),
              HasSubstr("needs dtype"));
  EXPECT_THAT(
      ErrorOf(RawFile(
          R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", d4)),
      HasSubstr("overflows"));
  EXPECT_THAT(ErrorOf(RawFile(R"({"__metadata__":{"k":1}})", "")), HasSubstr("not a string"));
  EXPECT_THAT(ErrorOf(RawFile(
                  R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                  d4)),
              HasSubstr("duplicate key 'a'"));
}

TEST(SafetensorsTest, OverlapsHolesAndTrailingBytes) {
  const std::string d4(4, '\0');
  EXPECT_THAT(ErrorOf(RawFile(
                  R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                  d4)),
              HasSubstr("overlaps"));
  EXPECT_THAT(ErrorOf(RawFile(
                  R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                  d4)),
              HasSubstr("hole"));
  EXPECT_THAT(ErrorOf(RawFile(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", d4)),
              HasSubstr("trailing bytes"));
}

TEST(SafetensorsTest, OpenMissingFileNamesIt) {
  auto f = File::Open("/nonexistent/model.safetensors");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("/nonexistent/model.safetensors"));
}

}  // namespace
}  // namespace otaro::safetensors
