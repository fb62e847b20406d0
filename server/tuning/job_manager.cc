#include "server/tuning/job_manager.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/atomic_file.h"
#include "common/background_priority.h"
#include "common/logging.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "engine/model/loader.h"
#include "nlohmann/json.hpp"
#include "trainer/strategy/strategy.h"
#include "trainer/tuner.h"

namespace otaro::server {
namespace {

using otaro::v1::JobState;
using otaro::v1::TuningJobEvent;

// Step events and progress are persisted at most this often (the last step of
// a job always is): a tiny model takes thousands of steps a second, and every
// store write is an fsync.
constexpr absl::Duration kStepEventInterval = absl::Milliseconds(250);

std::string NewJobId() {
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device());
  return absl::StrFormat("job-%s-%06x", absl::FormatTime("%Y%m%d-%H%M%S", absl::Now(),
                                                         absl::UTCTimeZone()),
                         rng() & 0xffffff);
}

TuningJobEvent StateEvent(JobState state) {
  TuningJobEvent event;
  event.set_state_change(state);
  return event;
}

TuningJobEvent MessageEvent(const std::string& text) {
  TuningJobEvent event;
  event.set_message(text);
  return event;
}

// The API's strategy of a validated trainer strategy name ("+laa" is recorded
// in the version's notes).
otaro::v1::Strategy StrategyProto(const std::string& name) {
  const absl::StatusOr<trainer::Strategy> strategy = trainer::ParseStrategy(name);
  if (!strategy.ok()) return otaro::v1::STRATEGY_UNSPECIFIED;
  switch (strategy->kind) {
    case trainer::StrategyKind::kOtaro: return otaro::v1::STRATEGY_OTARO;
    case trainer::StrategyKind::kBps: return otaro::v1::STRATEGY_BPS;
    case trainer::StrategyKind::kUniform: return otaro::v1::STRATEGY_UNIFORM;
    case trainer::StrategyKind::kFixed: return otaro::v1::STRATEGY_FIXED;
    case trainer::StrategyKind::kFp: return otaro::v1::STRATEGY_FP;
  }
  return otaro::v1::STRATEGY_UNSPECIFIED;
}

// True when `tuned` has a lower held-out loss than `base` at every bit-width
// of the bit set (the auto-publish rule in tuning.proto); widths evaluated
// besides them (evaluation.mantissa_bits) are reported, not compared.
bool BeatsEverywhere(const trainer::Evaluation& base, const trainer::Evaluation& tuned,
                     const std::vector<int>& bit_set) {
  for (const trainer::EvalPoint& t : tuned.points) {
    if (std::find(bit_set.begin(), bit_set.end(), t.bits) == bit_set.end()) continue;
    for (const trainer::EvalPoint& b : base.points) {
      if (b.bits == t.bits && !(t.loss < b.loss)) return false;
    }
  }
  return true;
}

}  // namespace

bool IsFinalJobState(JobState state) {
  return state == otaro::v1::JOB_STATE_SUCCEEDED || state == otaro::v1::JOB_STATE_FAILED ||
         state == otaro::v1::JOB_STATE_CANCELLED || state == otaro::v1::JOB_STATE_INTERRUPTED;
}

TuningJobManager::TuningJobManager(Store* store, TuningSettings settings, ModelVersionHooks hooks,
                                   TuningMetrics* metrics, TuningRunner runner)
    : store_(store),
      settings_(std::move(settings)),
      hooks_(std::move(hooks)),
      metrics_(metrics),
      runner_(std::move(runner)) {}

TuningJobManager::~TuningJobManager() { Shutdown(); }

absl::Status TuningJobManager::Start() {
  OTARO_RETURN_IF_ERROR(CreateDirectories(settings_.jobs_dir));
  OTARO_ASSIGN_OR_RETURN(std::vector<std::string> interrupted,
                         store_->MarkRunningJobsInterrupted());
  for (const std::string& id : interrupted) {
    OTARO_LOG_WARN("tuning job {} was running when the server stopped: INTERRUPTED (resume it "
                   "with resume_job_id)", id);
  }
  JobFilter queued;
  queued.states = {otaro::v1::JOB_STATE_QUEUED};
  OTARO_ASSIGN_OR_RETURN(JobPage page, store_->ListJobs(queued, 1000, ""));
  {
    MutexLock lock(&mu_);
    // ListJobs is newest first; the queue runs oldest first.
    for (auto it = page.jobs.rbegin(); it != page.jobs.rend(); ++it) queue_.push_back(it->id);
    started_ = true;
  }
  worker_ = std::thread([this] { WorkerLoop(); });
  return absl::OkStatus();
}

