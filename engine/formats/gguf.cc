#include "engine/formats/gguf.h"

#include "common/float16.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace otaro::engine::gguf {
namespace {

constexpr uint32_t kMaxDims = 4;           // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;        // arrays of arrays of ...
constexpr uint64_t kDefaultAlignment = 32;  // GGUF_DEFAULT_ALIGNMENT

template <typename T>
T LoadLE(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Size in bytes of a scalar value type; 0 for string/array.
size_t ScalarSize(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool:
      return 1;
    case ValueType::kUint16:
    case ValueType::kInt16:
      return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32:
      return 4;
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kFloat64:
      return 8;
    case ValueType::kString:
    case ValueType::kArray:
      return 0;
  }
  return 0;
}

bool IsKnownValueType(uint32_t t) { return t <= 12; }
bool IsUnsigned(ValueType t) {
  return t == ValueType::kUint8 || t == ValueType::kUint16 || t == ValueType::kUint32 ||
         t == ValueType::kUint64 || t == ValueType::kBool;
}
bool IsSigned(ValueType t) {
  return t == ValueType::kInt8 || t == ValueType::kInt16 || t == ValueType::kInt32 ||
         t == ValueType::kInt64;
}
bool IsFloat(ValueType t) { return t == ValueType::kFloat32 || t == ValueType::kFloat64; }

// Decodes one scalar element at p into (u, i, f) according to its type.
void DecodeScalar(ValueType t, const uint8_t* p, uint64_t* u, int64_t* i, double* f) {
  *u = 0;
  *i = 0;
  *f = 0;
  switch (t) {
    case ValueType::kUint8: *u = p[0]; break;
    case ValueType::kBool: *u = p[0] != 0 ? 1 : 0; break;
    case ValueType::kInt8: *i = static_cast<int8_t>(p[0]); break;
    case ValueType::kUint16: *u = LoadLE<uint16_t>(p); break;
    case ValueType::kInt16: *i = LoadLE<int16_t>(p); break;
    case ValueType::kUint32: *u = LoadLE<uint32_t>(p); break;
    case ValueType::kInt32: *i = LoadLE<int32_t>(p); break;
    case ValueType::kUint64: *u = LoadLE<uint64_t>(p); break;
    case ValueType::kInt64: *i = LoadLE<int64_t>(p); break;
    case ValueType::kFloat32: *f = LoadLE<float>(p); break;
    case ValueType::kFloat64: *f = LoadLE<double>(p); break;
    default: break;
  }
}

const TensorTypeTraits kTraits[] = {
    /*0*/ {"F32", 1, 4, true},
    /*1*/ {"F16", 1, 2, true},
    /*2*/ {"Q4_0", 32, 18, true},
    /*3*/ {"Q4_1", 32, 20, true},
    /*4*/ {"", 0, 0, false},
    /*5*/ {"", 0, 0, false},
    /*6*/ {"Q5_0", 32, 22, false},
    /*7*/ {"Q5_1", 32, 24, false},
    /*8*/ {"Q8_0", 32, 34, true},
    /*9*/ {"Q8_1", 32, 36, false},
    /*10*/ {"Q2_K", 256, 84, false},
    /*11*/ {"Q3_K", 256, 110, false},
    /*12*/ {"Q4_K", 256, 144, true},
    /*13*/ {"Q5_K", 256, 176, false},
    /*14*/ {"Q6_K", 256, 210, true},
    /*15*/ {"Q8_K", 256, 292, false},
    /*16*/ {"", 0, 0, false},
    /*17*/ {"", 0, 0, false},
    /*18*/ {"", 0, 0, false},
    /*19*/ {"", 0, 0, false},
    /*20*/ {"IQ4_NL", 32, 18, false},
    /*21*/ {"", 0, 0, false},
    /*22*/ {"", 0, 0, false},
    /*23*/ {"IQ4_XS", 256, 136, false},
    /*24*/ {"I8", 1, 1, false},
    /*25*/ {"I16", 1, 2, false},
    /*26*/ {"I32", 1, 4, false},
    /*27*/ {"I64", 1, 8, false},
    /*28*/ {"F64", 1, 8, false},
    /*29*/ {"", 0, 0, false},
    /*30*/ {"BF16", 1, 2, true},
};

bool MulOverflow(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}
bool AddOverflow(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

}  // namespace

absl::string_view ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kUint8: return "uint8";
    case ValueType::kInt8: return "int8";
    case ValueType::kUint16: return "uint16";
    case ValueType::kInt16: return "int16";
    case ValueType::kUint32: return "uint32";
    case ValueType::kInt32: return "int32";
    case ValueType::kFloat32: return "float32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kUint64: return "uint64";
    case ValueType::kInt64: return "int64";
    case ValueType::kFloat64: return "float64";
  }
  return "unknown";
}

