#include "sefp/checkpoint.h"

#include <cstring>
#include <random>
#include <string>

#include "common/safetensors/safetensors.h"
#include "common/testing/shared_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sefp/test_util.h"

namespace otaro::sefp {
namespace {

using ::testing::HasSubstr;
using safetensors::DType;

Checkpoint SmallCheckpoint() {
  std::mt19937 rng(3);
  Checkpoint c;
  c.metadata.reconstruction = Reconstruction::kTruncate;
  c.metadata.source_model = "stories260K@test";
  c.metadata.tuning_provenance = R"({"strategy":"otaro","bits":[3,4,5,6,7,8],"steps":10})";
  c.quantized["layers.0.ffn.w1"] = *EncodeTensor("w1", testing::RandomWeights(5, 172, 0.1f, &rng), 5, 172);
  c.quantized["layers.0.attn.wq"] = *EncodeTensor("wq", testing::RandomWeights(8, 64, 2.0f, &rng), 8, 64);
  DenseTensor norm;
  norm.dtype = DType::kF32;
  norm.shape = {3};
  const float v[3] = {1.0f, -0.5f, 2.0f};
  norm.bytes.assign(reinterpret_cast<const uint8_t*>(v), reinterpret_cast<const uint8_t*>(v) + 12);
  c.dense["norm.weight"] = norm;
  DenseTensor emb;
  emb.dtype = DType::kBF16;
  emb.shape = {2, 2};
  emb.bytes = {0x80, 0x3f, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x80};
  c.dense["tok_embeddings.weight"] = emb;
  return c;
}

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void ExpectSameTensor(const SefpTensor& a, const SefpTensor& b) {
  EXPECT_EQ(a.rows, b.rows);
  EXPECT_EQ(a.cols, b.cols);
  EXPECT_EQ(a.exponents, b.exponents);
  EXPECT_EQ(a.signs, b.signs);
  for (int p = 0; p < 8; ++p) EXPECT_EQ(a.planes[p], b.planes[p]) << "plane " << p;
}

TEST(CheckpointTest, RoundTripThroughAFile) {
  Checkpoint c = SmallCheckpoint();
  c.metadata.extra["model_config"] = "{\"hidden_size\": 64}";
  c.metadata.extra["tokenizer"] = "{\"kind\": \"byte_level_bpe\", \"note\": \"\xC3\xA9\"}";
  const std::string path = otaro::testing::ScratchDir("ckpt") + "/model.sefp.safetensors";
  ASSERT_TRUE(WriteCheckpoint(path, c).ok());
  auto reader = CheckpointReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->metadata().reconstruction, Reconstruction::kTruncate);
  EXPECT_EQ((*reader)->metadata().source_model, "stories260K@test");
  EXPECT_EQ((*reader)->metadata().tuning_provenance, c.metadata.tuning_provenance);
  EXPECT_EQ((*reader)->metadata().extra, c.metadata.extra);
  EXPECT_EQ((*reader)->quantized_shapes().at("layers.0.ffn.w1"), std::make_pair(int64_t{5}, int64_t{172}));
  auto back = (*reader)->LoadAll();
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->quantized.size(), 2u);
  for (const auto& [name, t] : c.quantized) ExpectSameTensor(t, back->quantized.at(name));
  EXPECT_EQ(back->dense.at("norm.weight").bytes, c.dense.at("norm.weight").bytes);
  EXPECT_EQ(back->dense.at("tok_embeddings.weight").dtype, DType::kBF16);
  const safetensors::TensorView* emb = (*reader)->FindDense("tok_embeddings.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ((*reader)->FindDense("layers.0.ffn.w1"), nullptr);
  // The metadata the spec asks for is in the container.
  auto file = safetensors::File::Open(path);
  ASSERT_TRUE(file.ok());
  const auto& meta = (*file)->metadata();
  EXPECT_EQ(meta.at("format"), "otaro-sefp");
  EXPECT_EQ(meta.at("format_version"), "1");
  EXPECT_EQ(meta.at("group_size"), "64");
  EXPECT_EQ(meta.at("master_bits"), "8");
  EXPECT_EQ(meta.at("reconstruction"), "truncate");
  EXPECT_EQ((*file)->Find("layers.0.ffn.w1.sefp.exponents")->dtype, DType::kI8);
  EXPECT_EQ((*file)->Find("layers.0.ffn.w1.sefp.plane7")->shape, (std::vector<int64_t>{5, 22}));
}

// Rewrites a valid file's header/metadata/arrays and checks the reader's error.
class MalformedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = SerializeCheckpoint(SmallCheckpoint());
    ASSERT_TRUE(s.ok());
    file_ = *s;
    uint64_t n = 0;
    std::memcpy(&n, file_.data(), 8);
    header_ = nlohmann::json::parse(file_.substr(8, n));
    data_ = file_.substr(8 + n);
  }
  std::string Rebuild() const {
    std::string h = header_.dump();
    std::string out(8, '\0');
    uint64_t n = h.size();
    std::memcpy(out.data(), &n, 8);
    return out + h + data_;
  }
  std::string Error(const std::string& bytes) const {
    auto r = CheckpointReader::FromBuffer(Bytes(bytes));
    if (!r.ok()) return std::string(r.status().message());
    auto all = (*r)->LoadAll();
    EXPECT_FALSE(all.ok()) << "malformed checkpoint was accepted";
    return all.ok() ? "" : std::string(all.status().message());
  }
  std::string file_;
  nlohmann::json header_;
  std::string data_;
};

