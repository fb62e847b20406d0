#include "engine/formats/gguf.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/mapped_file.h"
#include "common/testing/shared_data.h"
#include "engine/formats/gguf_test_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace otaro::engine::gguf {
namespace {

using testing::ByteWriter;
using testing::MakeGguf;
using testing::TestTensor;

// float -> IEEE half for values that are exactly representable (tests only).
uint16_t ExactHalf(float f) {
  if (f == 0) return std::signbit(f) ? 0x8000 : 0;
  uint16_t sign = f < 0 ? 0x8000 : 0;
  float a = std::fabs(f);
  int e;
  float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int exp = e - 1 + 15;
  EXPECT_GT(exp, 0) << "subnormal not supported by this helper";
  uint32_t mant = static_cast<uint32_t>(std::ldexp(m * 2 - 1, 10));
  EXPECT_EQ(std::ldexp(1 + mant / 1024.0f, e - 1), a) << f << " is not exact in half";
  return sign | static_cast<uint16_t>(exp << 10) | static_cast<uint16_t>(mant);
}

void PutHalf(std::vector<uint8_t>* b, float f) {
  uint16_t h = ExactHalf(f);
  b->push_back(h & 0xFF);
  b->push_back(h >> 8);
}

std::vector<float> Deq(TensorType type, const std::vector<uint8_t>& data, uint64_t n) {
  std::vector<float> out(n, std::nanf(""));
  absl::Status s = DequantizeToFloat(static_cast<uint32_t>(type), data, n, out.data());
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

TEST(GgufDequant, F32F16BF16) {
  std::vector<uint8_t> f32(8);
  float v[2] = {1.25f, -7.5e-3f};
  std::memcpy(f32.data(), v, 8);
  EXPECT_EQ(Deq(TensorType::kF32, f32, 2), (std::vector<float>{1.25f, -7.5e-3f}));
  std::vector<uint8_t> f16 = {0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B};
  EXPECT_EQ(Deq(TensorType::kF16, f16, 3), (std::vector<float>{1.0f, -2.0f, 65504.0f}));
  std::vector<uint8_t> bf16 = {0x80, 0x3F, 0x40, 0xC0, 0x49, 0x40};
  EXPECT_EQ(Deq(TensorType::kBF16, bf16, 3), (std::vector<float>{1.0f, -3.0f, 3.140625f}));
}

TEST(GgufDequant, Q8_0) {
  // Two blocks: d = 0.5 with q = -128..-97, d = -0.25 with q = 0..31 * 4 - 64.
  std::vector<uint8_t> b;
  PutHalf(&b, 0.5f);
  for (int j = 0; j < 32; ++j) b.push_back(static_cast<uint8_t>(static_cast<int8_t>(-128 + j)));
  PutHalf(&b, -0.25f);
  for (int j = 0; j < 32; ++j) b.push_back(static_cast<uint8_t>(static_cast<int8_t>(j * 4 - 64)));
  ASSERT_EQ(b.size(), 68u);
  std::vector<float> y = Deq(TensorType::kQ8_0, b, 64);
  EXPECT_EQ(y[0], -64.0f);
  EXPECT_EQ(y[31], -48.5f);
  EXPECT_EQ(y[32], 16.0f);
  EXPECT_EQ(y[63], -15.0f);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(y[j], 0.5f * (-128 + j));
    EXPECT_EQ(y[32 + j], -0.25f * (j * 4 - 64));
  }
}

TEST(GgufDequant, Q4_0) {
  // d = 0.5; byte j holds low nibble j and high nibble 15-j. Low nibbles are
  // elements 0..15, high nibbles elements 16..31, each minus 8.
  std::vector<uint8_t> b;
  PutHalf(&b, 0.5f);
  for (int j = 0; j < 16; ++j) b.push_back(static_cast<uint8_t>(j | ((15 - j) << 4)));
  std::vector<float> y = Deq(TensorType::kQ4_0, b, 32);
  EXPECT_EQ(y[0], -4.0f);
  EXPECT_EQ(y[15], 3.5f);
  EXPECT_EQ(y[16], 3.5f);
  EXPECT_EQ(y[31], -4.0f);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * (j - 8));
    EXPECT_EQ(y[16 + j], 0.5f * (7 - j));
  }
}

