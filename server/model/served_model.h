// The model the server answers with: the engine's LlamaModel plus what the API
// reports about it (version, device, default precision). Requests hold a
// shared_ptr for their whole life, so a later hot swap (tuning jobs) can
// replace the current model without touching requests in flight.
#ifndef OTARO_SERVER_MODEL_SERVED_MODEL_H_
#define OTARO_SERVER_MODEL_SERVED_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "engine/model/llama_model.h"
#include "engine/runtime/backend.h"
#include "engine/serving/scheduler.h"
#include "engine/serving/step_gate.h"
#include "engine/tokenizer/chat_template.h"
#include "otaro/v1/inference.pb.h"
#include "server/config/config.h"

namespace otaro::server {

struct ServedModel {
  // Declared in dependency order: destroyed scheduler first, model last.
  std::unique_ptr<engine::LlamaModel> model;
  std::unique_ptr<engine::Backend> backend;
  std::unique_ptr<engine::Scheduler> scheduler;
  uint64_t version = 1;
  std::string device = "cpu";
  std::string device_reason;  // why (server/model/device_choice.h)
  // The SEFP kernels' instruction set (sefp::IsaName), chosen at load.
  std::string kernel_isa;
  int default_mantissa_bits = 8;
  // The model's chat template, if it has one otaro can render.
  std::optional<engine::tokenizer::ChatFormat> chat_format;

  otaro::v1::ModelInfo Info() const;
};

// Loads the model at `path` as model version `version` for serving, with
// everything else (device, threads, KV cache, scheduler limits, precision)
// from `config`. Each call builds its own backend and scheduler; versions
// loaded with the same `step_gate` step in turns while both have work (a
// publish: engine/serving/step_gate.h), null: no gate.
absl::StatusOr<std::shared_ptr<const ServedModel>> LoadServedModel(
    const Config& config, const std::string& path, uint64_t version,
    std::shared_ptr<engine::StepGate> step_gate = nullptr);
// The same for config.model.path as version 1 (a server without a store).
absl::StatusOr<std::shared_ptr<const ServedModel>> LoadServedModel(const Config& config);

// Holds the model being served. Readers take a reference for the duration of a
// request; Set swaps atomically.
class ModelHost {
 public:
  std::shared_ptr<const ServedModel> current() const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return current_;
  }
  // Returns the model served until now. Requests in flight keep it alive and
  // finish on it; it (and its scheduler) is destroyed when the last of them
  // and the caller let go, never under this lock, so readers are not held up.
  std::shared_ptr<const ServedModel> Set(std::shared_ptr<const ServedModel> model)
      ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    current_.swap(model);
    return model;
  }

 private:
  mutable Mutex mu_;  // common/mutex.h: visible to TSan, checked by clang
  std::shared_ptr<const ServedModel> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_MODEL_SERVED_MODEL_H_
