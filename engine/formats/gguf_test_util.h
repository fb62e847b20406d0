// Test helper: writes small GGUF files byte by byte, so tests (and the fuzz
// seeds) can build valid and deliberately broken files.
#ifndef OTARO_ENGINE_FORMATS_GGUF_TEST_UTIL_H_
#define OTARO_ENGINE_FORMATS_GGUF_TEST_UTIL_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace otaro::engine::gguf::testing {

class ByteWriter {
 public:
  std::vector<uint8_t>& bytes() { return bytes_; }
  size_t size() const { return bytes_.size(); }

  template <typename T>
  ByteWriter& Put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    bytes_.insert(bytes_.end(), b, b + sizeof(T));
    return *this;
  }
  ByteWriter& U32(uint32_t v) { return Put(v); }
  ByteWriter& U64(uint64_t v) { return Put(v); }
  ByteWriter& Str(const std::string& s) {
    U64(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  ByteWriter& Raw(const std::vector<uint8_t>& b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  ByteWriter& PadTo(size_t alignment) {
    while (bytes_.size() % alignment != 0) bytes_.push_back(0);
    return *this;
  }

 private:
  std::vector<uint8_t> bytes_;
};

struct TestTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type;
  std::vector<uint8_t> data;
};

// A small valid GGUF v3 file: metadata of every value type (including a
// nested array), then `tensors` laid out at `alignment`. The file ends with the
// last tensor's bytes, so every truncation of it is invalid.
inline std::vector<uint8_t> MakeGguf(const std::vector<TestTensor>& tensors,
                                     uint32_t alignment = 32, uint32_t version = 3) {
  ByteWriter w;
  w.Raw({'G', 'G', 'U', 'F'}).U32(version).U64(tensors.size());
  const uint64_t n_kv = 16;
  w.U64(n_kv);
  w.Str("t.u8").U32(0).Put<uint8_t>(200);
  w.Str("t.i8").U32(1).Put<int8_t>(-100);
  w.Str("t.u16").U32(2).Put<uint16_t>(60000);
  w.Str("t.i16").U32(3).Put<int16_t>(-30000);
  w.Str("t.u32").U32(4).Put<uint32_t>(4000000000u);
  w.Str("t.i32").U32(5).Put<int32_t>(-2000000000);
  w.Str("t.f32").U32(6).Put<float>(1.5f);
  w.Str("t.bool").U32(7).Put<uint8_t>(1);
  w.Str("t.str").U32(8).Str("héllo");
  w.Str("t.u64").U32(10).Put<uint64_t>(18000000000000000000ull);
  w.Str("t.i64").U32(11).Put<int64_t>(-9000000000000000000ll);
  w.Str("t.f64").U32(12).Put<double>(-2.25);
  w.Str("t.arr_str").U32(9).U32(8).U64(3).Str("a").Str("").Str("ccc");
  w.Str("t.arr_i32").U32(9).U32(5).U64(4).Put<int32_t>(1).Put<int32_t>(-2).Put<int32_t>(3).Put<int32_t>(-4);
  // Array of 2 arrays: [[1.0, 2.0] (f32), [true] (bool)].
  w.Str("t.arr_arr").U32(9).U32(9).U64(2);
  w.U32(6).U64(2).Put<float>(1.0f).Put<float>(2.0f);
  w.U32(7).U64(1).Put<uint8_t>(1);
  w.Str("general.alignment").U32(4).U32(alignment);

  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const TestTensor& t : tensors) {
    offsets.push_back(offset);
    offset += t.data.size();
    offset = (offset + alignment - 1) / alignment * alignment;
  }
  for (size_t k = 0; k < tensors.size(); ++k) {
    const TestTensor& t = tensors[k];
    w.Str(t.name).U32(t.dims.size());
    for (uint64_t d : t.dims) w.U64(d);
    w.U32(t.type).U64(offsets[k]);
  }
  w.PadTo(alignment);
  for (size_t k = 0; k < tensors.size(); ++k) {
    w.Raw(tensors[k].data);
    if (k + 1 < tensors.size()) w.PadTo(alignment);
  }
  return w.bytes();
}

}  // namespace otaro::engine::gguf::testing

#endif  // OTARO_ENGINE_FORMATS_GGUF_TEST_UTIL_H_