TEST(GgufDequant, Q4_1) {
  // d = 0.25, m = -1; y = d * q + m.
  std::vector<uint8_t> b;
  PutHalf(&b, 0.25f);
  PutHalf(&b, -1.0f);
  for (int j = 0; j < 16; ++j) b.push_back(static_cast<uint8_t>((j % 16) | (((j * 3) % 16) << 4)));
  std::vector<float> y = Deq(TensorType::kQ4_1, b, 32);
  EXPECT_EQ(y[0], -1.0f);
  EXPECT_EQ(y[15], 2.75f);
  EXPECT_EQ(y[17], -0.25f);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.25f * j - 1.0f);
    EXPECT_EQ(y[16 + j], 0.25f * ((j * 3) % 16) - 1.0f);
  }
}

// Packs eight 6-bit scales and mins the way ggml's Q4_K quantizer does.
std::vector<uint8_t> PackScalesQ4K(const int sc[8], const int mn[8]) {
  std::vector<uint8_t> s(12, 0);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      s[j] = static_cast<uint8_t>(sc[j]);
      s[j + 4] = static_cast<uint8_t>(mn[j]);
    } else {
      s[j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | ((mn[j] & 0xF) << 4));
      s[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      s[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
    }
  }
  return s;
}

TEST(GgufDequant, Q4_K) {
  // Super-block of 256 = 8 sub-blocks of 32; sub-block s has scale sc[s] and
  // min mn[s] (6 bits each); y = d * sc * q - dmin * mn. Within each 64
  // elements, the first 32 are the low nibbles of 32 bytes, the next 32 the
  // high nibbles of the same bytes.
  const float d = 0.5f, dmin = 0.25f;
  const int sc[8] = {1, 63, 17, 32, 5, 48, 21, 60};  // >= 16 exercises the packed high bits
  const int mn[8] = {0, 2, 63, 16, 33, 7, 50, 1};
  std::vector<int> q(256);
  for (int e = 0; e < 256; ++e) q[e] = (e * 7 + 3) % 16;
  std::vector<uint8_t> b;
  PutHalf(&b, d);
  PutHalf(&b, dmin);
  std::vector<uint8_t> scales = PackScalesQ4K(sc, mn);
  b.insert(b.end(), scales.begin(), scales.end());
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      b.push_back(static_cast<uint8_t>(q[c * 64 + l] | (q[c * 64 + 32 + l] << 4)));
    }
  }
  ASSERT_EQ(b.size(), 144u);
  std::vector<float> y = Deq(TensorType::kQ4_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    int s = e / 32;
    EXPECT_EQ(y[e], d * sc[s] * q[e] - dmin * mn[s]) << "element " << e;
  }
  // Two literal spot values: e=0: q=3, sc=1, mn=0 -> 1.5;
  // e=255: q=(255*7+3)%16=12, sc=60, mn=1 -> 0.5*60*12 - 0.25 = 359.75.
  EXPECT_EQ(y[0], 1.5f);
  EXPECT_EQ(y[255], 359.75f);
}

