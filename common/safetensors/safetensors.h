// The safetensors container (https://github.com/huggingface/safetensors), read and
// written by one implementation: Hugging Face model.safetensors files (F32/F16/BF16)
// and the project's SEFP checkpoints (U8/I8 arrays) both go through here.
//
// File layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the
// data section. The JSON maps tensor names to {"dtype", "shape", "data_offsets":
// [begin, end]} (offsets relative to the data section) plus an optional
// "__metadata__" object of string -> string.
//
// The reader treats every file as hostile: each length, offset and shape is checked
// before any byte of tensor data is touched, so a malformed file gives a clear error
// and never a read out of bounds. Tensors must tile the data section exactly (no
// overlap, no hole, nothing past the end), as the reference implementation demands.
#ifndef OTARO_COMMON_SAFETENSORS_SAFETENSORS_H_
#define OTARO_COMMON_SAFETENSORS_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/mapped_file.h"

namespace otaro::safetensors {

enum class DType { kBool, kU8, kI8, kU16, kI16, kF16, kBF16, kU32, kI32, kF32, kU64, kI64, kF64 };

// Bytes per element.
size_t DTypeSize(DType dtype);
// The name used in the JSON header ("F32", "BF16", ...).
absl::string_view DTypeName(DType dtype);
absl::StatusOr<DType> ParseDType(absl::string_view name);

// Largest header we accept (the reference implementation uses the same cap): a
// bigger one is certainly corrupt, and refusing it bounds the JSON parser's work.
inline constexpr uint64_t kMaxHeaderBytes = 100u << 20;

// One tensor of a parsed file: its bytes point into the file's buffer (zero copy).
// The bytes are NOT necessarily aligned for the element type: copy them out
// (CopyTo) or check alignment before reinterpreting.
struct TensorView {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;

  int64_t num_elements() const;

  // The values as float32, converted exactly from F32, F16 or BF16;
  // InvalidArgument naming the tensor for any other dtype.
  absl::StatusOr<std::vector<float>> ToFloat32() const;
  // Copies the elements into `out` (resized). Fails if sizeof(T) != DTypeSize(dtype).
  template <typename T>
  absl::Status CopyTo(std::vector<T>* out) const;
};

// A parsed view over bytes owned elsewhere (a mapped file, a buffer).
class View {
 public:
  // Validates the whole container in `file`; the returned View borrows `file`.
  static absl::StatusOr<View> Parse(absl::Span<const uint8_t> file);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensors in order of their data offsets.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorView* Find(absl::string_view name) const;

 private:
  std::map<std::string, std::string> metadata_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

// A memory-mapped safetensors file: tensor views point into the mapping, which lives
// as long as this object.
class File {
 public:
  static absl::StatusOr<std::unique_ptr<File>> Open(const std::string& path);

  const View& view() const { return view_; }
  const std::map<std::string, std::string>& metadata() const { return view_.metadata(); }
  const std::vector<TensorView>& tensors() const { return view_.tensors(); }
  const TensorView* Find(absl::string_view name) const { return view_.Find(name); }
  const std::string& path() const { return mapped_->path(); }

 private:
  File(std::unique_ptr<MappedFile> mapped, View view)
      : mapped_(std::move(mapped)), view_(std::move(view)) {}
  std::unique_ptr<MappedFile> mapped_;
  View view_;
};

// Builds a safetensors file. Tensor bytes are borrowed: they must stay alive until
// Serialize / WriteAtomically returns. The data section starts on a 64-byte boundary
// (the header is padded with spaces, as the format allows) so that mapped tensors of
// files we write are aligned for SIMD loads.
class Writer {
 public:
  // InvalidArgument if the key or value is not valid UTF-8 (the header is JSON).
  absl::Status SetMetadata(absl::string_view key, absl::string_view value);
  // Checks the name is new and not "__metadata__", and that bytes match dtype x shape.
  absl::Status AddTensor(absl::string_view name, DType dtype, std::vector<int64_t> shape,
                         absl::Span<const uint8_t> bytes);

  // The whole file in memory (tests, fuzz seeds).
  std::string Serialize() const;
  // Writes the file crash-safely (temporary file, fsync, rename).
  absl::Status WriteAtomically(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    absl::Span<const uint8_t> bytes;
  };
  std::string HeaderWithPadding() const;

  std::map<std::string, std::string> metadata_;
  std::vector<Entry> entries_;
};

// --- implementation details of the template above ---
template <typename T>
absl::Status TensorView::CopyTo(std::vector<T>* out) const {
  if (sizeof(T) != DTypeSize(dtype)) {
    return absl::InvalidArgumentError("tensor '" + name + "': element size of " +
                                      std::string(DTypeName(dtype)) +
                                      " does not match the requested type");
  }
  out->resize(bytes.size() / sizeof(T));
  if (!bytes.empty()) std::memcpy(out->data(), bytes.data(), bytes.size());
  return absl::OkStatus();
}

}  // namespace otaro::safetensors

#endif  // OTARO_COMMON_SAFETENSORS_SAFETENSORS_H_
