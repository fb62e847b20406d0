#include "server/otaro_server.h"

#include <cstring>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "engine/model/loader.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "server/auth/server_credentials.h"
#include "server/build_info.h"
#include "server/model/device_choice.h"
#include "server/metrics/process_metrics.h"
#include "server/service/unparsable_request.h"

namespace otaro::server {
namespace {

// Health is reported per service: "" (the whole server) is SERVING while the
// process answers; the API services are SERVING only once they can do their
// work (Inference: a model is loaded). Orchestrators probe the one they need.
constexpr const char* kInferenceService = "otaro.v1.Inference";
constexpr const char* kTuningService = "otaro.v1.Tuning";
constexpr const char* kModelVersionsService = "otaro.v1.ModelVersions";

absl::Duration Seconds(double s) { return absl::Milliseconds(static_cast<int64_t>(s * 1000)); }

}  // namespace

namespace {

GenerateLimits LimitsFrom(const Config& config) {
  GenerateLimits limits;
  limits.default_mantissa_bits = config.DefaultMantissaBits();
  limits.default_max_tokens = config.generation.default_max_tokens;
  limits.max_tokens_cap = config.generation.max_tokens_cap;
  return limits;
}

// server.http_model_name, else model.path's last component without its
// extension (a folder's name as it is): stable across tuning publishes, which
// change the served file but not what clients call the model.
std::string OpenAiModelName(const Config& config) {
  if (!config.server.http_model_name.empty()) return config.server.http_model_name;
  std::filesystem::path path(config.model.path);
  if (path.has_filename() == false) path = path.parent_path();
  if (path.empty()) return "otaro";
  std::string name = path.filename().string();
  for (const char* ext : {".gguf", ".sefp", ".bin", ".safetensors"}) {
    if (absl::EndsWith(name, ext) && name.size() > std::strlen(ext)) {
      name.resize(name.size() - std::strlen(ext));
      break;
    }
  }
  return name;
}

}  // namespace

OtaroServer::OtaroServer(const Config& config) : config_(config) {}

OtaroServer::~OtaroServer() {
  if (tuning_jobs_) tuning_jobs_->Shutdown();
  if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now());
  if (openai_http_) openai_http_->Stop();
  if (metrics_http_) metrics_http_->Stop();
}

int OtaroServer::metrics_port() const { return metrics_http_ ? metrics_http_->port() : 0; }

int OtaroServer::http_port() const { return openai_http_ ? openai_http_->port() : 0; }

