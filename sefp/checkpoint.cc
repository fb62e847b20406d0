#include "sefp/checkpoint.h"

#include <cstring>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace otaro::sefp {

// Keys of CheckpointMetadata::extra in __metadata__.
constexpr char kExtraPrefix[] = "x.";
namespace {

using safetensors::DType;

constexpr char kSefpInfix[] = ".sefp.";

std::string ArrayName(const std::string& name, absl::string_view what) {
  return absl::StrCat(name, kSefpInfix, what);
}
std::string PlaneName(const std::string& name, int p) {
  return ArrayName(name, absl::StrCat("plane", p));
}

bool IsDenseDType(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16; }

template <typename T>
absl::Span<const uint8_t> AsBytes(const std::vector<T>& v) {
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)};
}

absl::Status BuildWriter(const Checkpoint& c, safetensors::Writer* w) {
  nlohmann::ordered_json shapes = nlohmann::ordered_json::object();
  for (const auto& [name, t] : c.quantized) {
    if (name.empty() || absl::StrContains(name, kSefpInfix)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid quantized tensor name '", name, "'"));
    }
    OTARO_RETURN_IF_ERROR(t.Validate(name));
    shapes[name] = {t.rows, t.cols};
    OTARO_RETURN_IF_ERROR(w->AddTensor(ArrayName(name, "exponents"), DType::kI8,
                                       {t.rows, t.groups_per_row()}, AsBytes(t.exponents)));
    OTARO_RETURN_IF_ERROR(w->AddTensor(ArrayName(name, "signs"), DType::kU8,
                                       {t.rows, t.row_bytes()}, AsBytes(t.signs)));
    for (int p = kMasterBits - 1; p >= 0; --p) {
      OTARO_RETURN_IF_ERROR(w->AddTensor(PlaneName(name, p), DType::kU8, {t.rows, t.row_bytes()},
                                         AsBytes(t.planes[p])));
    }
  }
  for (const auto& [name, d] : c.dense) {
    if (absl::StrContains(name, kSefpInfix) || c.quantized.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid dense tensor name '", name, "'"));
    }
    if (!IsDenseDType(d.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("dense tensor '", name, "' has dtype ",
                                                     safetensors::DTypeName(d.dtype),
                                                     " (F32, F16 or BF16 expected)"));
    }
    OTARO_RETURN_IF_ERROR(w->AddTensor(name, d.dtype, d.shape, d.bytes));
  }
  OTARO_RETURN_IF_ERROR(w->SetMetadata("format", kCheckpointFormat));
  OTARO_RETURN_IF_ERROR(w->SetMetadata("format_version", absl::StrCat(kCheckpointVersion)));
  OTARO_RETURN_IF_ERROR(w->SetMetadata("group_size", absl::StrCat(kGroupSize)));
  OTARO_RETURN_IF_ERROR(w->SetMetadata("master_bits", absl::StrCat(kMasterBits)));
  OTARO_RETURN_IF_ERROR(w->SetMetadata("reconstruction", ReconstructionName(c.metadata.reconstruction)));
  OTARO_RETURN_IF_ERROR(w->SetMetadata("source_model", c.metadata.source_model));
  OTARO_RETURN_IF_ERROR(w->SetMetadata("tuning_provenance", c.metadata.tuning_provenance));
  OTARO_RETURN_IF_ERROR(w->SetMetadata("sefp_tensors", shapes.dump()));
  for (const auto& [key, value] : c.metadata.extra) {
    OTARO_RETURN_IF_ERROR(w->SetMetadata(absl::StrCat(kExtraPrefix, key), value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SerializeCheckpoint(const Checkpoint& checkpoint) {
  safetensors::Writer w;
  OTARO_RETURN_IF_ERROR(BuildWriter(checkpoint, &w));
  return w.Serialize();
}

absl::Status WriteCheckpoint(const std::string& path, const Checkpoint& checkpoint) {
  safetensors::Writer w;
  OTARO_RETURN_IF_ERROR(BuildWriter(checkpoint, &w));
  return w.WriteAtomically(path);
}

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::Open(const std::string& path) {
  OTARO_ASSIGN_OR_RETURN(std::unique_ptr<safetensors::File> file, safetensors::File::Open(path));
  std::unique_ptr<CheckpointReader> r(new CheckpointReader());
  safetensors::View view = file->view();
  r->file_ = std::move(file);
  OTARO_RETURN_IF_ERROR(r->Init(std::move(view), path));
  return r;
}

absl::StatusOr<std::unique_ptr<CheckpointReader>> CheckpointReader::FromBuffer(
    absl::Span<const uint8_t> bytes) {
  OTARO_ASSIGN_OR_RETURN(safetensors::View view, safetensors::View::Parse(bytes));
  std::unique_ptr<CheckpointReader> r(new CheckpointReader());
  OTARO_RETURN_IF_ERROR(r->Init(std::move(view), "(buffer)"));
  return r;
}

absl::Status CheckpointReader::Init(safetensors::View view, const std::string& origin) {
  view_ = std::move(view);
  origin_ = origin;
  auto bad = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("SEFP checkpoint ", origin_, ": ", why));
  };
  const auto& meta = view_.metadata();
  auto get = [&](const char* key) -> absl::StatusOr<std::string> {
    auto it = meta.find(key);
    if (it == meta.end()) return bad(absl::StrCat("metadata key '", key, "' is missing"));
    return it->second;
  };
  OTARO_ASSIGN_OR_RETURN(std::string format, get("format"));
  if (format != kCheckpointFormat) {
    return bad(absl::StrCat("format is '", format, "', expected '", kCheckpointFormat, "'"));
  }
  OTARO_ASSIGN_OR_RETURN(std::string version, get("format_version"));
  if (version != absl::StrCat(kCheckpointVersion)) {
    return absl::UnimplementedError(absl::StrCat("SEFP checkpoint ", origin_,
                                                 ": unknown format_version '", version,
                                                 "' (this build reads version ",
                                                 kCheckpointVersion, ")"));
  }
  OTARO_ASSIGN_OR_RETURN(std::string group, get("group_size"));
  if (group != absl::StrCat(kGroupSize)) return bad(absl::StrCat("unsupported group_size '", group, "'"));
  OTARO_ASSIGN_OR_RETURN(std::string master, get("master_bits"));
  if (master != absl::StrCat(kMasterBits)) return bad(absl::StrCat("unsupported master_bits '", master, "'"));
  OTARO_ASSIGN_OR_RETURN(std::string mode, get("reconstruction"));
  absl::StatusOr<Reconstruction> rec = ParseReconstruction(mode);
  if (!rec.ok()) return bad(rec.status().message());
  metadata_.reconstruction = *rec;
  OTARO_ASSIGN_OR_RETURN(metadata_.source_model, get("source_model"));
  OTARO_ASSIGN_OR_RETURN(metadata_.tuning_provenance, get("tuning_provenance"));
  for (const auto& [key, value] : meta) {
    if (absl::StartsWith(key, kExtraPrefix)) {
      metadata_.extra[key.substr(std::strlen(kExtraPrefix))] = value;
    }
  }
  OTARO_ASSIGN_OR_RETURN(std::string shapes_json, get("sefp_tensors"));
  nlohmann::json shapes = nlohmann::json::parse(shapes_json, nullptr, /*allow_exceptions=*/false);
  if (shapes.is_discarded() || !shapes.is_object()) return bad("metadata 'sefp_tensors' is not a JSON object");

  std::set<std::string> claimed;
  for (auto it = shapes.begin(); it != shapes.end(); ++it) {
    const std::string& name = it.key();
    const auto& s = it.value();
    if (name.empty() || absl::StrContains(name, kSefpInfix)) {
      return bad(absl::StrCat("invalid quantized tensor name '", name, "'"));
    }
    if (!s.is_array() || s.size() != 2 || !s[0].is_number_unsigned() || !s[1].is_number_unsigned() ||
        s[0].get<uint64_t>() > (1ull << 40) || s[1].get<uint64_t>() > (1ull << 40)) {
      return bad(absl::StrCat("sefp_tensors['", name, "'] is not a shape [N, K]"));
    }
    const int64_t n = s[0].get<int64_t>();
    const int64_t k = s[1].get<int64_t>();
    auto expect = [&](const std::string& array, DType dtype, int64_t cols) -> absl::Status {
      const safetensors::TensorView* t = view_.Find(array);
      if (t == nullptr) return bad(absl::StrCat("array '", array, "' is missing"));
      if (t->dtype != dtype) {
        return bad(absl::StrCat("array '", array, "' has dtype ", safetensors::DTypeName(t->dtype),
                                ", expected ", safetensors::DTypeName(dtype)));
      }
      if (t->shape != std::vector<int64_t>{n, cols}) {
        return bad(absl::StrCat("array '", array, "' has the wrong shape for [", n, ", ", k, "]"));
      }
      claimed.insert(array);
      return absl::OkStatus();
    };
    OTARO_RETURN_IF_ERROR(expect(ArrayName(name, "exponents"), DType::kI8, (k + kGroupSize - 1) / kGroupSize));
    OTARO_RETURN_IF_ERROR(expect(ArrayName(name, "signs"), DType::kU8, (k + 7) / 8));
    for (int p = 0; p < kMasterBits; ++p) {
      OTARO_RETURN_IF_ERROR(expect(PlaneName(name, p), DType::kU8, (k + 7) / 8));
    }
    shapes_[name] = {n, k};
  }
  for (const safetensors::TensorView& t : view_.tensors()) {
    if (claimed.count(t.name)) continue;
    if (absl::StrContains(t.name, kSefpInfix)) {
      return bad(absl::StrCat("array '", t.name, "' belongs to no tensor listed in sefp_tensors"));
    }
    if (shapes_.count(t.name)) return bad(absl::StrCat("'", t.name, "' is both quantized and dense"));
    if (!IsDenseDType(t.dtype)) {
      return bad(absl::StrCat("dense tensor '", t.name, "' has dtype ", safetensors::DTypeName(t.dtype),
                              " (F32, F16 or BF16 expected)"));
    }
    dense_.push_back(t.name);
  }
  return absl::OkStatus();
}

std::vector<std::string> CheckpointReader::dense_names() const { return dense_; }

const safetensors::TensorView* CheckpointReader::FindDense(const std::string& name) const {
  for (const auto& d : dense_) {
    if (d == name) return view_.Find(name);
  }
  return nullptr;
}

absl::StatusOr<SefpTensor> CheckpointReader::LoadQuantized(const std::string& name) const {
  auto it = shapes_.find(name);
  if (it == shapes_.end()) {
    return absl::NotFoundError(absl::StrCat("SEFP checkpoint ", origin_, " has no quantized tensor '", name, "'"));
  }
  SefpTensor t;
  t.rows = it->second.first;
  t.cols = it->second.second;
  // Shapes and sizes were checked in Init, so these copies are in bounds.
  OTARO_RETURN_IF_ERROR(view_.Find(ArrayName(name, "exponents"))->CopyTo(&t.exponents));
  OTARO_RETURN_IF_ERROR(view_.Find(ArrayName(name, "signs"))->CopyTo(&t.signs));
  for (int p = 0; p < kMasterBits; ++p) {
    OTARO_RETURN_IF_ERROR(view_.Find(PlaneName(name, p))->CopyTo(&t.planes[p]));
  }
  absl::Status s = t.Validate(name);
  if (!s.ok()) return absl::DataLossError(absl::StrCat("SEFP checkpoint ", origin_, ": ", s.message()));
  return t;
}

absl::StatusOr<Checkpoint> CheckpointReader::LoadAll() const {
  Checkpoint c;
  c.metadata = metadata_;
  for (const auto& [name, shape] : shapes_) {
    OTARO_ASSIGN_OR_RETURN(c.quantized[name], LoadQuantized(name));
  }
  for (const auto& name : dense_) {
    const safetensors::TensorView* t = view_.Find(name);
    DenseTensor d;
    d.dtype = t->dtype;
    d.shape = t->shape;
    d.bytes.assign(t->bytes.begin(), t->bytes.end());
    c.dense[name] = std::move(d);
  }
  return c;
}

}  // namespace otaro::sefp
