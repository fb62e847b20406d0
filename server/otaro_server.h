// The running service: the gRPC server (API v1 + health + reflection), the
// OpenAI-compatible HTTP API over it, the metrics endpoint, and the shutdown
// sequence. main.cc owns process concerns
// (flags, signals); this class owns the serving lifecycle so tests can drive it.
#ifndef OTARO_SERVER_OTARO_SERVER_H_
#define OTARO_SERVER_OTARO_SERVER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "server/config/config.h"
#include "server/metrics/http_server.h"
#include "server/metrics/registry.h"
#include "server/model/model_versions.h"
#include "server/model/served_model.h"
#include "server/openai/openai_http_server.h"
#include "server/service/call_gate.h"
#include "server/service/services.h"
#include "server/store/store.h"
#include "server/tuning/job_manager.h"
#include "server/tuning/tuning_metrics.h"
#include "server/tuning/tuning_service.h"

namespace otaro::server {

class OtaroServer {
 public:
  // Binds every listener and starts serving; errors (port taken, bad address)
  // are returned, never thrown or aborted on.
  static absl::StatusOr<std::unique_ptr<OtaroServer>> Start(const Config& config);

  ~OtaroServer();

  int grpc_port() const { return grpc_port_; }
  // 0 when the metrics endpoint is disabled.
  int metrics_port() const;
  // The OpenAI API's port; 0 when server.http_address is empty.
  int http_port() const;

  // The graceful stop, run once on SIGTERM/SIGINT:
  //  1. health turns NOT_SERVING and new calls get UNAVAILABLE;
  //  2. after server.drain_delay_seconds, in-flight calls get up to
  //     server.shutdown_timeout_seconds to finish, then are cancelled;
  //  3. listeners close. Returns true if every call finished in time.
  bool Drain();

 private:
  explicit OtaroServer(const Config& config);
  bool model_loaded() const;
  absl::Status RegisterModelMetrics();
  // The tuning worker and its service (answering FAILED_PRECONDITION without a store).
  absl::Status StartTuning();
  // Keeps otaro_model_info on the served model.
  void OnModelSwap(const ServedModel& now, const ServedModel* before);
  // /readyz: a model is loaded and the server is not draining.
  bool ready() const;

  Config config_;
  CallGate gate_;
  ModelHost models_;
  std::unique_ptr<InferenceService> inference_;
  std::unique_ptr<TuningMetrics> tuning_metrics_;
  // Null without store.dir. Shut down first in ~OtaroServer and Drain: its
  // worker uses the store, the versions and the metrics declared around it.
  std::unique_ptr<TuningJobManager> tuning_jobs_;
  std::unique_ptr<TuningService> tuning_;
  std::unique_ptr<Store> store_;  // null without store.dir
  std::unique_ptr<ModelVersions> versions_;
  std::unique_ptr<ModelVersionsService> model_versions_;
  metrics::Registry registry_;
  std::unique_ptr<GenerationMetrics> generation_metrics_;
  metrics::CallbackGaugeFamily* model_info_ = nullptr;
  std::unique_ptr<metrics::MetricsHttpServer> metrics_http_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int grpc_port_ = 0;
  // After grpc_server_, so it is destroyed first: it holds a channel into it.
  std::unique_ptr<openai::OpenAiHttpServer> openai_http_;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_OTARO_SERVER_H_