void TuningJobManager::Shutdown() {
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    cancel_running_.store(true);
  }
  work_cv_.SignalAll();
  events_cv_.SignalAll();
  if (worker_.joinable()) worker_.join();
}

absl::Status TuningJobManager::Emit(const std::string& id, TuningJobEvent event) {
  OTARO_RETURN_IF_ERROR(store_->AppendEvent(id, std::move(event)).status());
  events_cv_.SignalAll();
  return absl::OkStatus();
}

absl::Status TuningJobManager::SetState(const std::string& id, JobState state,
                                        const std::string& error) {
  if (!error.empty()) OTARO_RETURN_IF_ERROR(Emit(id, MessageEvent(error)));
  // The store appends the state_change event in the same transaction.
  OTARO_RETURN_IF_ERROR(store_->UpdateJobState(id, state, error));
  events_cv_.SignalAll();
  if (IsFinalJobState(state) && metrics_ != nullptr) metrics_->JobFinished(state);
  return absl::OkStatus();
}

absl::StatusOr<otaro::v1::TuningJob> TuningJobManager::ToProto(const JobRecord& record) {
  otaro::v1::TuningJob job;
  job.set_id(record.id);
  job.set_display_name(record.spec.display_name());
  job.set_state(record.state);
  *job.mutable_spec() = record.spec;
  job.set_created_unix_seconds(record.created_unix_seconds);
  job.set_started_unix_seconds(record.started_unix_seconds);
  job.set_finished_unix_seconds(record.finished_unix_seconds);
  job.set_step(record.step);
  job.set_total_steps(record.total_steps);
  job.set_trained_tokens(record.trained_tokens);
  job.set_error(record.error);
  if (record.base_version != 0) job.mutable_base_version()->set_version(record.base_version);
  if (record.result_version != 0) job.mutable_result_version()->set_version(record.result_version);
  if (record.state == otaro::v1::JOB_STATE_RUNNING && record.step > 0 &&
      record.started_unix_seconds > 0 && record.total_steps > record.step) {
    const double elapsed = absl::ToUnixSeconds(absl::Now()) - record.started_unix_seconds;
    job.set_estimated_finish_unix_seconds(
        absl::ToUnixSeconds(absl::Now()) +
        static_cast<int64_t>(elapsed / record.step * (record.total_steps - record.step)));
  }
  OTARO_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> checkpoints,
                         store_->ListCheckpoints(record.id));
  for (const CheckpointRecord& c : checkpoints) {
    otaro::v1::Checkpoint* checkpoint = job.add_checkpoints();
    checkpoint->set_step(c.step);
    checkpoint->set_created_unix_seconds(c.created_unix_seconds);
    checkpoint->set_train_loss(c.train_loss);
    *checkpoint->mutable_evaluation() = c.evaluation;
  }
  return job;
}

absl::StatusOr<std::string> TuningJobManager::FloatSourceOf(uint64_t version) {
  if (version <= 1) {
    if (settings_.base_model_path.empty()) {
      return absl::FailedPreconditionError(
          "base_version.version: the served model has no float source to tune from: set "
          "tuning.base_model_path to "
          "the original model (HF folder, GGUF or llama2.c) the SEFP checkpoint came from");
    }
    return settings_.base_model_path;
  }
  OTARO_ASSIGN_OR_RETURN(ModelVersionRecord record, store_->GetModelVersion(version));
  const auto notes = nlohmann::json::parse(
      record.provenance.notes_json.empty() ? "{}" : record.provenance.notes_json, nullptr, false);
  if (notes.is_discarded() || !notes.contains("master_path") ||
      !notes["master_path"].is_string()) {
    return absl::FailedPreconditionError(
        absl::StrCat("base_version.version: model version ", version,
                     " records no master checkpoint to continue tuning from"));
  }
  return notes["master_path"].get<std::string>();
}