TEST(GgufDequant, Q6_K) {
  // 256 = 2 halves of 128; within a half, element l' = 32*g + l (g = 0..3)
  // takes 4 low bits from ql (g 0/1: low nibble of ql[l] / ql[l+32]; g 2/3:
  // high nibbles) and 2 high bits from qh[l] bits 2g..2g+1; scale index
  // l/16 + 2g (8 per half); y = d * scale * (q - 32).
  const float d = 0.125f;
  std::vector<int> q(256);
  for (int e = 0; e < 256; ++e) q[e] = (e * 37 + 11) % 64;
  int8_t scales[16];
  for (int s = 0; s < 16; ++s) scales[s] = static_cast<int8_t>((s % 2 ? -1 : 1) * (s * 9 + 1));
  std::vector<uint8_t> ql(128, 0), qh(64, 0);
  for (int e = 0; e < 256; ++e) {
    int n = e / 128, lp = e % 128, g = lp / 32, l = lp % 32;
    int low = q[e] & 0xF, high = q[e] >> 4;
    int qi = n * 64 + l + (g % 2 ? 32 : 0);
    ql[qi] |= static_cast<uint8_t>(g < 2 ? low : low << 4);
    qh[n * 32 + l] |= static_cast<uint8_t>(high << (2 * g));
  }
  std::vector<uint8_t> b = ql;
  b.insert(b.end(), qh.begin(), qh.end());
  for (int s = 0; s < 16; ++s) b.push_back(static_cast<uint8_t>(scales[s]));
  PutHalf(&b, d);
  ASSERT_EQ(b.size(), 210u);
  std::vector<float> y = Deq(TensorType::kQ6_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    int n = e / 128, lp = e % 128, g = lp / 32, l = lp % 32;
    int s = n * 8 + l / 16 + 2 * g;
    EXPECT_EQ(y[e], d * scales[s] * (q[e] - 32)) << "element " << e;
  }
  // Literal: e=0: q=11, scale 1 -> 0.125 * -21 = -2.625.
  EXPECT_EQ(y[0], -2.625f);
}