absl::StatusOr<std::unique_ptr<OtaroServer>> OtaroServer::Start(const Config& config) {
  std::unique_ptr<OtaroServer> server(new OtaroServer(config));

  absl::Status status = metrics::RegisterProcessMetrics(
      server->registry_, metrics::BuildInfo{kVersion, kGitCommit});
  if (!status.ok()) return status;
  if (status = server->RegisterModelMetrics(); !status.ok()) return status;
  auto generation_metrics = GenerationMetrics::Register(&server->registry_, &server->models_);
  if (!generation_metrics.ok()) return generation_metrics.status();
  server->generation_metrics_ = std::move(*generation_metrics);
  server->inference_ = std::make_unique<InferenceService>(
      &server->gate_, &server->models_, LimitsFrom(config), server->generation_metrics_.get());

  // The device is decided once, before anything loads: `cuda` that cannot run
  // fails the start here, `auto` says where it runs and why.
  auto device = ChooseDevice(config.engine.device);
  if (!device.ok()) return device.status();
  OTARO_LOG_INFO("engine.device {}: running on {} ({})", device->requested, device->device,
                 device->reason);
  {
    auto info = server->registry_.AddGauge(
        "otaro_engine_device_info",
        "The backend the model runs on (device), what engine.device asked (requested) and why.",
        {"device", "requested", "reason"});
    if (!info.ok()) return info.status();
    (*info)->WithLabels({device->device, device->requested, device->reason}).Set(1);
  }

  // Access control and TLS are checked before the (slow) model load, so a bad
  // token file or certificate fails the start at once.
  auto security = auth::MakeServerSecurity(config, &server->registry_);
  if (!security.ok()) return security.status();

  // The model loads before any listener opens: a bad model.path is a start-up
  // error with a clear message, never a server that answers without a model.
  // With a store, the version it marks as served (model.path on a fresh one).
  if (!config.store.dir.empty()) {
    auto store = Store::Open(config.store.dir);
    if (!store.ok()) return store.status();
    server->store_ = *std::move(store);
  }
  OtaroServer* self = server.get();
  auto versions = ModelVersions::Start(
      config, server->store_.get(), &server->models_, &server->registry_,
      [self](const ServedModel& now, const ServedModel* before) {
        self->OnModelSwap(now, before);
      });
  if (!versions.ok()) return versions.status();
  server->versions_ = *std::move(versions);
  server->model_versions_ =
      std::make_unique<ModelVersionsService>(&server->gate_, server->versions_.get());
  if (absl::Status tuning = server->StartTuning(); !tuning.ok()) return tuning;

  if (!config.server.metrics_address.empty()) {
    metrics::MetricsHttpServerOptions options;
    options.listen_address = config.server.metrics_address;
    options.num_threads = config.server.metrics_threads;
    OtaroServer* self = server.get();
    options.readiness = [self] { return self->ready(); };
    auto http = metrics::MetricsHttpServer::Start(&server->registry_, std::move(options));
    if (!http.ok()) {
      return absl::Status(http.status().code(),
                          absl::StrCat("metrics endpoint (server.metrics_address ",
                                       config.server.metrics_address,
                                       "): ", http.status().message()));
    }
    server->metrics_http_ = std::move(*http);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.server.grpc_address, security->credentials,
                           &server->grpc_port_);
  // gRPC sets SO_REUSEPORT by default, which would let a second server bind the
  // same port and silently split the traffic. A taken port must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.server.max_receive_message_bytes));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(UnparsableRequestInterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(server->inference_.get());
  builder.RegisterService(server->tuning_.get());
  builder.RegisterService(server->model_versions_.get());
  server->grpc_server_ = builder.BuildAndStart();
  if (server->grpc_server_ == nullptr || server->grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen for gRPC on ", config.server.grpc_address,
        " (server.grpc_address): the port is in use or the address is not local"));
  }

  if (!config.server.http_address.empty()) {
    openai::OpenAiHttpServerOptions options;
    options.listen_address = config.server.http_address;
    options.num_threads = config.server.http_threads;
    options.max_body_bytes = config.server.max_receive_message_bytes;
    options.model_name = OpenAiModelName(config);
    options.access_control = security->access_control;
    if (!config.tls.cert_file.empty()) {
      options.tls = http::TlsFiles{config.tls.cert_file, config.tls.key_file,
                                   config.tls.client_ca_file};
    }
    auto http = openai::OpenAiHttpServer::Start(
        server->grpc_server_->InProcessChannel(grpc::ChannelArguments()), std::move(options));
    if (!http.ok()) {
      return absl::Status(http.status().code(),
                          absl::StrCat("OpenAI API (server.http_address ",
                                       config.server.http_address, "): ", http.status().message()));
    }
    server->openai_http_ = *std::move(http);
  }

  auto* health = server->grpc_server_->GetHealthCheckService();
  health->SetServingStatus("", true);
  health->SetServingStatus(kInferenceService, server->model_loaded());
  health->SetServingStatus(kTuningService, server->tuning_jobs_ != nullptr);
  health->SetServingStatus(kModelVersionsService, server->versions_->has_store());
  if (!server->model_loaded()) {
    OTARO_LOG_WARN(
        "no model configured (model.path is empty): GetModelInfo answers FAILED_PRECONDITION "
        "and otaro.v1.Inference reports NOT_SERVING; start with --model PATH to serve one");
  }
  return server;
}

absl::Status OtaroServer::StartTuning() {
  if (store_ == nullptr) {
    tuning_ = std::make_unique<TuningService>(&gate_, nullptr);
    return absl::OkStatus();
  }
  Store* store = store_.get();
  auto metrics = TuningMetrics::Register(&registry_, [store] {
    auto counts = store->CountJobsByState();
    return counts.ok() ? *counts : std::map<otaro::v1::JobState, int64_t>{};
  });
  if (!metrics.ok()) return metrics.status();
  tuning_metrics_ = std::move(*metrics);

  TuningSettings settings;
  settings.jobs_dir = config_.store.dir + "/jobs";
  settings.environment.data_dir = config_.tuning.data_dir;
  settings.environment.zero_shot_dir = config_.tuning.zero_shot_dir;
  settings.environment.max_upload_bytes = config_.tuning.max_upload_mb << 20;
  settings.environment.threads = config_.tuning.threads;
  settings.environment.max_memory_bytes = config_.tuning.max_memory_mb << 20;
  settings.max_queued_jobs = config_.tuning.max_queued_jobs;
  settings.base_model_path = config_.tuning.base_model_path;
  // Version 1 is model.path; it is its own float source unless it is SEFP.
  if (settings.base_model_path.empty() && !config_.model.path.empty()) {
    auto format = engine::DetectModelFormat(config_.model.path);
    if (format.ok() && *format != engine::ModelFormat::kSefp) {
      settings.base_model_path = config_.model.path;
    }
  }
  ModelVersionHooks hooks;
  const ModelHost* host = &models_;
  hooks.current_version = [host]() -> absl::StatusOr<uint64_t> {
    auto served = host->current();
    if (served == nullptr) return absl::FailedPreconditionError("no model is served");
    return served->version;
  };
  ModelVersions* versions = versions_.get();
  hooks.publish = [versions](uint64_t version) { return versions->Publish(version).status(); };
  tuning_jobs_ = std::make_unique<TuningJobManager>(store, std::move(settings), std::move(hooks),
                                                    tuning_metrics_.get());
  OTARO_RETURN_IF_ERROR(tuning_jobs_->Start());
  tuning_ = std::make_unique<TuningService>(&gate_, tuning_jobs_.get());
  return absl::OkStatus();
}