absl::StatusOr<otaro::v1::TuningJob> TuningJobManager::Create(
    const otaro::v1::CreateTuningJobRequest& request) {
  {
    MutexLock lock(&mu_);
    if (stopping_ || !started_) {
      return absl::UnavailableError("the tuning worker is not running (server shutting down?)");
    }
    if (static_cast<int>(queue_.size()) >= settings_.max_queued_jobs) {
      return absl::ResourceExhaustedError(absl::StrCat(
          queue_.size(), " tuning jobs are queued already (tuning.max_queued_jobs)"));
    }
  }
  if (!request.resume_job_id().empty()) {
    otaro::v1::CreateTuningJobRequest rest = request;
    rest.clear_resume_job_id();
    if (rest.ByteSizeLong() != 0) {
      return absl::InvalidArgumentError(
          "resume_job_id: the other fields must be empty when resuming a job");
    }
    absl::StatusOr<JobRecord> resumed = store_->GetJob(request.resume_job_id());
    if (!resumed.ok()) return FieldError("resume_job_id", resumed.status());
    JobRecord job = *std::move(resumed);
    if (job.state != otaro::v1::JOB_STATE_INTERRUPTED && job.state != otaro::v1::JOB_STATE_FAILED &&
        job.state != otaro::v1::JOB_STATE_CANCELLED) {
      return absl::FailedPreconditionError(
          absl::StrCat("resume_job_id: job ", job.id, " is ", otaro::v1::JobState_Name(job.state),
                       ": only INTERRUPTED, FAILED or CANCELLED jobs can be resumed"));
    }
    OTARO_RETURN_IF_ERROR(SetState(job.id, otaro::v1::JOB_STATE_QUEUED));
    // The answer is the job as queued: read before the worker can pick it up.
    OTARO_ASSIGN_OR_RETURN(job, store_->GetJob(job.id));
    OTARO_ASSIGN_OR_RETURN(otaro::v1::TuningJob queued, ToProto(job));
    {
      MutexLock lock(&mu_);
      queue_.push_back(job.id);
    }
    work_cv_.SignalAll();
    return queued;
  }

  // Everything that can be checked without reading the data or the model.
  OTARO_ASSIGN_OR_RETURN(trainer::TuneOptions options,
                         TuneOptionsFromRequest(request, settings_.environment));
  uint64_t base = request.base_version().version();
  if (base == 0) {
    OTARO_ASSIGN_OR_RETURN(base, hooks_.current_version());
  } else {
    OTARO_RETURN_IF_ERROR(
        FieldError("base_version.version", store_->GetModelVersion(base).status()));
  }
  OTARO_ASSIGN_OR_RETURN(options.model_path, FloatSourceOf(base));
  options.output_dir = "/nonexistent-checked-later";
  if (options.data_path.empty()) options.data_path = settings_.jobs_dir;  // inline: written later
  // The trainer's own checks name its options ("learning rate", "bps.lambda"):
  // all of them hyperparameters.
  if (absl::Status valid = trainer::ValidateTuneOptions(options); !valid.ok()) {
    return FieldError("hyperparameters", absl::InvalidArgumentError(valid.message()));
  }

  JobRecord job;
  job.id = NewJobId();
  job.spec = request;
  job.state = otaro::v1::JOB_STATE_QUEUED;
  job.base_version = base;
  // Inline data goes to disk now, not into the store: the record stays small.
  const std::string dir = absl::StrCat(settings_.jobs_dir, "/", job.id);
  OTARO_RETURN_IF_ERROR(CreateDirectories(dir));
  if (request.dataset().has_inline_data()) {
    OTARO_RETURN_IF_ERROR(WriteFileAtomically(dir + "/data", request.dataset().inline_data()));
    job.spec.mutable_dataset()->clear_inline_data();
    job.spec.mutable_dataset()->set_path(absl::StrCat("(uploaded, ",
                                                      request.dataset().inline_data().size(),
                                                      " bytes)"));
  }
  OTARO_RETURN_IF_ERROR(store_->CreateJob(job));
  OTARO_RETURN_IF_ERROR(Emit(job.id, StateEvent(otaro::v1::JOB_STATE_QUEUED)));
  // The answer is the job as queued: read before the worker can pick it up
  // (it may be RUNNING by the time the reply is sent).
  OTARO_ASSIGN_OR_RETURN(job, store_->GetJob(job.id));
  OTARO_ASSIGN_OR_RETURN(otaro::v1::TuningJob queued, ToProto(job));
  {
    MutexLock lock(&mu_);
    queue_.push_back(job.id);
  }
  work_cv_.SignalAll();
  OTARO_LOG_INFO("tuning job {} queued (base version {})", job.id, base);
  return queued;
}

absl::StatusOr<otaro::v1::TuningJob> TuningJobManager::Get(const std::string& id) {
  absl::StatusOr<JobRecord> job = store_->GetJob(id);
  if (!job.ok()) return FieldError("id", job.status());
  return ToProto(*job);
}