TEST(GgufDequant, RejectsWrongSizesAndTypes) {
  std::vector<float> out(64);
  std::vector<uint8_t> b(34);
  EXPECT_FALSE(DequantizeToFloat(8, b, 33, out.data()).ok());  // not a multiple of 32
  EXPECT_FALSE(DequantizeToFloat(8, b, 64, out.data()).ok());  // needs 68 bytes
  absl::Status s = DequantizeToFloat(13, std::vector<uint8_t>(176), 256, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_TRUE(absl::StrContains(s.message(), "Q5_K")) << s;
  EXPECT_FALSE(DequantizeToFloat(99, b, 32, out.data()).ok());
}

// ---------------------------------------------------------------------------
// Parsing hand-made files.

std::vector<TestTensor> SmallTensors() {
  std::vector<uint8_t> f32(6 * 4);
  for (int k = 0; k < 6; ++k) {
    float v = 0.5f * k - 1;
    std::memcpy(f32.data() + 4 * k, &v, 4);
  }
  std::vector<uint8_t> q8;
  PutHalf(&q8, 2.0f);
  for (int j = 0; j < 32; ++j) q8.push_back(static_cast<uint8_t>(j - 16));
  return {{"a.weight", {3, 2}, 0, f32}, {"b.q8", {32}, 8, q8}};
}

TEST(GgufParse, MetadataOfEveryType) {
  std::vector<uint8_t> bytes = MakeGguf(SmallTensors());
  auto f = GgufFile::Parse(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.metadata().size(), 16u);
  EXPECT_EQ(*g.GetUint64("t.u8"), 200u);
  EXPECT_EQ(*g.GetInt64("t.i8"), -100);
  EXPECT_EQ(*g.GetUint64("t.u16"), 60000u);
  EXPECT_EQ(*g.GetInt64("t.i16"), -30000);
  EXPECT_EQ(*g.GetUint64("t.u32"), 4000000000u);
  EXPECT_EQ(*g.GetInt64("t.i32"), -2000000000);
  EXPECT_EQ(*g.GetDouble("t.f32"), 1.5);
  EXPECT_EQ(*g.GetBool("t.bool"), true);
  EXPECT_EQ(*g.GetString("t.str"), "héllo");
  EXPECT_EQ(*g.GetUint64("t.u64"), 18000000000000000000ull);
  EXPECT_EQ(*g.GetInt64("t.i64"), -9000000000000000000ll);
  EXPECT_EQ(*g.GetDouble("t.f64"), -2.25);
  EXPECT_EQ(*g.GetStringArray("t.arr_str"),
            (std::vector<absl::string_view>{"a", "", "ccc"}));
  EXPECT_EQ(*g.GetInt64Array("t.arr_i32"), (std::vector<int64_t>{1, -2, 3, -4}));
  const Value* aa = g.Find("t.arr_arr");
  ASSERT_NE(aa, nullptr);
  EXPECT_EQ(aa->array_type(), ValueType::kArray);
  auto inner = aa->AsValueArray();
  ASSERT_TRUE(inner.ok());
  ASSERT_EQ(inner->size(), 2u);
  EXPECT_EQ(*(*inner)[0].AsFloatArray(), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ((*inner)[1].array_type(), ValueType::kBool);
  EXPECT_EQ(*g.GetUint64("general.alignment"), 32u);

  // Type mismatches and missing keys are clear errors.
  auto wrong = g.GetString("t.u8");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(wrong.status().message(), "t.u8")) << wrong.status();
  EXPECT_TRUE(absl::StrContains(wrong.status().message(), "uint8")) << wrong.status();
  EXPECT_FALSE(g.GetUint64("t.i8").ok());  // negative
  EXPECT_EQ(g.GetString("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(g.GetStringArray("t.arr_i32").ok());
}

TEST(GgufParse, TensorsAndAlignment) {
  for (uint32_t alignment : {32u, 64u, 8u}) {
    std::vector<uint8_t> bytes = MakeGguf(SmallTensors(), alignment);
    auto f = GgufFile::Parse(bytes);
    ASSERT_TRUE(f.ok()) << f.status();
    const GgufFile& g = **f;
    EXPECT_EQ(g.alignment(), alignment);
    EXPECT_EQ(g.data_offset() % alignment, 0u);
    ASSERT_EQ(g.tensors().size(), 2u);
    const TensorInfo* a = g.FindTensor("a.weight");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->dims, (std::vector<uint64_t>{3, 2}));
    EXPECT_EQ(a->n_elements, 6u);
    EXPECT_EQ(a->n_bytes, 24u);
    EXPECT_EQ(a->ShapeString(), "[3, 2] F32");
    auto av = g.DequantizeTensor(*a);
    ASSERT_TRUE(av.ok());
    EXPECT_EQ(*av, (std::vector<float>{-1, -0.5f, 0, 0.5f, 1, 1.5f}));
    const TensorInfo* b = g.FindTensor("b.q8");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->offset % alignment, 0u);
    auto bv = g.DequantizeTensor(*b);
    ASSERT_TRUE(bv.ok());
    EXPECT_EQ((*bv)[0], -32.0f);
    EXPECT_EQ((*bv)[31], 30.0f);
    EXPECT_EQ(g.GetTensor("missing").status().code(), absl::StatusCode::kNotFound);
  }
}

TEST(GgufParse, Version2) {
  std::vector<uint8_t> bytes = MakeGguf(SmallTensors(), 32, 2);
  auto f = GgufFile::Parse(bytes);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 2u);
}

TEST(GgufParse, EveryTruncationIsAnError) {
  std::vector<uint8_t> bytes = MakeGguf(SmallTensors());
  ASSERT_TRUE(GgufFile::Parse(bytes).ok());
  for (size_t n = 0; n < bytes.size(); ++n) {
    // A heap copy of exactly n bytes, so an out-of-bounds read would be caught
    // by ASan (and would read garbage otherwise).
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + n);
    auto f = GgufFile::Parse(prefix);
    ASSERT_FALSE(f.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_FALSE(f.status().message().empty());
  }
}

// Builds a file with one metadata entry / tensor info written by `body`.
std::vector<uint8_t> Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  ByteWriter w;
  w.Raw({'G', 'G', 'U', 'F'}).U32(version).U64(n_tensors).U64(n_kv);
  return w.bytes();
}

