#include "trainer/model/parameters.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace otaro::trainer {
namespace {

bool IsQuantizedLinear(absl::string_view name) {
  for (const char* suffix : {"self_attn.q_proj.weight", "self_attn.k_proj.weight",
                             "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                             "mlp.gate_proj.weight", "mlp.up_proj.weight",
                             "mlp.down_proj.weight"}) {
    if (absl::EndsWith(name, suffix)) return true;
  }
  return false;
}

class ParametersSource : public engine::TensorSource {
 public:
  explicit ParametersSource(const Parameters* params) : params_(params) {}

  std::vector<std::string> Names() const override {
    std::vector<std::string> names;
    for (const Parameters::Tensor& t : params_->tensors()) names.push_back(t.name);
    return names;
  }
  bool Has(absl::string_view name) const override { return params_->Find(name) != nullptr; }
  absl::StatusOr<std::vector<int64_t>> Shape(absl::string_view name) const override {
    OTARO_ASSIGN_OR_RETURN(const Parameters::Tensor* t, Lookup(name));
    return t->shape;
  }
  absl::StatusOr<std::vector<float>> ReadFloat32(absl::string_view name) const override {
    OTARO_ASSIGN_OR_RETURN(const Parameters::Tensor* t, Lookup(name));
    absl::Span<const float> v = TensorIn(params_->values(), *t);
    return std::vector<float>(v.begin(), v.end());
  }
  std::string StorageType(absl::string_view name) const override { return "F32"; }
  std::string Describe() const override {
    return absl::StrCat("trainer parameters (", params_->tensors().size(), " tensors, ",
                        params_->values().size(), " values)");
  }

 private:
  absl::StatusOr<const Parameters::Tensor*> Lookup(absl::string_view name) const {
    const Parameters::Tensor* t = params_->Find(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat("tensor '", name, "' is not in ", Describe()));
    }
    return t;
  }

  const Parameters* params_;
};

}  // namespace

absl::StatusOr<Parameters> Parameters::FromSource(const engine::TensorSource& source,
                                                  const engine::ModelConfig& config) {
  OTARO_RETURN_IF_ERROR(engine::ValidateConfig(config));
  OTARO_RETURN_IF_ERROR(engine::CheckTensors(source, config));
  Parameters p;
  p.config_ = config;
  int64_t total = 0;
  for (const std::string& name : engine::ExpectedTensorNames(config)) {
    Tensor t;
    t.name = name;
    OTARO_ASSIGN_OR_RETURN(t.shape, source.Shape(name));
    t.size = 1;
    for (int64_t d : t.shape) t.size *= d;
    t.offset = total;
    t.quantized = IsQuantizedLinear(name);
    total += t.size;
    p.tensors_.push_back(std::move(t));
  }
  p.values_.resize(total);
  for (const Tensor& t : p.tensors_) {
    OTARO_ASSIGN_OR_RETURN(std::vector<float> v, source.ReadFloat32(t.name));
    if (static_cast<int64_t>(v.size()) != t.size) {
      return absl::InternalError(absl::StrCat("tensor '", t.name, "' read ", v.size(),
                                              " values from ", source.Describe(), ", expected ",
                                              t.size));
    }
    std::copy(v.begin(), v.end(), p.values_.begin() + t.offset);
  }
  return p;
}

Parameters Parameters::ZerosLike(const Parameters& other) {
  Parameters p;
  p.config_ = other.config_;
  p.tensors_ = other.tensors_;
  p.values_.assign(other.values_.size(), 0.0f);
  return p;
}

const Parameters::Tensor* Parameters::Find(absl::string_view name) const {
  for (const Tensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::Span<float> Parameters::Get(absl::string_view name) {
  const Tensor* t = Find(name);
  return t == nullptr ? absl::Span<float>() : TensorIn(values(), *t);
}

absl::Span<const float> Parameters::Get(absl::string_view name) const {
  const Tensor* t = Find(name);
  return t == nullptr ? absl::Span<const float>() : TensorIn(values(), *t);
}

std::unique_ptr<engine::TensorSource> AsTensorSource(const Parameters& params) {
  return std::make_unique<ParametersSource>(&params);
}

}  // namespace otaro::trainer