const TensorTypeTraits* GetTensorTypeTraits(uint32_t raw_type) {
  if (raw_type >= sizeof(kTraits) / sizeof(kTraits[0])) return nullptr;
  const TensorTypeTraits* t = &kTraits[raw_type];
  return t->block_size == 0 ? nullptr : t;
}

std::string TensorTypeName(uint32_t raw_type) {
  const TensorTypeTraits* t = GetTensorTypeTraits(raw_type);
  if (t != nullptr) return std::string(t->name);
  return absl::StrCat("type#", raw_type);
}

// ---------------------------------------------------------------------------
// Value accessors.

namespace {
std::string TypeDescription(const Value& v) {
  if (v.type() == ValueType::kArray) {
    return absl::StrCat("array of ", v.array_size(), " ", ValueTypeName(v.array_type()));
  }
  return std::string(ValueTypeName(v.type()));
}
}  // namespace

absl::StatusOr<uint64_t> Value::AsUint64() const {
  if (IsUnsigned(type_)) return u_;
  if (IsSigned(type_)) {
    if (i_ < 0) return absl::InvalidArgumentError(absl::StrCat("negative value ", i_));
    return static_cast<uint64_t>(i_);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("expected an integer, found ", TypeDescription(*this)));
}

absl::StatusOr<int64_t> Value::AsInt64() const {
  if (IsSigned(type_)) return i_;
  if (IsUnsigned(type_)) {
    if (u_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat("value ", u_, " does not fit int64"));
    }
    return static_cast<int64_t>(u_);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("expected an integer, found ", TypeDescription(*this)));
}

absl::StatusOr<double> Value::AsDouble() const {
  if (IsFloat(type_)) return f_;
  if (IsSigned(type_)) return static_cast<double>(i_);
  if (IsUnsigned(type_) && type_ != ValueType::kBool) return static_cast<double>(u_);
  return absl::InvalidArgumentError(
      absl::StrCat("expected a number, found ", TypeDescription(*this)));
}

absl::StatusOr<bool> Value::AsBool() const {
  if (type_ == ValueType::kBool) return u_ != 0;
  return absl::InvalidArgumentError(
      absl::StrCat("expected bool, found ", TypeDescription(*this)));
}

absl::StatusOr<absl::string_view> Value::AsString() const {
  if (type_ == ValueType::kString) return str_;
  return absl::InvalidArgumentError(
      absl::StrCat("expected string, found ", TypeDescription(*this)));
}

absl::StatusOr<std::vector<absl::string_view>> Value::AsStringArray() const {
  if (type_ == ValueType::kArray && array_type_ == ValueType::kString) return strings_;
  return absl::InvalidArgumentError(
      absl::StrCat("expected array of string, found ", TypeDescription(*this)));
}

absl::StatusOr<std::vector<int64_t>> Value::AsInt64Array() const {
  if (type_ != ValueType::kArray || !(IsSigned(array_type_) || IsUnsigned(array_type_))) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected array of integers, found ", TypeDescription(*this)));
  }
  size_t es = ScalarSize(array_type_);
  std::vector<int64_t> out(array_size_);
  for (uint64_t k = 0; k < array_size_; ++k) {
    uint64_t u;
    int64_t i;
    double f;
    DecodeScalar(array_type_, raw_.data() + k * es, &u, &i, &f);
    if (IsUnsigned(array_type_)) {
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError(
            absl::StrCat("array element ", k, " = ", u, " does not fit int64"));
      }
      out[k] = static_cast<int64_t>(u);
    } else {
      out[k] = i;
    }
  }
  return out;
}