std::string ParseError(const std::vector<uint8_t>& bytes) {
  auto f = GgufFile::Parse(bytes);
  if (f.ok()) return "OK";
  return std::string(f.status().message());
}

TEST(GgufParse, MalformedFilesGiveClearErrors) {
  EXPECT_TRUE(absl::StrContains(ParseError({'G', 'G', 'U', 'X', 3, 0, 0, 0}), "not a GGUF"));
  {
    ByteWriter w;
    w.Raw(Header(0, 0, 1));
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "version 1")) << ParseError(w.bytes());
  }
  {
    ByteWriter w;
    w.Raw(Header(0, 0, 0x03000000));
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "big-endian"));
  }
  {
    ByteWriter w;
    w.Raw(Header(0, 1ull << 62));
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "metadata count"));
  }
  {
    ByteWriter w;
    w.Raw(Header(~0ull, 0));
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "tensor count"));
  }
  {  // key length far beyond the file
    ByteWriter w;
    w.Raw(Header(0, 1)).U64(~0ull - 3).U32(4).U32(0);
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "length")) << ParseError(w.bytes());
  }
  {  // unknown value type
    ByteWriter w;
    w.Raw(Header(0, 1)).Str("k").U32(13).U32(0);
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "unknown value type 13"));
  }
  {  // absurd array count
    ByteWriter w;
    w.Raw(Header(0, 1)).Str("k").U32(9).U32(4).U64(1ull << 61).U32(1);
    std::string e = ParseError(w.bytes());
    EXPECT_TRUE(absl::StrContains(e, "claims")) << e;
    EXPECT_TRUE(absl::StrContains(e, "\"k\"")) << e;
  }
  {  // arrays nested too deep
    ByteWriter w;
    w.Raw(Header(0, 1)).Str("k").U32(9);
    for (int d = 0; d < 20; ++d) w.U32(9).U64(1);
    w.U32(4).U64(0);
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "nested")) << ParseError(w.bytes());
  }
  {  // duplicate key
    ByteWriter w;
    w.Raw(Header(0, 2)).Str("k").U32(4).U32(1).Str("k").U32(4).U32(2);
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "duplicate metadata key"));
  }
  {  // invalid bool
    ByteWriter w;
    w.Raw(Header(0, 1)).Str("k").U32(7).Put<uint8_t>(7);
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "bool"));
  }
  {  // alignment not a power of two / wrong type
    ByteWriter w;
    w.Raw(Header(0, 1)).Str("general.alignment").U32(4).U32(48);
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "power of two"));
    ByteWriter w2;
    w2.Raw(Header(0, 1)).Str("general.alignment").U32(8).Str("32");
    EXPECT_TRUE(absl::StrContains(ParseError(w2.bytes()), "general.alignment"));
  }
  auto tensor_file = [](uint32_t n_dims, std::vector<uint64_t> dims, uint32_t type,
                        uint64_t offset, size_t data_bytes) {
    ByteWriter w;
    w.Raw(Header(1, 0)).Str("t").U32(n_dims);
    for (uint64_t d : dims) w.U64(d);
    w.U32(type).U64(offset).PadTo(32);
    w.Raw(std::vector<uint8_t>(data_bytes, 0));
    return w.bytes();
  };
  EXPECT_EQ(ParseError(tensor_file(2, {4, 2}, 0, 0, 32)), "OK");
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(0, {}, 0, 0, 32)), "0 dimensions"));
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(5, {1, 1, 1, 1, 1}, 0, 0, 32)),
                                "5 dimensions"));
  EXPECT_TRUE(absl::StrContains(
      ParseError(tensor_file(3, {1ull << 40, 1ull << 40, 1ull << 40}, 0, 0, 32)), "overflow"));
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(2, {4, 2}, 77, 0, 32)), "tensor type 77"));
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(2, {4, 2}, 0, 8, 32)), "alignment"));
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(2, {4, 2}, 0, 0, 31)), "past the end"));
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(2, {4, 2}, 0, 1ull << 63, 32)),
                                "past the end"));
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(2, {1ull << 40, 4}, 0, 0, 32)),
                                "past the end"));
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(2, {1ull << 61, 4}, 0, 0, 32)),
                                "overflow"));
  EXPECT_TRUE(absl::StrContains(ParseError(tensor_file(1, {33}, 8, 0, 64)), "block size"));
  {  // duplicate tensor names
    ByteWriter w;
    w.Raw(Header(2, 0));
    w.Str("t").U32(1).U64(8).U32(0).U64(0);
    w.Str("t").U32(1).U64(8).U32(0).U64(32);
    w.PadTo(32).Raw(std::vector<uint8_t>(64, 0));
    EXPECT_TRUE(absl::StrContains(ParseError(w.bytes()), "duplicate tensor"));
  }
}