absl::StatusOr<otaro::v1::ListTuningJobsResponse> TuningJobManager::List(
    uint32_t page_size, const std::string& page_token) {
  if (page_size == 0) page_size = 50;
  if (page_size > 1000) {
    return absl::InvalidArgumentError("page_size: at most 1000");
  }
  OTARO_ASSIGN_OR_RETURN(JobPage page, store_->ListJobs({}, static_cast<int>(page_size),
                                                        page_token));
  otaro::v1::ListTuningJobsResponse response;
  for (const JobRecord& job : page.jobs) {
    OTARO_ASSIGN_OR_RETURN(*response.add_jobs(), ToProto(job));
  }
  response.set_next_page_token(page.next_page_token);
  return response;
}

absl::StatusOr<otaro::v1::TuningJob> TuningJobManager::Cancel(const std::string& id) {
  absl::StatusOr<JobRecord> found = store_->GetJob(id);
  if (!found.ok()) return FieldError("id", found.status());
  JobRecord job = *std::move(found);
  bool was_running = false;
  {
    MutexLock lock(&mu_);
    if (running_ == id) {
      // The worker sees it at the next step boundary, checkpoints and marks
      // the job CANCELLED; wait for that so the answer shows the final state.
      cancel_running_.store(true);
      events_cv_.WaitFor(&mu_, absl::Seconds(60),
                         [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ != id; });
      was_running = true;
    } else if (job.state == otaro::v1::JOB_STATE_QUEUED) {
      queue_.erase(std::remove(queue_.begin(), queue_.end(), id), queue_.end());
    } else {
      return absl::FailedPreconditionError(absl::StrCat(
          "id: job ", id, " is ", otaro::v1::JobState_Name(job.state), ": nothing to cancel"));
    }
  }
  if (was_running) {
    OTARO_ASSIGN_OR_RETURN(job, store_->GetJob(id));
    return ToProto(job);
  }
  OTARO_RETURN_IF_ERROR(SetState(id, otaro::v1::JOB_STATE_CANCELLED));
  OTARO_ASSIGN_OR_RETURN(job, store_->GetJob(id));
  return ToProto(job);
}

absl::StatusOr<std::vector<TuningJobEvent>> TuningJobManager::WaitEvents(const std::string& id,
                                                                         uint64_t after,
                                                                         absl::Time deadline,
                                                                         bool* ended) {
  *ended = false;
  while (true) {
    // Read the state before the events: if it is final here, the events read
    // next include the final state change.
    absl::StatusOr<JobRecord> found = store_->GetJob(id);
    if (!found.ok()) return FieldError("id", found.status());
    const JobRecord& job = *found;
    OTARO_ASSIGN_OR_RETURN(std::vector<TuningJobEvent> events, store_->ListEvents(id, after, 500));
    const bool final_state = IsFinalJobState(job.state);
    if (!events.empty() || final_state) {
      *ended = final_state && events.size() < 500;
      return events;
    }
    MutexLock lock(&mu_);
    if (stopping_) return events;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return events;
    // The events live in the store: wake on a signal (or at least every 0.5 s)
    // and read them again.
    events_cv_.WaitOnceFor(&mu_, std::min(left, absl::Milliseconds(500)));
  }
}

void TuningJobManager::WorkerLoop() {
  while (true) {
    std::string id;
    {
      MutexLock lock(&mu_);
      work_cv_.Wait(&mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      });
      if (stopping_) return;
      id = queue_.front();
      queue_.pop_front();
      running_ = id;
      cancel_running_.store(false);
    }
    RunJob(id);
    // The job's masters, gradients and optimizer state are freed by now; hand
    // their pages back, or the allocator keeps them (common/process_memory.h).
    // At background priority: the trim holds each arena's lock as it walks
    // it, and the streams' threads allocate in those arenas too.
    const int64_t released = RunAtBackgroundPriority([] { return ReleaseFreeHeapMemory(); });
    OTARO_LOG_INFO("tuning job {} ended; {:.0f} MiB of its memory returned to the system", id,
                   released / 1048576.0);
    {
      MutexLock lock(&mu_);
      running_.clear();
    }
    events_cv_.SignalAll();
    if (metrics_ != nullptr) metrics_->Idle();
  }
}