absl::StatusOr<std::vector<float>> Value::AsFloatArray() const {
  if (type_ != ValueType::kArray || !IsFloat(array_type_)) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected array of float32, found ", TypeDescription(*this)));
  }
  size_t es = ScalarSize(array_type_);
  std::vector<float> out(array_size_);
  for (uint64_t k = 0; k < array_size_; ++k) {
    uint64_t u;
    int64_t i;
    double f;
    DecodeScalar(array_type_, raw_.data() + k * es, &u, &i, &f);
    out[k] = static_cast<float>(f);
  }
  return out;
}

absl::StatusOr<std::vector<Value>> Value::AsValueArray() const {
  if (type_ != ValueType::kArray) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected an array, found ", TypeDescription(*this)));
  }
  if (array_type_ == ValueType::kArray) return values_;
  std::vector<Value> out;
  out.reserve(array_size_);
  for (uint64_t k = 0; k < array_size_; ++k) {
    Value v;
    v.type_ = array_type_;
    if (array_type_ == ValueType::kString) {
      v.str_ = strings_[k];
    } else {
      DecodeScalar(array_type_, raw_.data() + k * ScalarSize(array_type_), &v.u_, &v.i_, &v.f_);
    }
    out.push_back(std::move(v));
  }
  return out;
}

std::string Value::DebugString(size_t max_elements) const {
  switch (type_) {
    case ValueType::kString: {
      std::string s(str_.substr(0, 200));
      return absl::StrCat("\"", s, str_.size() > 200 ? "...\"" : "\"");
    }
    case ValueType::kBool: return u_ ? "true" : "false";
    case ValueType::kFloat32:
    case ValueType::kFloat64: return absl::StrFormat("%g", f_);
    case ValueType::kArray: {
      std::string out = absl::StrCat("[", ValueTypeName(array_type_), " x ", array_size_, ": ");
      auto elems = AsValueArray();
      if (elems.ok()) {
        for (size_t k = 0; k < elems->size() && k < max_elements; ++k) {
          if (k) out += ", ";
          out += (*elems)[k].DebugString(max_elements);
        }
        if (elems->size() > max_elements) out += ", ...";
      }
      return out + "]";
    }
    default:
      if (IsSigned(type_)) return absl::StrCat(i_);
      return absl::StrCat(u_);
  }
}

std::string TensorInfo::ShapeString() const {
  std::string out = "[";
  for (size_t k = 0; k < dims.size(); ++k) absl::StrAppend(&out, k ? ", " : "", dims[k]);
  return absl::StrCat(out, "] ", TensorTypeName(raw_type));
}

// ---------------------------------------------------------------------------
// Parser.

class Parser {
 public:
  Parser(absl::Span<const uint8_t> bytes, GgufFile* file) : bytes_(bytes), file_(file) {}

