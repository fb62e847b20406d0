#include "engine/formats/gguf_writer.h"

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"

namespace otaro::engine::gguf {
namespace {

constexpr uint32_t kVersion = 3;
constexpr uint64_t kAlignment = 32;

template <typename T>
void Put(std::string* out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out->append(bytes, sizeof(T));
}

void PutString(std::string* out, absl::string_view s) {
  Put<uint64_t>(out, s.size());
  out->append(s.data(), s.size());
}

uint64_t AlignUp(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

// Encodes `values` as elements of `type` (an integer type).
absl::Status PutIntegers(std::string* out, ValueType type, const std::vector<int64_t>& values) {
  for (int64_t v : values) {
    switch (type) {
      case ValueType::kUint8: Put<uint8_t>(out, static_cast<uint8_t>(v)); break;
      case ValueType::kInt8: Put<int8_t>(out, static_cast<int8_t>(v)); break;
      case ValueType::kUint16: Put<uint16_t>(out, static_cast<uint16_t>(v)); break;
      case ValueType::kInt16: Put<int16_t>(out, static_cast<int16_t>(v)); break;
      case ValueType::kUint32: Put<uint32_t>(out, static_cast<uint32_t>(v)); break;
      case ValueType::kInt32: Put<int32_t>(out, static_cast<int32_t>(v)); break;
      case ValueType::kUint64: Put<uint64_t>(out, static_cast<uint64_t>(v)); break;
      case ValueType::kInt64: Put<int64_t>(out, v); break;
      case ValueType::kBool: Put<uint8_t>(out, v != 0); break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("not an integer type: ", ValueTypeName(type)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string*> GgufWriter::NewKey(absl::string_view key, ValueType type) {
  if (key.empty()) return absl::InvalidArgumentError("GGUF metadata key is empty");
  if (!keys_.insert(std::string(key)).second) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF metadata key '", key, "' is set twice"));
  }
  metadata_.emplace_back();
  std::string* out = &metadata_.back();
  PutString(out, key);
  Put<uint32_t>(out, static_cast<uint32_t>(type));
  return out;
}

absl::Status GgufWriter::SetUint32(absl::string_view key, uint32_t value) {
  OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, ValueType::kUint32));
  Put(out, value);
  return absl::OkStatus();
}

absl::Status GgufWriter::SetInt32(absl::string_view key, int32_t value) {
  OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, ValueType::kInt32));
  Put(out, value);
  return absl::OkStatus();
}

absl::Status GgufWriter::SetFloat32(absl::string_view key, float value) {
  OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, ValueType::kFloat32));
  Put(out, value);
  return absl::OkStatus();
}

absl::Status GgufWriter::SetBool(absl::string_view key, bool value) {
  OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, ValueType::kBool));
  Put<uint8_t>(out, value ? 1 : 0);
  return absl::OkStatus();
}

absl::Status GgufWriter::SetString(absl::string_view key, absl::string_view value) {
  OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, ValueType::kString));
  PutString(out, value);
  return absl::OkStatus();
}

absl::Status GgufWriter::SetStringArray(absl::string_view key,
                                        const std::vector<std::string>& values) {
  OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, ValueType::kArray));
  Put<uint32_t>(out, static_cast<uint32_t>(ValueType::kString));
  Put<uint64_t>(out, values.size());
  for (const std::string& v : values) PutString(out, v);
  return absl::OkStatus();
}

absl::Status GgufWriter::SetFloat32Array(absl::string_view key, absl::Span<const float> values) {
  OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, ValueType::kArray));
  Put<uint32_t>(out, static_cast<uint32_t>(ValueType::kFloat32));
  Put<uint64_t>(out, values.size());
  for (float v : values) Put(out, v);
  return absl::OkStatus();
}

absl::Status GgufWriter::SetInt32Array(absl::string_view key, absl::Span<const int32_t> values) {
  OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, ValueType::kArray));
  Put<uint32_t>(out, static_cast<uint32_t>(ValueType::kInt32));
  Put<uint64_t>(out, values.size());
  for (int32_t v : values) Put(out, v);
  return absl::OkStatus();
}

