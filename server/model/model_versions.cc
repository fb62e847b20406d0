#include "server/model/model_versions.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace otaro::server {

absl::StatusOr<std::unique_ptr<ModelVersions>> ModelVersions::Start(const Config& config,
                                                                    Store* store, ModelHost* host,
                                                                    metrics::Registry* registry,
                                                                    SwapListener on_swap) {
  std::unique_ptr<ModelVersions> versions(
      new ModelVersions(config, store, host, std::move(on_swap)));
  if (registry != nullptr) OTARO_RETURN_IF_ERROR(versions->RegisterMetrics(registry));
  OTARO_RETURN_IF_ERROR(versions->LoadInitial());
  return versions;
}

absl::Status ModelVersions::RegisterMetrics(metrics::Registry* registry) {
  OTARO_ASSIGN_OR_RETURN(
      metrics::CallbackGaugeFamily * version,
      registry->AddCallbackGauge("otaro_model_version",
                                 "The model version being served (0 = none).", {}));
  const ModelHost* host = host_;
  version->Set({}, [host] {
    auto served = host->current();
    return served ? static_cast<double>(served->version) : 0.0;
  });
  OTARO_ASSIGN_OR_RETURN(
      publishes_,
      registry->AddCounter("otaro_model_publishes_total",
                           "Model version changes asked for, by action (publish, rollback) and "
                           "outcome (OK or the error code).",
                           {"action", "outcome"}));
  return absl::OkStatus();
}

void ModelVersions::Count(const char* action, const absl::Status& status) {
  if (publishes_ == nullptr) return;
  publishes_->WithLabels({action, absl::StatusCodeToString(status.code())}).Increment();
}

absl::Status ModelVersions::LoadInitial() {
  if (store_ == nullptr) {
    if (config_.model.path.empty()) return absl::OkStatus();
    OTARO_ASSIGN_OR_RETURN(auto model, LoadServedModel(config_));
    host_->Set(model);
    if (on_swap_) on_swap_(*model, nullptr);
    return absl::OkStatus();
  }
  std::optional<uint64_t> current;
  OTARO_ASSIGN_OR_RETURN(current, store_->CurrentVersion());
  if (!current.has_value() && config_.model.path.empty()) return absl::OkStatus();
  OTARO_ASSIGN_OR_RETURN(ModelVersionRecord record, store_->InitializeServing(config_.model.path));
  if (current.has_value() && record.version == 1 && !config_.model.path.empty() &&
      record.path != config_.model.path) {
    OTARO_LOG_WARN(
        "model.path is {} but the store {} started from {} (version 1): the store decides what "
        "is served; use an empty store.dir to start over from model.path",
        config_.model.path, store_->dir(), record.path);
  } else if (record.version != 1) {
    OTARO_LOG_INFO("serving model version {}, the version last published in the store {}",
                   record.version, store_->dir());
  }
  auto model = LoadServedModel(config_, record.path, record.version, step_gate_);
  if (!model.ok()) {
    return absl::Status(
        model.status().code(),
        absl::StrCat("the store ", store_->dir(), " serves model version ", record.version,
                     ", which cannot be loaded: ", model.status().message()));
  }
  host_->Set(*model);
  if (on_swap_) on_swap_(**model, nullptr);
  return absl::OkStatus();
}

absl::Status ModelVersions::NeedStore(const char* what) const {
  if (store_ != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(what, " needs the persistent store: set store.dir in the server's config"));
}

absl::StatusOr<otaro::v1::ModelVersion> ModelVersions::Describe(uint64_t version) {
  OTARO_ASSIGN_OR_RETURN(ModelVersionRecord record, store_->GetModelVersion(version));
  auto served = host_->current();
  return ToModelVersionProto(record, served != nullptr && served->version == version);
}

absl::StatusOr<std::vector<otaro::v1::ModelVersion>> ModelVersions::List() {
  OTARO_RETURN_IF_ERROR(NeedStore("listing model versions"));
  OTARO_ASSIGN_OR_RETURN(std::vector<ModelVersionRecord> records, store_->ListModelVersions());
  auto served = host_->current();
  std::vector<otaro::v1::ModelVersion> out;
  out.reserve(records.size());
  for (const ModelVersionRecord& record : records) {
    out.push_back(
        ToModelVersionProto(record, served != nullptr && served->version == record.version));
  }
  return out;
}

absl::Status ModelVersions::LoadAndSwap(const ModelVersionRecord& record,
                                        const std::function<absl::Status()>& commit) {
  auto before = host_->current();
  const absl::Time start = absl::Now();
  auto model = LoadServedModel(config_, record.path, record.version, step_gate_);
  if (!model.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model version ", record.version, " cannot be served: ", model.status().message(),
        before ? absl::StrCat("; still serving version ", before->version) : std::string()));
  }
  before.reset();  // so use_count below counts requests only
  // Recorded first: a crash right after still restarts on the version asked for.
  OTARO_RETURN_IF_ERROR(commit());
  std::shared_ptr<const ServedModel> old = host_->Set(*model);
  if (on_swap_) on_swap_(**model, old.get());
  OTARO_LOG_INFO(
      "now serving model version {} (was {}; loaded in {:.2f} s); requests in flight finish on "
      "the version they started with ({} other reference(s) to the old one)",
      record.version, old ? absl::StrCat(old->version) : "none",
      absl::ToDoubleSeconds(absl::Now() - start), old ? old.use_count() - 1 : 0);
  // `old` goes here or with its last request, never under the host's lock.
  return absl::OkStatus();
}

absl::StatusOr<otaro::v1::ModelVersion> ModelVersions::Publish(uint64_t version) {
  absl::Status status = [&]() -> absl::Status {
    OTARO_RETURN_IF_ERROR(NeedStore("publishing a model version"));
    if (version == 0)
      return absl::InvalidArgumentError("version must be set (versions start at 1)");
    MutexLock lock(&mu_);
    OTARO_ASSIGN_OR_RETURN(ModelVersionRecord record, store_->GetModelVersion(version));
    if (auto served = host_->current(); served != nullptr && served->version == version) {
      return store_->RecordPublish(version);  // already served: nothing to load
    }
    return LoadAndSwap(record, [&] { return store_->RecordPublish(version); });
  }();
  Count("publish", status);
  if (!status.ok()) return status;
  return Describe(version);
}

absl::StatusOr<otaro::v1::ModelVersion> ModelVersions::Rollback() {
  uint64_t target = 0;
  absl::Status status = [&]() -> absl::Status {
    OTARO_RETURN_IF_ERROR(NeedStore("rolling back the model version"));
    MutexLock lock(&mu_);
    std::optional<uint64_t> previous;
    OTARO_ASSIGN_OR_RETURN(previous, store_->RollbackTarget());
    if (!previous.has_value()) {
      return absl::FailedPreconditionError(
          "no earlier model version to roll back to: only one has been served");
    }
    target = *previous;
    OTARO_ASSIGN_OR_RETURN(ModelVersionRecord record, store_->GetModelVersion(target));
    return LoadAndSwap(record, [&] { return store_->RecordRollback(target).status(); });
  }();
  Count("rollback", status);
  if (!status.ok()) return status;
  return Describe(target);
}

}  // namespace otaro::server