TEST_F(MalformedTest, ValidFileIsAccepted) {
  // The reader views the bytes (zero copy): they must outlive it.
  const std::string file = Rebuild();
  auto r = CheckpointReader::FromBuffer(Bytes(file));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)->LoadAll().ok());
}

TEST_F(MalformedTest, TruncatedFile) {
  for (size_t keep : {size_t{0}, size_t{5}, size_t{100}, file_.size() / 2, file_.size() - 1}) {
    EXPECT_FALSE(Error(file_.substr(0, keep)).empty()) << keep;
  }
  EXPECT_THAT(Error(file_.substr(0, file_.size() - 1)), HasSubstr("past the end"));
}

TEST_F(MalformedTest, HeaderLargerThanFile) {
  std::string f = file_;
  uint64_t n = f.size();
  std::memcpy(f.data(), &n, 8);
  EXPECT_THAT(Error(f), HasSubstr("larger than the file"));
}

TEST_F(MalformedTest, UnknownVersion) {
  header_["__metadata__"]["format_version"] = "2";
  EXPECT_THAT(Error(Rebuild()), HasSubstr("unknown format_version '2'"));
}

TEST_F(MalformedTest, WrongFormatModeAndMissingKeys) {
  header_["__metadata__"]["format"] = "gguf";
  EXPECT_THAT(Error(Rebuild()), HasSubstr("format is 'gguf'"));
  SetUp();
  header_["__metadata__"]["reconstruction"] = "nearest";
  EXPECT_THAT(Error(Rebuild()), HasSubstr("nearest"));
  SetUp();
  header_["__metadata__"]["group_size"] = "32";
  EXPECT_THAT(Error(Rebuild()), HasSubstr("group_size"));
  SetUp();
  header_["__metadata__"].erase("source_model");
  EXPECT_THAT(Error(Rebuild()), HasSubstr("'source_model' is missing"));
  SetUp();
  header_["__metadata__"]["sefp_tensors"] = "{not json";
  EXPECT_THAT(Error(Rebuild()), HasSubstr("sefp_tensors"));
}