TEST(GgufParse, OpenErrorsNameThePath) {
  auto f = GgufFile::Open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(absl::StrContains(f.status().message(), "/nonexistent/model.gguf"));
}

// ---------------------------------------------------------------------------
// Rotary permutation helpers.

TEST(GgufRotary, KnownPermutationAndInverse) {
  // 2 heads of dim 4, 1 column: GGUF row order per head is HF rows 0,2,1,3.
  std::vector<float> gguf = {0, 2, 1, 3, 4, 6, 5, 7};
  std::vector<float> w = gguf;
  ASSERT_TRUE(UndoGgufRotaryPermutation(absl::MakeSpan(w), 8, 1, 2).ok());
  EXPECT_EQ(w, (std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7}));
  ASSERT_TRUE(ApplyGgufRotaryPermutation(absl::MakeSpan(w), 8, 1, 2).ok());
  EXPECT_EQ(w, gguf);
  // head_dim 8, 3 columns: row r of a head in GGUF = HF row (r%2)*4 + r/2.
  std::vector<float> m(2 * 8 * 3);
  for (size_t k = 0; k < m.size(); ++k) m[k] = static_cast<float>(k);
  std::vector<float> hf = m;
  ASSERT_TRUE(UndoGgufRotaryPermutation(absl::MakeSpan(hf), 16, 3, 2).ok());
  for (int h = 0; h < 2; ++h) {
    for (int r = 0; r < 8; ++r) {
      int hf_row = (r % 2) * 4 + r / 2;
      for (int c = 0; c < 3; ++c) {
        EXPECT_EQ(hf[(h * 8 + hf_row) * 3 + c], m[(h * 8 + r) * 3 + c]);
      }
    }
  }
  EXPECT_FALSE(UndoGgufRotaryPermutation(absl::MakeSpan(w), 8, 1, 3).ok());  // 8 % 3
  EXPECT_FALSE(UndoGgufRotaryPermutation(absl::MakeSpan(w), 6, 1, 2).ok());  // size
  EXPECT_FALSE(UndoGgufRotaryPermutation(absl::MakeSpan(w), 8, 1, 8).ok());  // odd head dim
}

// ---------------------------------------------------------------------------
// The real stories260K files.

class Stories260K : public ::testing::Test {
 protected:
  void SetUp() override {
    auto f = GgufFile::Open(otaro::testing::SharedPath(
        "data/models/stories260K-gguf/stories260K.gguf"));
    ASSERT_TRUE(f.ok()) << f.status();
    gguf_ = std::move(*f);
    auto bin = MappedFile::Open(otaro::testing::SharedPath(
        "data/models/stories260K-llama2c/stories260K.bin"));
    ASSERT_TRUE(bin.ok()) << bin.status();
    bin_ = std::move(*bin);
  }

  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<MappedFile> bin_;
};