  absl::Status Run() {
    if (bytes_.size() < 4) {
      return Error(absl::StrCat("file is ", bytes_.size(), " bytes, too short for a GGUF header"));
    }
    if (std::memcmp(bytes_.data(), "GGUF", 4) != 0) {
      return Error("not a GGUF file (the first 4 bytes are not \"GGUF\")");
    }
    pos_ = 4;
    uint32_t version;
    OTARO_RETURN_IF_ERROR(ReadU32("version", &version));
    if (version == 1) {
      return Error("GGUF version 1 is not supported (only versions 2 and 3); re-convert the model");
    }
    if (version != 2 && version != 3) {
      if ((version & 0xFFFF) == 0 && version != 0) {
        return Error(absl::StrCat("GGUF version field ", version,
                                  " looks byte-swapped: big-endian GGUF files are not supported"));
      }
      return Error(absl::StrCat("unsupported GGUF version ", version, " (supported: 2, 3)"));
    }
    file_->version_ = version;
    uint64_t n_tensors, n_kv;
    OTARO_RETURN_IF_ERROR(ReadU64("tensor count", &n_tensors));
    OTARO_RETURN_IF_ERROR(ReadU64("metadata count", &n_kv));
    // Every key/value takes at least 8 (key length) + 4 (type) + 1 bytes; every
    // tensor info at least 8 + 4 + 4 + 8 bytes.
    if (n_kv > Remaining() / 13) {
      return Error(absl::StrCat("metadata count ", n_kv, " is impossible for a file of ",
                                bytes_.size(), " bytes"));
    }
    if (n_tensors > Remaining() / 24) {
      return Error(absl::StrCat("tensor count ", n_tensors, " is impossible for a file of ",
                                bytes_.size(), " bytes"));
    }

    file_->metadata_.reserve(n_kv);
    for (uint64_t k = 0; k < n_kv; ++k) {
      absl::string_view key;
      OTARO_RETURN_IF_ERROR(ReadString(absl::StrCat("key of metadata entry ", k), &key));
      uint32_t raw_type;
      OTARO_RETURN_IF_ERROR(ReadU32(absl::StrCat("type of metadata \"", key, "\""), &raw_type));
      Value value;
      OTARO_RETURN_IF_ERROR(ReadValue(key, raw_type, 0, &value));
      if (!file_->metadata_index_.emplace(key, file_->metadata_.size()).second) {
        return Error(absl::StrCat("duplicate metadata key \"", key, "\""));
      }
      file_->metadata_.emplace_back(key, std::move(value));
    }

    file_->alignment_ = kDefaultAlignment;
    if (const Value* a = file_->Find("general.alignment")) {
      auto v = a->AsUint64();
      if (!v.ok()) {
        return Error(absl::StrCat("general.alignment: ", v.status().message()));
      }
      if (*v == 0 || (*v & (*v - 1)) != 0 || *v > (1u << 30)) {
        return Error(absl::StrCat("general.alignment = ", *v, " is not a power of two"));
      }
      file_->alignment_ = *v;
    }

    file_->tensors_.reserve(n_tensors);
    for (uint64_t k = 0; k < n_tensors; ++k) {
      TensorInfo t;
      OTARO_RETURN_IF_ERROR(ReadString(absl::StrCat("name of tensor ", k), &t.name));
      std::string what = absl::StrCat("tensor \"", t.name, "\"");
      uint32_t n_dims;
      OTARO_RETURN_IF_ERROR(ReadU32(what + " dimension count", &n_dims));
      if (n_dims == 0 || n_dims > kMaxDims) {
        return Error(absl::StrCat(what, " has ", n_dims, " dimensions (1 to ", kMaxDims,
                                  " allowed)"));
      }
      t.dims.resize(n_dims);
      uint64_t n_elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        OTARO_RETURN_IF_ERROR(ReadU64(absl::StrCat(what, " dimension ", d), &t.dims[d]));
        if (t.dims[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
            MulOverflow(n_elements, t.dims[d], &n_elements)) {
          return Error(absl::StrCat(what, " has absurd dimensions (element count overflows)"));
        }
      }
      OTARO_RETURN_IF_ERROR(ReadU32(what + " type", &t.raw_type));
      const TensorTypeTraits* traits = GetTensorTypeTraits(t.raw_type);
      if (traits == nullptr) {
        return Error(absl::StrCat(what, " has unknown or unsupported tensor type ", t.raw_type));
      }
      OTARO_RETURN_IF_ERROR(ReadU64(what + " offset", &t.offset));
      if (t.dims[0] % traits->block_size != 0) {
        return Error(absl::StrCat(what, " of type ", traits->name, ": first dimension ",
                                  t.dims[0], " is not a multiple of the block size ",
                                  traits->block_size));
      }
      if (t.offset % file_->alignment_ != 0) {
        return Error(absl::StrCat(what, " offset ", t.offset,
                                  " is not a multiple of the alignment ", file_->alignment_));
      }
      t.n_elements = n_elements;
      if (MulOverflow(n_elements / traits->block_size, traits->type_size, &t.n_bytes)) {
        return Error(absl::StrCat(what, " byte size overflows"));
      }
      if (!file_->tensor_index_.emplace(t.name, file_->tensors_.size()).second) {
        return Error(absl::StrCat("duplicate tensor name \"", t.name, "\""));
      }
      file_->tensors_.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment.
    uint64_t data_offset = pos_;
    uint64_t rem = data_offset % file_->alignment_;
    if (rem != 0) data_offset += file_->alignment_ - rem;
    if (!file_->tensors_.empty() && data_offset > bytes_.size()) {
      return Error(absl::StrCat("file ends at byte ", bytes_.size(),
                                " before the tensor data section (which starts at ", data_offset,
                                ")"));
    }
    file_->data_offset_ = data_offset;
    for (TensorInfo& t : file_->tensors_) {
      uint64_t begin, end;
      if (AddOverflow(data_offset, t.offset, &begin) || AddOverflow(begin, t.n_bytes, &end) ||
          end > bytes_.size()) {
        return Error(absl::StrCat("tensor \"", t.name, "\" (", t.ShapeString(), ", ", t.n_bytes,
                                  " bytes at data offset ", t.offset,
                                  ") extends past the end of the file (", bytes_.size(),
                                  " bytes): the file is truncated or corrupt"));
      }
      t.data = bytes_.subspan(begin, t.n_bytes);
    }
    return absl::OkStatus();
  }

 private:
  uint64_t Remaining() const { return bytes_.size() - pos_; }

  absl::Status Error(absl::string_view message) const {
    return absl::InvalidArgumentError(absl::StrCat(file_->source_, ": ", message));
  }

  absl::Status Truncated(absl::string_view what, uint64_t need) const {
    return Error(absl::StrCat("truncated: reading ", what, " needs ", need, " bytes at offset ",
                              pos_, " but the file has ", bytes_.size(), " bytes"));
  }

  absl::Status Need(absl::string_view what, uint64_t n) const {
    if (n > Remaining()) return Truncated(what, n);
    return absl::OkStatus();
  }

  absl::Status ReadU32(absl::string_view what, uint32_t* out) {
    OTARO_RETURN_IF_ERROR(Need(what, 4));
    *out = LoadLE<uint32_t>(bytes_.data() + pos_);
    pos_ += 4;
    return absl::OkStatus();
  }

  absl::Status ReadU64(absl::string_view what, uint64_t* out) {
    OTARO_RETURN_IF_ERROR(Need(what, 8));
    *out = LoadLE<uint64_t>(bytes_.data() + pos_);
    pos_ += 8;
    return absl::OkStatus();
  }

  absl::Status ReadString(absl::string_view what, absl::string_view* out) {
    uint64_t len;
    OTARO_RETURN_IF_ERROR(ReadU64(absl::StrCat(what, " (length)"), &len));
    if (len > Remaining()) {
      return Error(absl::StrCat("truncated or corrupt: ", what, " has length ", len,
                                " at offset ", pos_ - 8, " but only ", Remaining(),
                                " bytes follow"));
    }
    *out = absl::string_view(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

  absl::Status ReadValue(absl::string_view key, uint32_t raw_type, int depth, Value* v) {
    if (!IsKnownValueType(raw_type)) {
      return Error(absl::StrCat("metadata \"", key, "\" has unknown value type ", raw_type));
    }
    ValueType type = static_cast<ValueType>(raw_type);
    v->type_ = type;
    std::string what = absl::StrCat("metadata \"", key, "\"");
    if (type == ValueType::kString) return ReadString(what, &v->str_);
    if (type != ValueType::kArray) {
      size_t size = ScalarSize(type);
      OTARO_RETURN_IF_ERROR(Need(what, size));
      DecodeScalar(type, bytes_.data() + pos_, &v->u_, &v->i_, &v->f_);
      if (type == ValueType::kBool && bytes_[pos_] > 1) {
        return Error(absl::StrCat(what, " is a bool with invalid byte ", bytes_[pos_]));
      }
      pos_ += size;
      return absl::OkStatus();
    }
    if (depth >= kMaxArrayNesting) {
      return Error(absl::StrCat(what, ": arrays nested deeper than ", kMaxArrayNesting));
    }
    uint32_t elem_raw;
    OTARO_RETURN_IF_ERROR(ReadU32(what + " array element type", &elem_raw));
    if (!IsKnownValueType(elem_raw)) {
      return Error(absl::StrCat(what, " is an array of unknown value type ", elem_raw));
    }
    uint64_t count;
    OTARO_RETURN_IF_ERROR(ReadU64(what + " array length", &count));
    ValueType elem = static_cast<ValueType>(elem_raw);
    v->array_type_ = elem;
    v->array_size_ = count;
    // Minimum bytes per element: a scalar's size, 8 for a string (length),
    // 12 for an array (type + length).
    uint64_t min_size = elem == ValueType::kString  ? 8
                        : elem == ValueType::kArray ? 12
                                                    : ScalarSize(elem);
    if (count > Remaining() / min_size) {
      return Error(absl::StrCat("truncated or corrupt: ", what, " claims ", count, " ",
                                ValueTypeName(elem), " elements at offset ", pos_ - 12,
                                " but only ", Remaining(), " bytes follow"));
    }
    if (elem == ValueType::kString) {
      v->strings_.resize(count);
      for (uint64_t k = 0; k < count; ++k) {
        OTARO_RETURN_IF_ERROR(ReadString(absl::StrCat(what, " element ", k), &v->strings_[k]));
      }
    } else if (elem == ValueType::kArray) {
      v->values_.resize(count);
      for (uint64_t k = 0; k < count; ++k) {
        uint32_t inner_type = static_cast<uint32_t>(ValueType::kArray);
        OTARO_RETURN_IF_ERROR(ReadValue(absl::StrCat(key, "[", k, "]"), inner_type, depth + 1,
                                        &v->values_[k]));
      }
    } else {
      uint64_t n = count * min_size;  // bounded by Remaining() above
      v->raw_ = bytes_.subspan(pos_, n);
      if (elem == ValueType::kBool) {
        for (uint64_t k = 0; k < count; ++k) {
          if (v->raw_[k] > 1) {
            return Error(absl::StrCat(what, " element ", k, " is a bool with invalid byte ",
                                      v->raw_[k]));
          }
        }
      }
      pos_ += n;
    }
    return absl::OkStatus();
  }

  absl::Span<const uint8_t> bytes_;
  GgufFile* file_;
  uint64_t pos_ = 0;
};

// ---------------------------------------------------------------------------
// GgufFile.

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  OTARO_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->source_ = path;
  file->bytes_ = mapped->bytes();
  file->mapped_ = std::move(mapped);
  Parser parser(file->bytes_, file.get());
  OTARO_RETURN_IF_ERROR(parser.Run());
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(absl::Span<const uint8_t> bytes) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->source_ = "<GGUF in memory>";
  file->bytes_ = bytes;
  Parser parser(bytes, file.get());
  OTARO_RETURN_IF_ERROR(parser.Run());
  return file;
}

const Value* GgufFile::Find(absl::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

namespace {
template <typename T, typename F>
absl::StatusOr<T> Typed(const GgufFile& f, absl::string_view key, const std::string& source,
                        F&& get) {
  const Value* v = f.Find(key);
  if (v == nullptr) {
    return absl::NotFoundError(absl::StrCat(source, ": metadata key \"", key, "\" is missing"));
  }
  absl::StatusOr<T> r = get(*v);
  if (!r.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": metadata \"", key, "\": ", r.status().message()));
  }
  return r;
}
}  // namespace

absl::StatusOr<absl::string_view> GgufFile::GetString(absl::string_view key) const {
  return Typed<absl::string_view>(*this, key, source_, [](const Value& v) { return v.AsString(); });
}
absl::StatusOr<uint64_t> GgufFile::GetUint64(absl::string_view key) const {
  return Typed<uint64_t>(*this, key, source_, [](const Value& v) { return v.AsUint64(); });
}
absl::StatusOr<int64_t> GgufFile::GetInt64(absl::string_view key) const {
  return Typed<int64_t>(*this, key, source_, [](const Value& v) { return v.AsInt64(); });
}
absl::StatusOr<double> GgufFile::GetDouble(absl::string_view key) const {
  return Typed<double>(*this, key, source_, [](const Value& v) { return v.AsDouble(); });
}
absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  return Typed<bool>(*this, key, source_, [](const Value& v) { return v.AsBool(); });
}
absl::StatusOr<std::vector<absl::string_view>> GgufFile::GetStringArray(
    absl::string_view key) const {
  return Typed<std::vector<absl::string_view>>(*this, key, source_,
                                              [](const Value& v) { return v.AsStringArray(); });
}
absl::StatusOr<std::vector<int64_t>> GgufFile::GetInt64Array(absl::string_view key) const {
  return Typed<std::vector<int64_t>>(*this, key, source_,
                                     [](const Value& v) { return v.AsInt64Array(); });
}
absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(absl::string_view key) const {
  return Typed<std::vector<float>>(*this, key, source_,
                                   [](const Value& v) { return v.AsFloatArray(); });
}

