#include "common/safetensors/safetensors.h"

#include "common/float16.h"
#include "common/utf8.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace otaro::safetensors {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kBool, "BOOL", 1}, {DType::kU8, "U8", 1},     {DType::kI8, "I8", 1},
    {DType::kU16, "U16", 2},   {DType::kI16, "I16", 2},   {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2}, {DType::kU32, "U32", 4},   {DType::kI32, "I32", 4},
    {DType::kF32, "F32", 4},   {DType::kU64, "U64", 8},   {DType::kI64, "I64", 8},
    {DType::kF64, "F64", 8},
};

// Data section alignment of files we write (a cache line: SIMD loads of mapped
// tensors never split a line at the start).
constexpr size_t kDataAlignment = 64;

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("safetensors: ", what));
}

// Elements x element size without overflow.
bool ByteSize(const std::vector<int64_t>& shape, size_t elem, uint64_t* out) {
  uint64_t n = elem;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return false;
  }
  *out = n;
  return true;
}

}  // namespace

size_t DTypeSize(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const auto& d : kDTypes) {
    if (name == d.name) return d.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown safetensors dtype '", name, "'"));
}

int64_t TensorView::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // Validated at parse time: no overflow.
  return n;
}

absl::StatusOr<std::vector<float>> TensorView::ToFloat32() const {
  const size_t n = static_cast<size_t>(num_elements());
  std::vector<float> out(n);
  const uint8_t* data = bytes.data();
  switch (dtype) {
    case DType::kF32:
      if (n) std::memcpy(out.data(), data, n * sizeof(float));
      break;
    case DType::kF16:
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t half;
        std::memcpy(&half, data + 2 * i, 2);
        out[i] = dtype == DType::kF16 ? Fp16ToFloat(half) : Bf16ToFloat(half);
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' has dtype ", DTypeName(dtype), "; expected F32, F16 or BF16"));
  }
  return out;
}

absl::StatusOr<View> View::Parse(absl::Span<const uint8_t> file) {
  if (file.size() < 8) {
    return Corrupt(absl::StrCat("file of ", file.size(),
                                " bytes is too short for the 8-byte header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file[i];
  if (header_len > file.size() - 8) {
    return Corrupt(absl::StrCat("header length ", header_len, " is larger than the file (",
                                file.size(), " bytes): truncated or not a safetensors file"));
  }
  if (header_len > kMaxHeaderBytes) {
    return Corrupt(absl::StrCat("header length ", header_len, " exceeds the limit of ",
                                kMaxHeaderBytes, " bytes"));
  }
  if (header_len < 2 || file[8] != '{') {
    return Corrupt("header is not a JSON object (must start with '{')");
  }
  const char* hbegin = reinterpret_cast<const char*>(file.data() + 8);
  const char* hend = hbegin + header_len;
  const uint8_t* data = file.data() + 8 + header_len;
  const uint64_t data_len = file.size() - 8 - header_len;

  // Duplicate keys are silently merged by JSON parsers; in a container they are an
  // ambiguity (which tensor wins?), so we refuse them. One key set per open object.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event,
                      nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      open_objects.emplace_back();
    } else if (event == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == E::key && !open_objects.empty() && parsed.is_string()) {
      if (!open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  nlohmann::json header = nlohmann::json::parse(hbegin, hend, callback,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return Corrupt("header is not valid JSON");
  }
  if (!duplicate.empty()) return Corrupt(absl::StrCat("duplicate key '", duplicate, "' in header"));

  View view;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& value = it.value();
    if (key == "__metadata__") {
      if (!value.is_object()) return Corrupt("__metadata__ is not an object");
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) {
          return Corrupt(absl::StrCat("__metadata__ value of '", m.key(), "' is not a string"));
        }
        view.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](absl::string_view why) {
      return Corrupt(absl::StrCat("tensor '", key, "': ", why));
    };
    if (!value.is_object()) return bad("entry is not an object");
    auto dt = value.find("dtype");
    auto sh = value.find("shape");
    auto off = value.find("data_offsets");
    if (dt == value.end() || sh == value.end() || off == value.end()) {
      return bad("entry needs dtype, shape and data_offsets");
    }
    if (value.size() != 3) return bad("entry has unknown fields");
    if (!dt->is_string()) return bad("dtype is not a string");
    absl::StatusOr<DType> dtype = ParseDType(dt->get<std::string>());
    if (!dtype.ok()) return bad(dtype.status().message());
    if (!sh->is_array()) return bad("shape is not an array");
    TensorView t;
    t.name = key;
    t.dtype = *dtype;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        return bad("shape has an entry that is not a non-negative integer");
      }
      t.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    }
    if (!off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned()) {
      return bad("data_offsets is not a pair of non-negative integers");
    }
    uint64_t begin = (*off)[0].get<uint64_t>();
    uint64_t end = (*off)[1].get<uint64_t>();
    if (begin > end) return bad(absl::StrCat("data_offsets [", begin, ", ", end, "] are reversed"));
    if (end > data_len) {
      return bad(absl::StrCat("data_offsets [", begin, ", ", end,
                              "] run past the end of the data section (", data_len,
                              " bytes): file truncated?"));
    }
    uint64_t expected = 0;
    if (!ByteSize(t.shape, DTypeSize(t.dtype), &expected)) return bad("shape overflows");
    if (expected != end - begin) {
      return bad(absl::StrCat("shape x ", DTypeName(t.dtype), " is ", expected,
                              " bytes but data_offsets span ", end - begin));
    }
    t.bytes = absl::Span<const uint8_t>(data + begin, end - begin);
    view.tensors_.push_back(std::move(t));
  }

  // Tensors must tile the data section: sorted by offset, each starts where the
  // previous one ends, and the last ends at the end of the file.
  std::sort(view.tensors_.begin(), view.tensors_.end(),
            [](const TensorView& a, const TensorView& b) {
              return a.bytes.data() != b.bytes.data() ? a.bytes.data() < b.bytes.data()
                                                      : a.bytes.size() < b.bytes.size();
            });
  uint64_t cursor = 0;
  for (const TensorView& t : view.tensors_) {
    uint64_t begin = static_cast<uint64_t>(t.bytes.data() - data);
    if (begin < cursor) {
      return Corrupt(absl::StrCat("tensor '", t.name, "' overlaps the previous tensor (starts at ",
                                  begin, ", previous ends at ", cursor, ")"));
    }
    if (begin > cursor) {
      return Corrupt(absl::StrCat("hole of ", begin - cursor, " bytes before tensor '", t.name,
                                  "' in the data section"));
    }
    cursor = begin + t.bytes.size();
  }
  if (cursor != data_len) {
    return Corrupt(absl::StrCat("data section has ", data_len - cursor,
                                " trailing bytes not covered by any tensor"));
  }
  for (size_t i = 0; i < view.tensors_.size(); ++i) view.index_[view.tensors_[i].name] = i;
  return view;
}

