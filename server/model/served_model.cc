#include "server/model/served_model.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/background_priority.h"
#include "common/logging.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "server/model/device_choice.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/loader.h"

namespace otaro::server {

otaro::v1::ModelInfo ServedModel::Info() const {
  const engine::LlamaModel& m = *model;
  otaro::v1::ModelInfo info;
  info.set_architecture(m.config.architecture);
  info.set_source(m.source);
  info.set_parameter_count(static_cast<uint64_t>(m.config.ParameterCount()));
  info.set_vocab_size(static_cast<uint32_t>(m.config.vocab_size));
  info.set_context_length(static_cast<uint32_t>(m.config.max_position));
  info.set_num_layers(static_cast<uint32_t>(m.config.num_layers));
  info.set_hidden_size(static_cast<uint32_t>(m.config.hidden_size));
  info.set_group_size(sefp::kGroupSize);
  info.set_master_mantissa_bits(sefp::kMasterBits);
  info.set_resident_max_bits(static_cast<uint32_t>(m.resident_max_bits));
  for (int bits = sefp::kMinBits; bits <= m.resident_max_bits; ++bits) {
    info.add_supported_mantissa_bits(bits);
    (*info.mutable_weight_bytes_per_token())[bits] = m.LinearBytesRead(bits);
  }
  info.set_default_mantissa_bits(static_cast<uint32_t>(default_mantissa_bits));
  info.set_reconstruction(m.reconstruction == sefp::Reconstruction::kMidpoint
                              ? otaro::v1::RECONSTRUCTION_MIDPOINT
                              : otaro::v1::RECONSTRUCTION_TRUNCATE);
  info.set_model_version(version);
  info.set_device(device);
  info.set_device_reason(device_reason);
  info.set_kernel_isa(kernel_isa);
  info.set_lm_head_precision(m.lm_head_precision.Name());
  info.mutable_memory()->set_weight_bytes(m.LinearWeightBytes());
  info.mutable_memory()->set_kv_cache_bytes(
      static_cast<uint64_t>(backend->kv_cache().num_blocks()) * backend->kv_cache().BytesPerBlock());
  info.mutable_memory()->set_workspace_bytes(backend->WorkspaceBytes());
  info.mutable_memory()->set_dense_bytes(m.DenseBytes());
  info.set_has_chat_template(chat_format.has_value());
  return info;
}

absl::StatusOr<std::shared_ptr<const ServedModel>> LoadServedModel(const Config& config) {
  auto served = LoadServedModel(config, config.model.path, 1);
  if (!served.ok()) {
    return absl::Status(served.status().code(),
                        absl::StrCat("model.path: ", served.status().message()));
  }
  return served;
}

absl::StatusOr<std::shared_ptr<const ServedModel>> LoadServedModel(
    const Config& config, const std::string& path, uint64_t version,
    std::shared_ptr<engine::StepGate> step_gate) {
  OTARO_ASSIGN_OR_RETURN(const DeviceChoice device, ChooseDevice(config.engine.device));
  engine::LoadOptions options;
  options.resident_max_bits = config.model.resident_max_bits;
  OTARO_ASSIGN_OR_RETURN(options.lm_head,
                         engine::LmHeadPrecision::Parse(config.model.lm_head_precision));
  absl::Time start = absl::Now();
  OTARO_LOG_INFO("loading model version {} from {} (SEFP planes resident down to E5M{})",
                 version, path, options.resident_max_bits);
  // Reading, dequantizing and packing run at background priority so a publish
  // under load does not slow the streams of the version being served; the
  // backend and scheduler (threads that must run at normal priority) are
  // created below, on the caller's thread (common/background_priority.h).
  // The loader's transients (a GGUF's dequantized tensors, a checkpoint's
  // logical planes before packing) are freed when LoadModel returns; they go
  // back to the system right after, still at background priority: the trim
  // holds each malloc arena's lock while it walks it, and at normal priority
  // it stalled the streams' threads that allocate (common/process_memory.h).
  int64_t transients = 0;
  absl::Duration trim_time;
  auto model = RunAtBackgroundPriority([&] {
    auto loaded = engine::LoadModel(path, options);
    const absl::Time trim_start = absl::Now();
    transients = ReleaseFreeHeapMemory();
    trim_time = absl::Now() - trim_start;
    return loaded;
  });
  if (!model.ok()) {
    return absl::Status(model.status().code(),
                        absl::StrCat("cannot load model version ", version, " from ", path, ": ",
                                     model.status().message()));
  }
  auto served = std::make_unique<ServedModel>();
  served->model = std::move(*model);
  served->version = version;
  served->device = device.device;
  served->device_reason = device.reason;
  served->default_mantissa_bits = config.DefaultMantissaBits();
  if (served->default_mantissa_bits > served->model->resident_max_bits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "generation.default_mantissa_bits ", served->default_mantissa_bits,
        " exceeds the resident planes of the model (E5M", served->model->resident_max_bits, ")"));
  }
  engine::cpu::CpuBackendOptions backend_options;
  backend_options.num_threads = config.engine.threads;
  OTARO_ASSIGN_OR_RETURN(backend_options.isa, sefp::ParseIsa(config.engine.isa));
  backend_options.kv_cache.budget_bytes = config.engine.kv_cache_mb << 20;
  auto backend = engine::cpu::CpuBackend::Create(served->model.get(), backend_options);
  if (!backend.ok()) {
    return absl::Status(backend.status().code(),
                        absl::StrCat("cannot start the CPU backend (engine.kv_cache_mb ",
                                     config.engine.kv_cache_mb, "): ", backend.status().message()));
  }
  served->kernel_isa = std::string(sefp::IsaName((*backend)->isa()));
  OTARO_LOG_INFO("model version {}: SEFP kernels {} ({}), lm_head {}", version, served->kernel_isa,
                 config.engine.isa == "auto" ? "the best this CPU has" : "engine.isa",
                 served->model->lm_head_precision.Name());
  served->backend = std::move(*backend);
  engine::SchedulerOptions scheduler_options;
  scheduler_options.max_running = config.engine.max_batch_sequences;
  scheduler_options.max_waiting = config.generation.max_waiting_requests;
  scheduler_options.max_queue_time =
      absl::Milliseconds(static_cast<int64_t>(config.generation.max_queue_time_seconds * 1000));
  scheduler_options.step_gate = std::move(step_gate);
  auto scheduler = engine::Scheduler::Create(served->backend.get(), served->model->tokenizer.get(),
                                             scheduler_options);
  if (!scheduler.ok()) return scheduler.status();
  served->scheduler = std::move(*scheduler);

  if (served->model->tokenizer != nullptr) {
    auto format = engine::tokenizer::RecognizeChatTemplate(*served->model->tokenizer);
    if (format.ok()) {
      served->chat_format = *format;
    } else {
      OTARO_LOG_WARN("chat prompts are unavailable for this model: {}", format.status());
    }
  }
  const engine::LlamaModel& m = *served->model;
  OTARO_LOG_INFO(
      "loaded {} model version {} from {} ({}): {} parameters, {} layers, SEFP {:.1f} MiB "
      "resident, {:.1f} MiB dense, {} reconstruction, in {:.2f} s",
      m.config.architecture, version, m.source_format, m.source, m.config.ParameterCount(),
      m.config.num_layers, m.LinearWeightBytes() / 1048576.0, m.DenseBytes() / 1048576.0,
      sefp::ReconstructionName(m.reconstruction), absl::ToDoubleSeconds(absl::Now() - start));
  OTARO_LOG_INFO("model version {}: {:.0f} MiB of the loader's transients returned to the system "
                 "in {:.1f} ms",
                 version, transients / 1048576.0, absl::ToDoubleMilliseconds(trim_time));
  // A replaced version goes when its last request lets go, on that request's
  // thread: unloaded at background priority too (it took 25-70 ms of a core
  // at normal priority, and the soak test saw streams' inter-token gaps of
  // 2.6x the median then; 1.8x at background priority).
  return std::shared_ptr<const ServedModel>(served.release(), [](const ServedModel* model) {
    const uint64_t version = model->version;
    const absl::Time start = absl::Now();
    absl::Time trim_start;
    const int64_t released = RunAtBackgroundPriority([&] {
      delete model;
      trim_start = absl::Now();
      return ReleaseFreeHeapMemory();
    });
    const HeapUsage heap = CurrentHeapUsage();
    OTARO_LOG_INFO("model version {} unloaded in {:.1f} ms; then {:.0f} MiB returned to the "
                   "system in {:.1f} ms; resident {:.1f} MiB, heap in use {:.1f} MiB, "
                   "free {:.1f} MiB",
                   version, absl::ToDoubleMilliseconds(trim_start - start), released / 1048576.0,
                   absl::ToDoubleMilliseconds(absl::Now() - trim_start),
                   ResidentBytes() / 1048576.0, heap.in_use_bytes / 1048576.0,
                   heap.free_bytes / 1048576.0);
  });
}

}  // namespace otaro::server
