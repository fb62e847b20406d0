// The server's persistent state: one SQLite database at <store.dir>/otaro.db
// (WAL, synchronous=FULL, foreign keys) plus the model versions' files:
//
//   <store.dir>/otaro.db                     versions, serving history, tuning jobs
//   <store.dir>/models/<N>/model.sefp        version N's SEFP checkpoint
//   <store.dir>/models/<N>/provenance.json   what made it (ModelVersion as JSON)
//
// Version 1 is the model the server was first started with (model.path); it is
// recorded in place, not copied, since it may be a Hugging Face folder or GGUF.
// Every later version is a SEFP checkpoint copied (or moved) in through
// RegisterModelVersion, which is what the tuning worker calls.
//
// The schema carries a version (table schema_version); Open migrates older
// databases forward and refuses newer ones. All methods are thread-safe (one
// connection behind a mutex) and other processes may open the same store
// (SQLite file locks; a busy database is waited for).
#ifndef OTARO_SERVER_STORE_STORE_H_
#define OTARO_SERVER_STORE_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "otaro/v1/models.pb.h"
#include "otaro/v1/tuning.pb.h"
#include "server/store/sqlite.h"

namespace otaro::server {

// What produced a model version (all optional: version 1 has none).
struct ModelProvenance {
  uint64_t base_version = 0;  // 0 = none
  std::string job_id;
  std::string dataset;
  otaro::v1::Strategy strategy = otaro::v1::STRATEGY_UNSPECIFIED;
  otaro::v1::Reconstruction reconstruction = otaro::v1::RECONSTRUCTION_UNSPECIFIED;
  otaro::v1::EvaluationTable evaluation;
  // Free-form JSON object (hyperparameters, bit set, steps...); "" = {}.
  std::string notes_json;
};

struct ModelVersionRecord {
  uint64_t version = 0;
  // The checkpoint (or, for version 1, whatever model.path named).
  std::string path;
  int64_t created_unix_seconds = 0;
  ModelProvenance provenance;
  std::string state;  // "ready"
};

// The API form of a version.
otaro::v1::ModelVersion ToModelVersionProto(const ModelVersionRecord& record, bool serving);

// One entry of the serving history: `version` served from `started`; when a
// rollback left it, `rolled_back` is set and it no longer counts.
struct ServingEntry {
  int64_t sequence = 0;
  uint64_t version = 0;
  int64_t started_unix_seconds = 0;
  std::string action;  // "initial" | "publish"
  std::optional<int64_t> rolled_back_unix_seconds;
};

enum class RegisterMode {
  kCopy,  // the source file stays where it is
  kMove,  // the source file is renamed in (copied and removed across file systems)
};

struct JobRecord {
  std::string id;
  otaro::v1::CreateTuningJobRequest spec;
  otaro::v1::JobState state = otaro::v1::JOB_STATE_QUEUED;
  int64_t created_unix_seconds = 0;
  int64_t started_unix_seconds = 0;   // 0 = not yet
  int64_t finished_unix_seconds = 0;  // 0 = not yet
  uint64_t step = 0;
  uint64_t total_steps = 0;
  uint64_t trained_tokens = 0;
  std::string error;
  // The newest checkpoint of the job, to resume from ("" = none).
  std::string resume_checkpoint_path;
  uint64_t base_version = 0;
  uint64_t result_version = 0;  // 0 = none
};

struct CheckpointRecord {
  uint64_t step = 0;
  std::string path;
  int64_t created_unix_seconds = 0;
  double train_loss = 0;
  otaro::v1::EvaluationTable evaluation;
};

struct JobFilter {
  // Empty = every state.
  std::vector<otaro::v1::JobState> states;
};

struct JobPage {
  std::vector<JobRecord> jobs;
  std::string next_page_token;  // "" = no more
};

class Store {
 public:
  // The schema this build reads and writes.
  static constexpr int kSchemaVersion = 1;

  // Creates `dir` and the database if needed, migrates an older schema, and
  // refuses a newer one (FAILED_PRECONDITION naming both versions).
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // <dir>/models/<version>/model.sefp
  std::string ModelCheckpointPath(uint64_t version) const;

  // --- Model versions ------------------------------------------------------

