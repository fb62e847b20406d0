// GGUF v3 writer, the mirror of gguf.h's reader: metadata key/value pairs in
// insertion order, then tensor infos, then the tensor data at
// `general.alignment` (32). All integers little-endian. Used by `otaro export`
// (engine/model/export.h); anything it writes, GgufFile reads back.
#ifndef OTARO_ENGINE_FORMATS_GGUF_WRITER_H_
#define OTARO_ENGINE_FORMATS_GGUF_WRITER_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/formats/gguf.h"

namespace otaro::engine::gguf {

class GgufWriter {
 public:
  // Each key may be set once (InvalidArgument naming it otherwise).
  absl::Status SetUint32(absl::string_view key, uint32_t value);
  absl::Status SetInt32(absl::string_view key, int32_t value);
  absl::Status SetFloat32(absl::string_view key, float value);
  absl::Status SetBool(absl::string_view key, bool value);
  absl::Status SetString(absl::string_view key, absl::string_view value);
  absl::Status SetStringArray(absl::string_view key, const std::vector<std::string>& values);
  absl::Status SetFloat32Array(absl::string_view key, absl::Span<const float> values);
  absl::Status SetInt32Array(absl::string_view key, absl::Span<const int32_t> values);
  // A value read from another GGUF file, with its type (scalars, strings and
  // arrays of strings or numbers; Unimplemented naming the key for others).
  absl::Status CopyValue(absl::string_view key, const Value& value);
  bool Has(absl::string_view key) const { return keys_.count(std::string(key)) > 0; }

  // One tensor: `dims` in ggml order (innermost first: a [rows, cols] matrix
  // is {cols, rows}); `data` must hold exactly the type's bytes for them. Only
  // F32, F16 and BF16 are written.
  absl::Status AddTensor(absl::string_view name, std::vector<uint64_t> dims, TensorType type,
                         std::vector<uint8_t> data);

  // The file, crash-safely (common/atomic_file.h).
  absl::Status WriteAtomically(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    TensorType type;
    std::vector<uint8_t> data;
  };
  // Appends the key and returns where its typed value goes.
  absl::StatusOr<std::string*> NewKey(absl::string_view key, ValueType type);

  std::set<std::string> keys_;
  std::vector<std::string> metadata_;  // each entry: key, type and value, encoded
  std::vector<Tensor> tensors_;
  std::set<std::string> tensor_names_;
};

}  // namespace otaro::engine::gguf

#endif  // OTARO_ENGINE_FORMATS_GGUF_WRITER_H_