void TuningJobManager::RunJob(const std::string& id) {
  absl::Status status;
  // An exception (std::bad_alloc from a model too large for the pod, a
  // library's throw) in the runner, its callbacks, the hand-over or the
  // publish fails this job, never the worker thread and with it the server.
  // (Exceptions on the trainer's own pool threads are not seen here.)
  try {
    status = RunJobOrError(id);
  } catch (const std::exception& e) {
    status = absl::InternalError(absl::StrCat("stopped by an exception: ", e.what()));
  } catch (...) {
    status = absl::InternalError("stopped by an unknown exception");
  }
  if (status.ok()) return;
  bool shutting_down;
  {
    MutexLock lock(&mu_);
    shutting_down = stopping_;
  }
  // A server stop asked the job to end; whatever went wrong on the way, it
  // stays resumable from its last checkpoint like any interrupted job.
  const JobState state =
      shutting_down ? otaro::v1::JOB_STATE_INTERRUPTED : otaro::v1::JOB_STATE_FAILED;
  OTARO_LOG_WARN("tuning job {} {}: {}", id, shutting_down ? "interrupted" : "failed",
                 status.message());
  absl::Status recorded = SetState(id, state, std::string(status.message()));
  if (!recorded.ok()) {
    OTARO_LOG_ERROR("tuning job {}: cannot record the failure: {}", id, recorded.message());
  }
}