TEST_F(Stories260K, Metadata) {
  const GgufFile& g = *gguf_;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(*g.GetString("general.architecture"), "llama");
  EXPECT_EQ(*g.GetUint64("llama.embedding_length"), 64u);
  EXPECT_EQ(*g.GetUint64("llama.feed_forward_length"), 172u);
  EXPECT_EQ(*g.GetUint64("llama.block_count"), 5u);
  EXPECT_EQ(*g.GetUint64("llama.attention.head_count"), 8u);
  EXPECT_EQ(*g.GetUint64("llama.attention.head_count_kv"), 4u);
  EXPECT_NEAR(*g.GetDouble("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-12);
  EXPECT_EQ(*g.GetString("tokenizer.ggml.model"), "llama");
  auto tokens = g.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[0], "<unk>");
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ((*tokens)[3], "<0x00>");
  EXPECT_EQ(g.GetFloatArray("tokenizer.ggml.scores")->size(), 512u);
  EXPECT_EQ(g.GetInt64Array("tokenizer.ggml.token_type")->size(), 512u);
  EXPECT_EQ(*g.GetUint64("tokenizer.ggml.bos_token_id"), 1u);
  EXPECT_EQ(*g.GetUint64("tokenizer.ggml.eos_token_id"), 2u);
  EXPECT_EQ(g.tensors().size(), 3u + 5u * 9u);
}

// llama2.c legacy layout: 7 int32 header, then token embeddings, all layers'
// attention norms, wq, wk, wv, wo, ffn norms, w1, w2, w3, the final norm.
TEST_F(Stories260K, TensorsMatchTheLlama2cFile) {
  const int32_t* hdr = reinterpret_cast<const int32_t*>(bin_->data());
  const int64_t dim = hdr[0], hidden = hdr[1], layers = hdr[2], heads = hdr[3],
                kv_heads = hdr[4], vocab = hdr[5];
  ASSERT_EQ(dim, 64);
  ASSERT_EQ(layers, 5);
  ASSERT_GT(vocab, 0);  // shared classifier
  const int64_t kv_dim = dim * kv_heads / heads;
  const float* p = reinterpret_cast<const float*>(bin_->data() + 28);
  const float* end = reinterpret_cast<const float*>(bin_->data() + bin_->size());
  auto take = [&](int64_t n) {
    const float* r = p;
    p += n;
    EXPECT_LE(p, end);
    return r;
  };
  const float* tok = take(vocab * dim);
  const float* att_norm = take(layers * dim);
  const float* wq = take(layers * dim * dim);
  const float* wk = take(layers * kv_dim * dim);
  const float* wv = take(layers * kv_dim * dim);
  const float* wo = take(layers * dim * dim);
  const float* ffn_norm = take(layers * dim);
  const float* w1 = take(layers * hidden * dim);
  const float* w2 = take(layers * dim * hidden);
  const float* w3 = take(layers * hidden * dim);
  const float* final_norm = take(dim);

  int compared = 0;
  auto expect_same = [&](const std::string& name, const float* ref, int64_t n) {
    const TensorInfo* t = gguf_->FindTensor(name);
    ASSERT_NE(t, nullptr) << name;
    ASSERT_EQ(t->n_elements, static_cast<uint64_t>(n)) << name;
    ASSERT_EQ(t->raw_type, 0u) << name;
    EXPECT_EQ(std::memcmp(t->data.data(), ref, n * 4), 0) << name << " bytes differ";
    auto deq = gguf_->DequantizeTensor(*t);
    ASSERT_TRUE(deq.ok()) << deq.status();
    EXPECT_EQ(std::memcmp(deq->data(), ref, n * 4), 0) << name << " dequantized differs";
    ++compared;
  };
  expect_same("token_embd.weight", tok, vocab * dim);
  expect_same("output.weight", tok, vocab * dim);  // tied in llama2.c
  expect_same("output_norm.weight", final_norm, dim);
  for (int64_t l = 0; l < layers; ++l) {
    std::string b = absl::StrCat("blk.", l, ".");
    expect_same(b + "attn_norm.weight", att_norm + l * dim, dim);
    expect_same(b + "attn_q.weight", wq + l * dim * dim, dim * dim);
    expect_same(b + "attn_k.weight", wk + l * kv_dim * dim, kv_dim * dim);
    expect_same(b + "attn_v.weight", wv + l * kv_dim * dim, kv_dim * dim);
    expect_same(b + "attn_output.weight", wo + l * dim * dim, dim * dim);
    expect_same(b + "ffn_norm.weight", ffn_norm + l * dim, dim);
    expect_same(b + "ffn_gate.weight", w1 + l * hidden * dim, hidden * dim);
    expect_same(b + "ffn_down.weight", w2 + l * dim * hidden, dim * hidden);
    expect_same(b + "ffn_up.weight", w3 + l * hidden * dim, hidden * dim);
  }
  EXPECT_EQ(compared, 48);
  EXPECT_EQ(compared, static_cast<int>(gguf_->tensors().size()));
}

// The HF folder was converted from the same weights with q/k rows moved from
// the interleaved RoPE layout to rotate_half: undoing GGUF's permutation must
// reproduce its q_proj / k_proj exactly. (Minimal safetensors header parsing,
// test-only: an 8-byte length, a JSON header, then the data.)
TEST_F(Stories260K, UndoRotaryPermutationMatchesHuggingFaceWeights) {
  auto st = MappedFile::Open(otaro::testing::SharedPath(
      "data/models/stories260K-hf-converted/model.safetensors"));
  ASSERT_TRUE(st.ok()) << st.status();
  uint64_t header_len;
  std::memcpy(&header_len, (*st)->data(), 8);
  ASSERT_LT(8 + header_len, (*st)->size());
  nlohmann::json header = nlohmann::json::parse(
      std::string(reinterpret_cast<const char*>((*st)->data() + 8), header_len));
  auto hf_tensor = [&](const std::string& name) {
    const auto& e = header.at(name);
    EXPECT_EQ(e.at("dtype"), "F32");
    uint64_t b = e.at("data_offsets")[0], en = e.at("data_offsets")[1];
    std::vector<float> v((en - b) / 4);
    std::memcpy(v.data(), (*st)->data() + 8 + header_len + b, en - b);
    return v;
  };
  const uint64_t n_head = *gguf_->GetUint64("llama.attention.head_count");
  const uint64_t n_kv = *gguf_->GetUint64("llama.attention.head_count_kv");
  for (int l = 0; l < 5; ++l) {
    for (bool is_q : {true, false}) {
      std::string gname = absl::StrCat("blk.", l, is_q ? ".attn_q.weight" : ".attn_k.weight");
      std::string hname =
          absl::StrCat("model.layers.", l, ".self_attn.", is_q ? "q_proj" : "k_proj", ".weight");
      const TensorInfo* t = gguf_->FindTensor(gname);
      ASSERT_NE(t, nullptr);
      auto w = gguf_->DequantizeTensor(*t);
      ASSERT_TRUE(w.ok());
      std::vector<float> hf = hf_tensor(hname);
      ASSERT_EQ(hf.size(), w->size());
      EXPECT_NE(*w, hf) << gname << ": GGUF layout should differ from HF before undoing";
      ASSERT_TRUE(UndoGgufRotaryPermutation(absl::MakeSpan(*w), t->dims[1], t->dims[0],
                                            is_q ? n_head : n_kv)
                      .ok());
      EXPECT_EQ(*w, hf) << gname << " vs " << hname;
    }
    // v_proj is not permuted.
    auto v = gguf_->DequantizeTensor(
        *gguf_->FindTensor(absl::StrCat("blk.", l, ".attn_v.weight")));
    EXPECT_EQ(*v, hf_tensor(absl::StrCat("model.layers.", l, ".self_attn.v_proj.weight")));
  }
}

}  // namespace
}  // namespace otaro::engine::gguf