const TensorInfo* GgufFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<const TensorInfo*> GgufFile::GetTensor(absl::string_view name) const {
  const TensorInfo* t = FindTensor(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat(source_, ": tensor \"", name, "\" is missing"));
  }
  return t;
}

absl::StatusOr<std::vector<float>> GgufFile::DequantizeTensor(const TensorInfo& tensor) const {
  std::vector<float> out(tensor.n_elements);
  absl::Status s = DequantizeToFloat(tensor.raw_type, tensor.data, tensor.n_elements, out.data());
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat(source_, ": tensor \"", tensor.name, "\" (",
                                               tensor.ShapeString(), "): ", s.message()));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Dequantization.


namespace {

constexpr int kQK = 32;    // QK4_0 = QK4_1 = QK8_0
constexpr int kQK_K = 256;

void DequantQ8_0(const uint8_t* b, float* y) {
  float d = Fp16ToFloat(LoadLE<uint16_t>(b));
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = d * qs[j];
}

void DequantQ4_0(const uint8_t* b, float* y) {
  float d = Fp16ToFloat(LoadLE<uint16_t>(b));
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * (static_cast<int>(qs[j] & 0x0F) - 8);
    y[j + kQK / 2] = d * (static_cast<int>(qs[j] >> 4) - 8);
  }
}