TEST_F(MalformedTest, WrongSizesAndDtypes) {
  // A shape that disagrees with the recorded [N, K].
  nlohmann::json shapes = nlohmann::json::parse(header_["__metadata__"]["sefp_tensors"].get<std::string>());
  shapes["layers.0.ffn.w1"] = {5, 200};
  header_["__metadata__"]["sefp_tensors"] = shapes.dump();
  EXPECT_THAT(Error(Rebuild()), HasSubstr("wrong shape"));
  SetUp();
  header_["layers.0.attn.wq.sefp.exponents"]["dtype"] = "U8";
  EXPECT_THAT(Error(Rebuild()), HasSubstr("has dtype U8, expected I8"));
  SetUp();
  header_["norm.weight"]["dtype"] = "I32";
  EXPECT_THAT(Error(Rebuild()), HasSubstr("F32, F16 or BF16"));
  SetUp();
  header_["norm.weight"]["shape"] = {4};
  EXPECT_THAT(Error(Rebuild()), HasSubstr("16 bytes but data_offsets span 12"));
}

TEST_F(MalformedTest, MissingAndOrphanArrays) {
  header_["layers.0.attn.wq.sefp.plane3x"] = header_["layers.0.attn.wq.sefp.plane3"];
  header_.erase("layers.0.attn.wq.sefp.plane3");
  EXPECT_THAT(Error(Rebuild()), HasSubstr("'layers.0.attn.wq.sefp.plane3' is missing"));
}

TEST_F(MalformedTest, OverlappingOffsets) {
  auto& a = header_["layers.0.attn.wq.sefp.plane3"]["data_offsets"];
  a[0] = a[0].get<uint64_t>() - 1;
  a[1] = a[1].get<uint64_t>() - 1;
  EXPECT_THAT(Error(Rebuild()), HasSubstr("overlaps"));
  SetUp();
  header_["norm.weight"]["data_offsets"] = {0, 12};
  EXPECT_THAT(Error(Rebuild()), HasSubstr("overlaps"));
}

TEST_F(MalformedTest, BadJson) {
  std::string f = file_;
  f[9] = '#';
  EXPECT_THAT(Error(f), HasSubstr("not valid JSON"));
}

TEST_F(MalformedTest, ContentErrors) {
  // Exponent out of range: rewrite a byte of the wq exponents array.
  const auto& off = header_["layers.0.attn.wq.sefp.exponents"]["data_offsets"];
  data_[off[0].get<size_t>()] = 40;
  EXPECT_THAT(Error(Rebuild()), HasSubstr("exponent 40"));
  SetUp();
  // A bit set past the last column of a 172-wide row (172 % 8 = 4 used bits).
  const auto& s = header_["layers.0.ffn.w1.sefp.signs"]["data_offsets"];
  data_[s[0].get<size_t>() + 21] |= static_cast<char>(0x80);
  EXPECT_THAT(Error(Rebuild()), HasSubstr("past the last column"));
}

TEST(CheckpointTest, NonUtf8MetadataIsAnErrorNotACrash) {
  Checkpoint c = SmallCheckpoint();
  c.metadata.extra["tokenizer"] = std::string("bytes \x01\xff", 8);
  auto bytes = SerializeCheckpoint(c);
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bytes.status().message().find("x.tokenizer"), std::string::npos) << bytes.status();
}

TEST(CheckpointTest, WriterRefusesInvalidContent) {
  Checkpoint c = SmallCheckpoint();
  c.quantized["layers.0.attn.wq"].exponents[0] = 99;
  EXPECT_THAT(std::string(SerializeCheckpoint(c).status().message()), HasSubstr("exponent 99"));
  c = SmallCheckpoint();
  c.dense["x.sefp.signs"] = c.dense["norm.weight"];
  EXPECT_FALSE(SerializeCheckpoint(c).ok());
  c = SmallCheckpoint();
  c.dense["norm.weight"].dtype = DType::kI64;
  EXPECT_FALSE(SerializeCheckpoint(c).ok());
  EXPECT_FALSE(CheckpointReader::Open("/nonexistent/x.safetensors").ok());
}

}  // namespace
}  // namespace otaro::sefp