bool OtaroServer::model_loaded() const { return models_.current() != nullptr; }

absl::Status OtaroServer::RegisterModelMetrics() {
  auto info = registry_.AddCallbackGauge(
      "otaro_model_info", "The served model (value 1), by version, source format and device.",
      {"version", "format", "device", "reconstruction"});
  if (!info.ok()) return info.status();
  auto bytes = registry_.AddCallbackGauge(
      "otaro_model_weight_bytes",
      "Bytes of the served model's weights: SEFP planes held (sefp) or dense tensors (dense).",
      {"kind"});
  if (!bytes.ok()) return bytes.status();
  auto read = registry_.AddCallbackGauge(
      "otaro_model_weight_bytes_per_token",
      "Bytes of SEFP linear weights one token reads, by precision.", {"precision"});
  if (!read.ok()) return read.status();
  // The families exist from the start; their samples follow the served model.
  const ModelHost* host = &models_;
  for (int m = sefp::kMinBits; m <= sefp::kMasterBits; ++m) {
    (*read)->Set({absl::StrCat("E5M", m)}, [host, m] {
      auto served = host->current();
      return served && m <= served->model->resident_max_bits
                 ? static_cast<double>(served->model->LinearBytesRead(m))
                 : 0.0;
    });
  }
  (*bytes)->Set({"sefp"}, [host] {
    auto served = host->current();
    return served ? static_cast<double>(served->model->LinearWeightBytes()) : 0.0;
  });
  (*bytes)->Set({"dense"}, [host] {
    auto served = host->current();
    return served ? static_cast<double>(served->model->DenseBytes()) : 0.0;
  });
  model_info_ = *info;
  return absl::OkStatus();
}

namespace {

std::vector<std::string> ModelInfoLabels(const ServedModel& served) {
  return {absl::StrCat(served.version), served.model->source_format, served.device,
          std::string(sefp::ReconstructionName(served.model->reconstruction))};
}

}  // namespace

void OtaroServer::OnModelSwap(const ServedModel& now, const ServedModel* before) {
  if (before != nullptr) {
    std::vector<std::string> old_labels = ModelInfoLabels(*before);
    model_info_->Remove(std::vector<absl::string_view>(old_labels.begin(), old_labels.end()));
  }
  std::vector<std::string> labels = ModelInfoLabels(now);
  model_info_->Set(std::vector<absl::string_view>(labels.begin(), labels.end()),
                   [] { return 1.0; });
}

bool OtaroServer::ready() const { return model_loaded() && !gate_.closed(); }

bool OtaroServer::Drain() {
  gate_.Close();
  // A running tuning job stops at its next step with a checkpoint (it comes
  // back INTERRUPTED, resumable); event streams end.
  if (tuning_jobs_) tuning_jobs_->Shutdown();
  // The no-argument form flips every service, "" included, to NOT_SERVING.
  grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  OTARO_LOG_INFO("health is NOT_SERVING; new calls get UNAVAILABLE");
  if (config_.server.drain_delay_seconds > 0) {
    absl::SleepFor(Seconds(config_.server.drain_delay_seconds));
  }
  int in_flight = gate_.in_flight();
  if (in_flight > 0) {
    OTARO_LOG_INFO("waiting up to {} s for {} call(s) in flight",
                   config_.server.shutdown_timeout_seconds, in_flight);
  }
  bool finished = gate_.WaitIdle(Seconds(config_.server.shutdown_timeout_seconds));
  if (!finished) {
    OTARO_LOG_WARN("{} call(s) still running after {} s: cancelling them", gate_.in_flight(),
                   config_.server.shutdown_timeout_seconds);
  }
  // Cancels whatever is left (incl. health Watch streams) and closes listeners.
  grpc_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  grpc_server_->Wait();
  // Its requests ended with their gRPC calls; this joins the workers.
  if (openai_http_) openai_http_->Stop();
  if (metrics_http_) metrics_http_->Stop();
  return finished;
}

}  // namespace otaro::server