void DequantQ4_1(const uint8_t* b, float* y) {
  float d = Fp16ToFloat(LoadLE<uint16_t>(b));
  float m = Fp16ToFloat(LoadLE<uint16_t>(b + 2));
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = d * (qs[j] & 0x0F) + m;
    y[j + kQK / 2] = d * (qs[j] >> 4) + m;
  }
}

// 6-bit scale and min number j (0..7) packed in Q4_K's 12 scale bytes.
void ScaleMinK4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// block_q4_K: half d, half dmin, uint8 scales[12], uint8 qs[128].
void DequantQ4_K(const uint8_t* b, float* y) {
  float d = Fp16ToFloat(LoadLE<uint16_t>(b));
  float dmin = Fp16ToFloat(LoadLE<uint16_t>(b + 2));
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  int is = 0;
  for (int j = 0; j < kQK_K; j += 64) {
    uint8_t sc, m;
    ScaleMinK4(is, scales, &sc, &m);
    float d1 = d * sc, m1 = dmin * m;
    ScaleMinK4(is + 1, scales, &sc, &m);
    float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) y[l] = d1 * (q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) y[32 + l] = d2 * (q[l] >> 4) - m2;
    q += 32;
    is += 2;
    y += 64;
  }
}

// block_q6_K: uint8 ql[128], uint8 qh[64], int8 scales[16], half d.
void DequantQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  float d = Fp16ToFloat(LoadLE<uint16_t>(b + 208));
  for (int n = 0; n < kQK_K; n += 128) {
    for (int l = 0; l < 32; ++l) {
      int is = l / 16;
      int q1 = static_cast<int>((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      int q2 = static_cast<int>((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      int q3 = static_cast<int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      int q4 = static_cast<int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

absl::Status DequantizeToFloat(uint32_t raw_type, absl::Span<const uint8_t> data,
                               uint64_t n_elements, float* out) {
  const TensorTypeTraits* traits = GetTensorTypeTraits(raw_type);
  if (traits == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown tensor type ", raw_type));
  }
  if (!traits->can_dequantize) {
    return absl::UnimplementedError(absl::StrCat(
        "dequantizing ", traits->name,
        " is not supported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)"));
  }
  if (n_elements % traits->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(n_elements, " elements is not a multiple of ",
                                                   traits->name, "'s block size ",
                                                   traits->block_size));
  }
  uint64_t n_blocks = n_elements / traits->block_size;
  uint64_t need;
  if (MulOverflow(n_blocks, traits->type_size, &need) || need != data.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        n_elements, " ", traits->name, " elements need ", n_blocks, " blocks of ",
        traits->type_size, " bytes, but ", data.size(), " bytes were given"));
  }
  const uint8_t* p = data.data();
  switch (static_cast<TensorType>(raw_type)) {
    case TensorType::kF32:
      if (n_elements > 0) std::memcpy(out, p, n_elements * 4);
      break;
    case TensorType::kF16:
      for (uint64_t k = 0; k < n_elements; ++k) out[k] = Fp16ToFloat(LoadLE<uint16_t>(p + 2 * k));
      break;
    case TensorType::kBF16:
      for (uint64_t k = 0; k < n_elements; ++k) {
        out[k] = Bf16ToFloat(LoadLE<uint16_t>(p + 2 * k));
      }
      break;
    case TensorType::kQ8_0:
      for (uint64_t k = 0; k < n_blocks; ++k) DequantQ8_0(p + k * 34, out + k * kQK);
      break;
    case TensorType::kQ4_0:
      for (uint64_t k = 0; k < n_blocks; ++k) DequantQ4_0(p + k * 18, out + k * kQK);
      break;
    case TensorType::kQ4_1:
      for (uint64_t k = 0; k < n_blocks; ++k) DequantQ4_1(p + k * 20, out + k * kQK);
      break;
    case TensorType::kQ4_K:
      for (uint64_t k = 0; k < n_blocks; ++k) DequantQ4_K(p + k * 144, out + k * kQK_K);
      break;
    case TensorType::kQ6_K:
      for (uint64_t k = 0; k < n_blocks; ++k) DequantQ6_K(p + k * 210, out + k * kQK_K);
      break;
    default:
      return absl::InternalError(absl::StrCat("no dequantizer for ", traits->name));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Rotary permutation.

namespace {
absl::Status PermuteRows(absl::Span<float> w, uint64_t rows, uint64_t cols, uint64_t n_heads,
                         bool undo) {
  uint64_t total;
  if (n_heads == 0 || rows == 0 || MulOverflow(rows, cols, &total) || total != w.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rotary permutation: a [", rows, ", ", cols, "] matrix with ", n_heads,
        " heads does not fit ", w.size(), " values"));
  }
  if (rows % n_heads != 0 || (rows / n_heads) % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("rotary permutation: ", rows,
                                                   " rows are not ", n_heads,
                                                   " heads of an even head dimension"));
  }
  uint64_t hd = rows / n_heads, half = hd / 2;
  std::vector<float> head(hd * cols);
  for (uint64_t h = 0; h < n_heads; ++h) {
    float* base = w.data() + h * hd * cols;
    std::copy(base, base + hd * cols, head.begin());
    for (uint64_t i = 0; i < 2; ++i) {
      for (uint64_t j = 0; j < half; ++j) {
        uint64_t hf_row = i * half + j;  // rotate_half layout
        uint64_t gg_row = 2 * j + i;     // interleaved (GGUF) layout
        uint64_t dst = undo ? hf_row : gg_row;
        uint64_t src = undo ? gg_row : hf_row;
        std::copy(head.begin() + src * cols, head.begin() + (src + 1) * cols, base + dst * cols);
      }
    }
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status UndoGgufRotaryPermutation(absl::Span<float> weights, uint64_t rows, uint64_t cols,
                                       uint64_t n_heads) {
  return PermuteRows(weights, rows, cols, n_heads, /*undo=*/true);
}

absl::Status ApplyGgufRotaryPermutation(absl::Span<float> weights, uint64_t rows,
                                        uint64_t cols, uint64_t n_heads) {
  return PermuteRows(weights, rows, cols, n_heads, /*undo=*/false);
}

}  // namespace otaro::engine::gguf