absl::Status TuningJobManager::RunJobOrError(const std::string& id) {
  OTARO_ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(id));
  OTARO_RETURN_IF_ERROR(SetState(id, otaro::v1::JOB_STATE_RUNNING));

  // The spec was validated at creation; resolve it again (the data folder may
  // have changed since, which is then this job's error).
  otaro::v1::CreateTuningJobRequest spec = job.spec;
  const std::string dir = absl::StrCat(settings_.jobs_dir, "/", id);
  const bool uploaded = absl::StartsWith(spec.dataset().path(), "(uploaded");
  if (uploaded) spec.mutable_dataset()->set_inline_data("x");  // placeholder for validation
  OTARO_ASSIGN_OR_RETURN(trainer::TuneOptions options,
                         TuneOptionsFromRequest(spec, settings_.environment));
  if (uploaded) options.data_path = dir + "/data";
  OTARO_ASSIGN_OR_RETURN(options.model_path, FloatSourceOf(job.base_version));
  options.output_dir = dir + "/run";
  // A job that checkpointed before it stopped (interrupted, failed, cancelled
  // and resumed) continues from there; the trainer's LATEST is the truth.
  struct stat st;
  const bool resume = ::stat((options.output_dir + "/checkpoints/LATEST").c_str(), &st) == 0;
  options.resume = resume;
  if (resume) OTARO_RETURN_IF_ERROR(Emit(id, MessageEvent("resuming from the last checkpoint")));

  const bool auto_publish = job.spec.auto_publish();
  std::optional<trainer::Evaluation> base_evaluation;
  absl::Time last_step_event = absl::InfinitePast();
  absl::Status callback_error;  // store failures inside callbacks end the job
  trainer::TuneCallbacks callbacks;
  callbacks.on_status = [&](const std::string& message) {
    OTARO_LOG_INFO("tuning job {}: {}", id, message);
  };
  callbacks.on_dataset = [&](const trainer::data::DataReport& report) {
    if (report.malformed > 0) {
      absl::Status s = Emit(id, MessageEvent(report.ToString()));
      if (!s.ok()) callback_error = s;
    }
  };
  callbacks.on_step = [&](const trainer::StepMetrics& m) {
    if (metrics_ != nullptr) {
      metrics_->Step(m.step, m.total_steps, m.bits, m.loss, m.tokens_per_second);
    }
    const absl::Time now = absl::Now();
    // Steps are thinned to a few events a second; a flush is always reported.
    if (now - last_step_event < kStepEventInterval && m.step != m.total_steps && !m.laa_flush) {
      return;
    }
    last_step_event = now;
    TuningJobEvent event;
    otaro::v1::StepMetrics* step = event.mutable_step();
    step->set_step(m.step);
    step->set_mantissa_bits(m.bits);
    step->set_loss(m.loss);
    step->set_learning_rate(m.learning_rate);
    step->set_tokens_per_second(m.tokens_per_second);
    step->set_accumulated(m.accumulated);
    step->set_laa_flush(m.laa_flush);
    step->set_laa_drain(m.laa_drain);
    step->set_flush_loss_before(m.flush_loss_before);
    step->set_flush_loss_after(m.flush_loss_after);
    absl::Status s = Emit(id, std::move(event));
    if (s.ok()) s = store_->UpdateJobProgress(id, m.step, m.total_steps, m.tokens);
    if (!s.ok()) callback_error = s;
  };
  callbacks.on_evaluation = [&](const trainer::Evaluation& e) {
    if (e.step == 0) base_evaluation = e;
    if (metrics_ != nullptr) {
      for (const trainer::EvalPoint& p : e.points) metrics_->Evaluation(p.bits, p.loss);
    }
    TuningJobEvent event;
    // Before tuning (step 0) the weights are the base version itself.
    *event.mutable_evaluation() =
        ToEvaluationTable(e, e.step == 0 ? job.base_version : 0, job.base_version);
    absl::Status s = Emit(id, std::move(event));
    if (!s.ok()) callback_error = s;
  };
  callbacks.on_checkpoint = [&](const trainer::CheckpointRecord& c) {
    CheckpointRecord record;
    record.step = c.step;
    record.path = c.path;
    record.created_unix_seconds = absl::ToUnixSeconds(absl::Now());
    record.train_loss = c.train_loss;
    if (c.evaluation) {
      record.evaluation = ToEvaluationTable(*c.evaluation, 0, job.base_version);
    }
    absl::Status s = store_->AddCheckpoint(id, record);
    if (s.ok()) {
      TuningJobEvent event;
      otaro::v1::Checkpoint* checkpoint = event.mutable_checkpoint();
      checkpoint->set_step(record.step);
      checkpoint->set_created_unix_seconds(record.created_unix_seconds);
      checkpoint->set_train_loss(record.train_loss);
      *checkpoint->mutable_evaluation() = record.evaluation;
      s = Emit(id, std::move(event));
    }
    if (!s.ok()) callback_error = s;
  };
  options.evaluate_at_start = auto_publish && !resume;

  absl::StatusOr<trainer::TuneResult> result = runner_(options, callbacks, &cancel_running_);
  OTARO_RETURN_IF_ERROR(callback_error);
  OTARO_RETURN_IF_ERROR(result.status());
  if (result->cancelled) {
    bool shutting_down;
    {
      MutexLock lock(&mu_);
      shutting_down = stopping_;
    }
    // A server stop interrupts (resumable); a user's cancel is final.
    return SetState(id, shutting_down ? otaro::v1::JOB_STATE_INTERRUPTED
                                      : otaro::v1::JOB_STATE_CANCELLED);
  }

  // Hand the model over to the version store.
  ModelProvenance provenance;
  provenance.base_version = job.base_version;
  provenance.job_id = id;
  provenance.dataset = job.spec.dataset().path();
  provenance.strategy = StrategyProto(options.strategy);
  provenance.reconstruction = options.reconstruction == sefp::Reconstruction::kTruncate
                                  ? otaro::v1::RECONSTRUCTION_TRUNCATE
                                  : otaro::v1::RECONSTRUCTION_MIDPOINT;
  if (result->final_evaluation) {
    // model_version 0: the store names the version this registers (store.cc).
    provenance.evaluation = ToEvaluationTable(*result->final_evaluation, 0, job.base_version);
  }
  provenance.notes_json = nlohmann::json{{"master_path", result->master_path},
                                         {"steps", result->steps},
                                         {"tokens", result->tokens},
                                         {"strategy", options.strategy},
                                         {"bits", options.bits}}
                              .dump();
  OTARO_ASSIGN_OR_RETURN(uint64_t version,
                         store_->RegisterModelVersion(result->sefp_path, provenance,
                                                      RegisterMode::kMove));
  OTARO_RETURN_IF_ERROR(store_->SetJobResult(id, version));
  OTARO_RETURN_IF_ERROR(Emit(id, MessageEvent(absl::StrCat("produced model version ", version))));
  if (auto_publish) {
    if (base_evaluation && result->final_evaluation &&
        BeatsEverywhere(*base_evaluation, *result->final_evaluation, options.bits)) {
      absl::Status published = hooks_.publish(version);
      OTARO_RETURN_IF_ERROR(Emit(
          id, MessageEvent(published.ok()
                               ? absl::StrCat("auto-published version ", version)
                               : absl::StrCat("auto-publish of version ", version,
                                              " failed: ", published.message()))));
    } else {
      OTARO_RETURN_IF_ERROR(Emit(id, MessageEvent(absl::StrCat(
                                         "not auto-published: version ", version,
                                         " does not beat its base at every bit-width"))));
    }
  }
  return SetState(id, otaro::v1::JOB_STATE_SUCCEEDED);
}

}  // namespace otaro::server
