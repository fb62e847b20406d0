// The server's tuning jobs: validation, a FIFO queue, one background worker
// that runs trainer::RunTuning (the same code as `otaro tune`), events, cancel,
// and the hand-over of a finished model to the model-version store.
//
// Everything a job is lives in the Store (SQLite), so jobs survive a restart as
// records: at start-up a job that was RUNNING comes back INTERRUPTED (resume it
// with CreateTuningJobRequest.resume_job_id: it continues from its last
// checkpoint), and QUEUED jobs are queued again in creation order.
//
// Files of job J live in <jobs_dir>/J/: the uploaded data (inline_data), the
// trainer's checkpoints, steps.jsonl and the exported model.sefp (moved into
// the store as the new version when the job succeeds).
#ifndef OTARO_SERVER_TUNING_JOB_MANAGER_H_
#define OTARO_SERVER_TUNING_JOB_MANAGER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "otaro/v1/tuning.pb.h"
#include "server/store/store.h"
#include "server/tuning/job_spec.h"
#include "server/tuning/tuning_metrics.h"
#include "trainer/tuner.h"

namespace otaro::server {

struct TuningSettings {
  std::string jobs_dir;         // per-job working folders
  JobEnvironment environment;   // data folder, upload cap, threads, memory
  int max_queued_jobs = 16;     // CreateTuningJob is RESOURCE_EXHAUSTED beyond
  // Float source of version 1 (the configured model, when it is a SEFP
  // checkpoint, names the original here). Later versions carry their master
  // checkpoint in their provenance.
  std::string base_model_path;
};

// What the manager needs from model serving, kept as functions so the two
// stay independent (and testable apart).
struct ModelVersionHooks {
  // The version being served now.
  std::function<absl::StatusOr<uint64_t>()> current_version;
  // Publishes a version (hot swap); used for auto_publish.
  std::function<absl::Status(uint64_t version)> publish;
};

// Runs one tuning run to its end, with trainer::RunTuning's contract
// (trainer/tuner.h): callbacks as it goes, `cancel` polled at step
// boundaries, a cancelled result after a checkpoint. The server passes
// trainer::RunTuning; tests pass a fake to drive queueing, cancel, resume and
// failures without training a model. An error or exception fails the job
// (INTERRUPTED when the manager is shutting down), never the worker.
using TuningRunner = std::function<absl::StatusOr<trainer::TuneResult>(
    const trainer::TuneOptions& options, const trainer::TuneCallbacks& callbacks,
    const std::atomic<bool>* cancel)>;

class TuningJobManager {
 public:
  TuningJobManager(Store* store, TuningSettings settings, ModelVersionHooks hooks,
                   TuningMetrics* metrics, TuningRunner runner = trainer::RunTuning);
  ~TuningJobManager();

  // Marks jobs that were RUNNING as INTERRUPTED, queues QUEUED ones, starts the
  // worker.
  absl::Status Start();
  // Stops the worker: a running job stops at its next step with a checkpoint
  // and is left INTERRUPTED (resumable). Idempotent.
  void Shutdown();

  absl::StatusOr<otaro::v1::TuningJob> Create(const otaro::v1::CreateTuningJobRequest& request);
  absl::StatusOr<otaro::v1::TuningJob> Get(const std::string& id);
  absl::StatusOr<otaro::v1::ListTuningJobsResponse> List(uint32_t page_size,
                                                          const std::string& page_token);
  absl::StatusOr<otaro::v1::TuningJob> Cancel(const std::string& id);

  // Events of job `id` with sequence > after. Waits until there is at least
  // one, the job has ended, or `deadline` passes. *ended tells whether the job
  // is in a final state and every event was returned.
  absl::StatusOr<std::vector<otaro::v1::TuningJobEvent>> WaitEvents(const std::string& id,
                                                                    uint64_t after,
                                                                    absl::Time deadline,
                                                                    bool* ended);

 private:
  absl::StatusOr<otaro::v1::TuningJob> ToProto(const JobRecord& record);
  absl::Status Emit(const std::string& id, otaro::v1::TuningJobEvent event);
  absl::Status SetState(const std::string& id, otaro::v1::JobState state,
                        const std::string& error = "");
  // The float source to tune version `version` from.
  absl::StatusOr<std::string> FloatSourceOf(uint64_t version);
  void WorkerLoop();
  void RunJob(const std::string& id);
  absl::Status RunJobOrError(const std::string& id);

  Store* const store_;
  const TuningSettings settings_;
  const ModelVersionHooks hooks_;
  TuningMetrics* const metrics_;
  const TuningRunner runner_;

  Mutex mu_;           // common/mutex.h: visible to TSan, checked by clang
  CondVar work_cv_;    // queue changes, shutdown
  CondVar events_cv_;  // new events, job ends
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  std::string running_ ABSL_GUARDED_BY(mu_);  // id of the job the worker runs, "" = none
  std::atomic<bool> cancel_running_{false};
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

bool IsFinalJobState(otaro::v1::JobState state);

}  // namespace otaro::server

#endif  // OTARO_SERVER_TUNING_JOB_MANAGER_H_
