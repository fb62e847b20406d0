// GGUF (v2 and v3) reader over a memory-mapped file.
//
// A GGUF file is: magic "GGUF", uint32 version, uint64 tensor count, uint64
// metadata count, the metadata key/value pairs, the tensor infos, padding to
// `general.alignment` (default 32), then the tensor data. All integers are
// little-endian. Every count, length and offset read from the file is checked
// against the file size before it is used: a truncated or malformed file gives
// an InvalidArgument error that names what is wrong, never a crash.
//
// Strings (keys, string values, tensor names) are views into the file's bytes;
// they stay valid as long as the GgufFile lives.
#ifndef OTARO_ENGINE_FORMATS_GGUF_H_
#define OTARO_ENGINE_FORMATS_GGUF_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/mapped_file.h"

namespace otaro::engine::gguf {

// Metadata value types (gguf_type).
enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
absl::string_view ValueTypeName(ValueType type);

// Tensor element types (ggml_type). Only the ones whose block layout this
// reader knows are listed; a file with any other type is rejected at parse time
// because the size of its data cannot be computed.
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct TensorTypeTraits {
  absl::string_view name;
  uint32_t block_size;  // elements per block
  uint32_t type_size;   // bytes per block
  bool can_dequantize;  // DequantizeToFloat supports it
};
// Traits of a known type, or nullptr for an unknown raw type id.
const TensorTypeTraits* GetTensorTypeTraits(uint32_t raw_type);
std::string TensorTypeName(uint32_t raw_type);

// One metadata value. Scalars are stored decoded; strings and arrays of
// strings are views into the file; arrays of numbers keep a view of their raw
// little-endian bytes and are decoded by the typed accessors.
class Value {
 public:
  ValueType type() const { return type_; }
  // For arrays: the element type and the number of elements.
  ValueType array_type() const { return array_type_; }
  uint64_t array_size() const { return array_size_; }

  // Integer of any integer type (and bool); an error if negative for AsUint64,
  // if the type is not an integer, or if it does not fit.
  absl::StatusOr<uint64_t> AsUint64() const;
  absl::StatusOr<int64_t> AsInt64() const;
  // Float32/Float64 (and integers, converted).
  absl::StatusOr<double> AsDouble() const;
  absl::StatusOr<bool> AsBool() const;
  absl::StatusOr<absl::string_view> AsString() const;

  // Arrays. Each gives an error naming the actual type when it does not match.
  absl::StatusOr<std::vector<absl::string_view>> AsStringArray() const;
  absl::StatusOr<std::vector<int64_t>> AsInt64Array() const;  // any integer element type
  absl::StatusOr<std::vector<float>> AsFloatArray() const;    // f32/f64 element type
  // Elements of an array of arrays (or of any array, boxed one by one).
  absl::StatusOr<std::vector<Value>> AsValueArray() const;

  // A short human-readable rendering (arrays abbreviated), for dumps and errors.
  std::string DebugString(size_t max_elements = 8) const;

 private:
  friend class Parser;
  ValueType type_ = ValueType::kUint8;
  ValueType array_type_ = ValueType::kUint8;
  uint64_t array_size_ = 0;
  uint64_t u_ = 0;  // unsigned integers and bool
  int64_t i_ = 0;   // signed integers
  double f_ = 0;    // floats
  absl::string_view str_;
  // Arrays of numbers or bools: the raw element bytes.
  absl::Span<const uint8_t> raw_;
  std::vector<absl::string_view> strings_;  // arrays of strings
  std::vector<Value> values_;              // arrays of arrays
};

struct TensorInfo {
  absl::string_view name;
  // ne[0] is the innermost (contiguous) dimension, as in ggml: a PyTorch
  // [rows, cols] matrix has dims = {cols, rows}.
  std::vector<uint64_t> dims;
  uint32_t raw_type = 0;
  uint64_t offset = 0;       // relative to the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  absl::Span<const uint8_t> data;  // the tensor's bytes inside the file

  TensorType type() const { return static_cast<TensorType>(raw_type); }
  // "[cols, rows] Q4_K" style description.
  std::string ShapeString() const;
};

class GgufFile {
 public:
  // Maps and parses `path`. Errors name the path.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses bytes that outlive the returned object (tests, fuzzing).
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(absl::Span<const uint8_t> bytes);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the data section
  absl::Span<const uint8_t> bytes() const { return bytes_; }

  // Metadata in file order, and lookup by key.
  const std::vector<std::pair<absl::string_view, Value>>& metadata() const { return metadata_; }
  const Value* Find(absl::string_view key) const;
  bool Has(absl::string_view key) const { return Find(key) != nullptr; }
  // Typed lookups: NotFound naming the key when absent, InvalidArgument naming
  // the key and both types when the type does not fit.
  absl::StatusOr<absl::string_view> GetString(absl::string_view key) const;
  absl::StatusOr<uint64_t> GetUint64(absl::string_view key) const;
  absl::StatusOr<int64_t> GetInt64(absl::string_view key) const;
  absl::StatusOr<double> GetDouble(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  absl::StatusOr<std::vector<absl::string_view>> GetStringArray(absl::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetInt64Array(absl::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(absl::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(absl::string_view name) const;
  absl::StatusOr<const TensorInfo*> GetTensor(absl::string_view name) const;

  // The tensor's values as float32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K,
  // Q6_K); Unimplemented naming the tensor and type for other types.
  absl::StatusOr<std::vector<float>> DequantizeTensor(const TensorInfo& tensor) const;

 private:
  friend class Parser;
  GgufFile() = default;

  std::unique_ptr<MappedFile> mapped_;
  std::string source_;  // path, or "<memory>"
  absl::Span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<absl::string_view, Value>> metadata_;
  std::map<absl::string_view, size_t, std::less<>> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::map<absl::string_view, size_t, std::less<>> tensor_index_;
};

// Dequantizes `n_elements` values of `type` from `data` into `out`. `data` must
// hold exactly n_elements / block_size blocks and n_elements must be a multiple
// of the block size; both are checked.
absl::Status DequantizeToFloat(uint32_t raw_type, absl::Span<const uint8_t> data,
                               uint64_t n_elements, float* out);

// llama.cpp's converter stores LLaMA attn_q / attn_k weights with each head's
// rows interleaved (row 2j+i of a head = row i*head_dim/2 + j of the Hugging
// Face layout) so that ggml's "normal" RoPE, which rotates adjacent pairs,
// matches HF's rotate_half RoPE. UndoGgufRotaryPermutation turns a row-major
// [rows, cols] matrix from the GGUF layout back into the Hugging Face layout;
// `n_heads` is the number of heads the matrix holds (n_head for Q, n_head_kv
// for K). ApplyGgufRotaryPermutation is its inverse (HF -> GGUF).
absl::Status UndoGgufRotaryPermutation(absl::Span<float> weights, uint64_t rows, uint64_t cols,
                                       uint64_t n_heads);
absl::Status ApplyGgufRotaryPermutation(absl::Span<float> weights, uint64_t rows,
                                        uint64_t cols, uint64_t n_heads);

}  // namespace otaro::engine::gguf

#endif  // OTARO_ENGINE_FORMATS_GGUF_H_