absl::Status GgufWriter::CopyValue(absl::string_view key, const Value& value) {
  auto unsupported = [&] {
    return absl::UnimplementedError(absl::StrCat("GGUF metadata '", key, "': copying a ",
                                                 value.DebugString(2), " is not supported"));
  };
  const ValueType type = value.type();
  switch (type) {
    case ValueType::kString: {
      OTARO_ASSIGN_OR_RETURN(absl::string_view s, value.AsString());
      return SetString(key, s);
    }
    case ValueType::kFloat32: {
      OTARO_ASSIGN_OR_RETURN(double d, value.AsDouble());
      return SetFloat32(key, static_cast<float>(d));
    }
    case ValueType::kFloat64: {
      OTARO_ASSIGN_OR_RETURN(double d, value.AsDouble());
      OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, type));
      Put(out, d);
      return absl::OkStatus();
    }
    case ValueType::kArray: {
      const ValueType element = value.array_type();
      if (element == ValueType::kString) {
        OTARO_ASSIGN_OR_RETURN(std::vector<absl::string_view> views, value.AsStringArray());
        return SetStringArray(key, std::vector<std::string>(views.begin(), views.end()));
      }
      if (element == ValueType::kFloat32) {
        OTARO_ASSIGN_OR_RETURN(std::vector<float> floats, value.AsFloatArray());
        return SetFloat32Array(key, floats);
      }
      if (element == ValueType::kArray || element == ValueType::kFloat64 ||
          element == ValueType::kBool) {
        return unsupported();
      }
      OTARO_ASSIGN_OR_RETURN(std::vector<int64_t> ints, value.AsInt64Array());
      OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, type));
      Put<uint32_t>(out, static_cast<uint32_t>(element));
      Put<uint64_t>(out, ints.size());
      return PutIntegers(out, element, ints);
    }
    case ValueType::kUint64: {
      OTARO_ASSIGN_OR_RETURN(uint64_t v, value.AsUint64());
      OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, type));
      Put(out, v);
      return absl::OkStatus();
    }
    default: {  // the other integers and bool
      OTARO_ASSIGN_OR_RETURN(int64_t v, value.AsInt64());
      OTARO_ASSIGN_OR_RETURN(std::string * out, NewKey(key, type));
      return PutIntegers(out, type, {v});
    }
  }
}

absl::Status GgufWriter::AddTensor(absl::string_view name, std::vector<uint64_t> dims,
                                   TensorType type, std::vector<uint8_t> data) {
  if (type != TensorType::kF32 && type != TensorType::kF16 && type != TensorType::kBF16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor '", name, "': only F32, F16 and BF16 are written, not ",
        TensorTypeName(static_cast<uint32_t>(type))));
  }
  if (tensor_names_.count(std::string(name)) > 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' is added twice"));
  }
  uint64_t elements = 1;
  for (uint64_t d : dims) elements *= d;
  const uint64_t bytes = elements * (type == TensorType::kF32 ? 4 : 2);
  if (dims.empty() || data.size() != bytes) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", data.size(),
                                                   " bytes for ", elements, " elements of ",
                                                   TensorTypeName(static_cast<uint32_t>(type))));
  }
  tensor_names_.insert(std::string(name));
  tensors_.push_back({std::string(name), std::move(dims), type, std::move(data)});
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteAtomically(const std::string& path) const {
  std::string header;
  header.append("GGUF", 4);
  Put<uint32_t>(&header, kVersion);
  Put<uint64_t>(&header, tensors_.size());
  Put<uint64_t>(&header, metadata_.size());
  for (const std::string& kv : metadata_) header += kv;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    PutString(&header, t.name);
    Put<uint32_t>(&header, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) Put<uint64_t>(&header, d);
    Put<uint32_t>(&header, static_cast<uint32_t>(t.type));
    Put<uint64_t>(&header, offset);
    offset = AlignUp(offset + t.data.size());
  }
  header.resize(AlignUp(header.size()), '\0');
  return WriteFileAtomically(path, [&](std::FILE* f) -> absl::Status {
    bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
    static const char kZeros[kAlignment] = {};
    for (size_t i = 0; ok && i < tensors_.size(); ++i) {
      const std::vector<uint8_t>& data = tensors_[i].data;
      ok = std::fwrite(data.data(), 1, data.size(), f) == data.size();
      const size_t pad = AlignUp(data.size()) - data.size();
      if (ok && pad > 0 && i + 1 < tensors_.size()) ok = std::fwrite(kZeros, 1, pad, f) == pad;
    }
    if (!ok) return absl::InternalError(absl::StrCat("short write to ", path));
    return absl::OkStatus();
  });
}

}  // namespace otaro::engine::gguf
