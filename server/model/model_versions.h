// Which model version the server answers with, and changing it while serving.
//
// At start-up the version the store marks as served is loaded (a fresh store
// records model.path as version 1 first), so a restart keeps the version last
// published. Publish and Rollback load the target version into a new
// ServedModel (own backend, KV cache and scheduler; same config) *before*
// swapping it into the ModelHost: requests in flight finish on the model they
// started with, new ones get the new one, and the old model is freed when its
// last request ends. Memory: for that while two models (weights + KV cache
// budget) are resident. A version that fails to load changes nothing.
// Publishes and rollbacks are serialised.
#ifndef OTARO_SERVER_MODEL_MODEL_VERSIONS_H_
#define OTARO_SERVER_MODEL_MODEL_VERSIONS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "engine/serving/step_gate.h"
#include "otaro/v1/models.pb.h"
#include "server/config/config.h"
#include "server/metrics/registry.h"
#include "server/model/served_model.h"
#include "server/store/store.h"

namespace otaro::server {

class ModelVersions {
 public:
  // Called after every change of the served model (start-up included), with
  // the model now served and the one before (null at start-up).
  using SwapListener = std::function<void(const ServedModel& now, const ServedModel* before)>;

  // Loads the version to serve into `host` (none when neither the store nor
  // model.path names one). `store` may be null (no store.dir): model.path is
  // then served as version 1 and publishing is refused. Registers the
  // otaro_model_version gauge and otaro_model_publishes_total counter.
  static absl::StatusOr<std::unique_ptr<ModelVersions>> Start(const Config& config, Store* store,
                                                              ModelHost* host,
                                                              metrics::Registry* registry,
                                                              SwapListener on_swap = nullptr);

  bool has_store() const { return store_ != nullptr; }

  // Ascending by version; `serving` marks the one being served.
  absl::StatusOr<std::vector<otaro::v1::ModelVersion>> List();
  // Serves `version` from now on. NOT_FOUND for an unknown version,
  // FAILED_PRECONDITION when it cannot be loaded (the served one stays).
  absl::StatusOr<otaro::v1::ModelVersion> Publish(uint64_t version) ABSL_LOCKS_EXCLUDED(mu_);
  // Serves the version served before the current one (FAILED_PRECONDITION when
  // there is none or it cannot be loaded).
  absl::StatusOr<otaro::v1::ModelVersion> Rollback() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  ModelVersions(const Config& config, Store* store, ModelHost* host, SwapListener on_swap)
      : config_(config), store_(store), host_(host), on_swap_(std::move(on_swap)) {}
  absl::Status RegisterMetrics(metrics::Registry* registry);
  absl::Status LoadInitial();
  absl::Status NeedStore(const char* what) const;
  // Loads `record` and swaps it in after `commit` (the store update) succeeds.
  absl::Status LoadAndSwap(const ModelVersionRecord& record,
                           const std::function<absl::Status()>& commit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<otaro::v1::ModelVersion> Describe(uint64_t version);
  void Count(const char* action, const absl::Status& status);

  const Config config_;
  Store* const store_;
  ModelHost* const host_;
  const SwapListener on_swap_;
  metrics::CounterFamily* publishes_ = nullptr;
  // Shared by every version's scheduler: while a publish or rollback leaves
  // two versions with work, their steps take turns instead of running at once
  // on cores sized for one engine (engine/serving/step_gate.h).
  const std::shared_ptr<engine::StepGate> step_gate_ = std::make_shared<engine::StepGate>();
  // Serialises Publish and Rollback (loading happens under it: a second
  // publish waits rather than loading a third model at the same time).
  Mutex mu_;  // common/mutex.h: visible to TSan, checked by clang
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_MODEL_MODEL_VERSIONS_H_