const TensorView* View::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::unique_ptr<File>> File::Open(const std::string& path) {
  OTARO_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  absl::StatusOr<View> view = View::Parse(mapped->bytes());
  if (!view.ok()) {
    return absl::Status(view.status().code(), absl::StrCat(path, ": ", view.status().message()));
  }
  return std::unique_ptr<File>(new File(std::move(mapped), *std::move(view)));
}

absl::Status Writer::SetMetadata(absl::string_view key, absl::string_view value) {
  if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata '", ToValidUtf8(key), "': not valid UTF-8 (the header is JSON)"));
  }
  metadata_[std::string(key)] = std::string(value);
  return absl::OkStatus();
}

absl::Status Writer::AddTensor(absl::string_view name, DType dtype, std::vector<int64_t> shape,
                               absl::Span<const uint8_t> bytes) {
  if (name.empty() || name == "__metadata__" || !IsValidUtf8(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid tensor name '", ToValidUtf8(name), "'"));
  }
  for (const Entry& e : entries_) {
    if (e.name == name) {
      return absl::AlreadyExistsError(absl::StrCat("tensor '", name, "' added twice"));
    }
  }
  uint64_t expected = 0;
  if (!ByteSize(shape, DTypeSize(dtype), &expected) || expected != bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", bytes.size(),
                                                   " bytes do not match its shape and dtype"));
  }
  entries_.push_back({std::string(name), dtype, std::move(shape), bytes});
  return absl::OkStatus();
}

std::string Writer::HeaderWithPadding() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Entry& e : entries_) {
    nlohmann::ordered_json entry;
    entry["dtype"] = std::string(DTypeName(e.dtype));
    entry["shape"] = e.shape;
    entry["data_offsets"] = {offset, offset + e.bytes.size()};
    header[e.name] = std::move(entry);
    offset += e.bytes.size();
  }
  std::string json = header.dump();
  size_t total = 8 + json.size();
  json.append((kDataAlignment - total % kDataAlignment) % kDataAlignment, ' ');
  return json;
}

std::string Writer::Serialize() const {
  std::string header = HeaderWithPadding();
  std::string out;
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += header;
  for (const Entry& e : entries_) out.append(reinterpret_cast<const char*>(e.bytes.data()), e.bytes.size());
  return out;
}

absl::Status Writer::WriteAtomically(const std::string& path) const {
  std::string header = HeaderWithPadding();
  return WriteFileAtomically(path, [&](std::FILE* f) -> absl::Status {
    uint8_t len[8];
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((n >> (8 * i)) & 0xff);
    bool ok = std::fwrite(len, 1, 8, f) == 8 &&
              std::fwrite(header.data(), 1, header.size(), f) == header.size();
    for (const Entry& e : entries_) {
      if (!ok) break;
      ok = e.bytes.empty() || std::fwrite(e.bytes.data(), 1, e.bytes.size(), f) == e.bytes.size();
    }
    if (!ok) return absl::InternalError(absl::StrCat("short write to ", path));
    return absl::OkStatus();
  });
}

}  // namespace otaro::safetensors