  // Copies (or moves) the SEFP checkpoint at `sefp_path` into
  // <dir>/models/<N>/model.sefp, writes provenance.json beside it and records
  // version N = the highest so far + 1, which it returns. The file is checked
  // to be a readable SEFP checkpoint first. Atomic: the version appears with
  // its files complete, or not at all.
  absl::StatusOr<uint64_t> RegisterModelVersion(const std::string& sefp_path,
                                                const ModelProvenance& provenance,
                                                RegisterMode mode = RegisterMode::kCopy);

  // On a store without versions: records `model_path` as version 1, served.
  // Either way returns the version to serve (the current one).
  absl::StatusOr<ModelVersionRecord> InitializeServing(const std::string& model_path);

  absl::StatusOr<ModelVersionRecord> GetModelVersion(uint64_t version);
  // Ascending by version.
  absl::StatusOr<std::vector<ModelVersionRecord>> ListModelVersions();

  // --- Serving -------------------------------------------------------------

  // The version served now; nullopt before InitializeServing.
  absl::StatusOr<std::optional<uint64_t>> CurrentVersion();
  // The version a rollback would serve; nullopt when there is none.
  absl::StatusOr<std::optional<uint64_t>> RollbackTarget();
  // Records that `version` is served from now on (a no-op if it already is).
  // NOT_FOUND for an unknown version.
  absl::Status RecordPublish(uint64_t version);
  // Leaves the current entry of the history, so the one before it is current
  // again, and returns that version. `expected_target` guards against the
  // history having changed since RollbackTarget (ABORTED if it has).
  absl::StatusOr<uint64_t> RecordRollback(uint64_t expected_target);
  // Oldest first.
  absl::StatusOr<std::vector<ServingEntry>> ServingHistory();

  // --- Tuning jobs ---------------------------------------------------------

  // Inserts a job (id must be new: ALREADY_EXISTS otherwise). A zero
  // created_unix_seconds is set to now.
  absl::Status CreateJob(const JobRecord& job);
  absl::StatusOr<JobRecord> GetJob(const std::string& id);
  // Newest first. `page_token` is "" or a next_page_token from an earlier page.
  absl::StatusOr<JobPage> ListJobs(const JobFilter& filter, int page_size,
                                   const std::string& page_token);
  // Sets the state (and error, for FAILED); stamps started on the first
  // RUNNING and finished on SUCCEEDED/FAILED/CANCELLED/INTERRUPTED.
  absl::Status UpdateJobState(const std::string& id, otaro::v1::JobState state,
                              const std::string& error = "");
  // How many jobs are in each state (states with none are absent).
  absl::StatusOr<std::map<otaro::v1::JobState, int64_t>> CountJobsByState();
  absl::Status UpdateJobProgress(const std::string& id, uint64_t step, uint64_t total_steps,
                                 uint64_t trained_tokens);
  absl::Status SetJobResult(const std::string& id, uint64_t result_version);
  // Every RUNNING or VALIDATING job becomes INTERRUPTED, with a state_change
  // event; run once at start-up, before the worker starts. Returns their ids.
  absl::StatusOr<std::vector<std::string>> MarkRunningJobsInterrupted();

  // Appends an event with the job's next sequence number (from 1) and, if
  // unset, the current time; returns the event as stored.
  absl::StatusOr<otaro::v1::TuningJobEvent> AppendEvent(const std::string& job_id,
                                                        otaro::v1::TuningJobEvent event);
  // Events with sequence > after_sequence, ascending; at most `limit` (0 = all).
  absl::StatusOr<std::vector<otaro::v1::TuningJobEvent>> ListEvents(const std::string& job_id,
                                                                    uint64_t after_sequence,
                                                                    int limit = 0);

  // Records a checkpoint and makes it the job's resume point.
  absl::Status AddCheckpoint(const std::string& job_id, const CheckpointRecord& checkpoint);
  // Ascending by step.
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(const std::string& job_id);

 private:
  Store(std::string dir, std::unique_ptr<sqlite::Database> db)
      : dir_(std::move(dir)), db_(std::move(db)) {}
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<ModelVersionRecord> GetModelVersionLocked(uint64_t version)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::optional<uint64_t>> CurrentVersionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::optional<uint64_t>> RollbackTargetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InsertModelVersionLocked(const ModelVersionRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<otaro::v1::TuningJobEvent> AppendEventLocked(const std::string& job_id,
                                                              otaro::v1::TuningJobEvent event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckJobChanged(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  Mutex mu_;
  std::unique_ptr<sqlite::Database> db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_STORE_STORE_H_
