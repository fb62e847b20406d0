#include "server/store/store.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "sefp/checkpoint.h"

namespace otaro::server {
namespace {

namespace fs = std::filesystem;
using sqlite::Blob;
using sqlite::Transaction;

constexpr char kDatabaseFile[] = "otaro.db";
constexpr char kModelsDir[] = "models";
constexpr char kCheckpointFile[] = "model.sefp";
constexpr char kProvenanceFile[] = "provenance.json";
constexpr char kStagingPrefix[] = ".staging-";

// Migration i takes the schema from version i to i + 1. Append only: a
// released migration never changes (databases out there already ran it).
const std::vector<std::string>& Migrations() {
  static const auto* migrations = new std::vector<std::string>{
      // 0 -> 1
      R"sql(
CREATE TABLE model_versions (
  version INTEGER PRIMARY KEY,
  path TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  base_version INTEGER NOT NULL DEFAULT 0,
  job_id TEXT NOT NULL DEFAULT '',
  dataset TEXT NOT NULL DEFAULT '',
  strategy TEXT NOT NULL DEFAULT '',
  reconstruction TEXT NOT NULL DEFAULT '',
  eval_json TEXT NOT NULL DEFAULT '{}',
  provenance_json TEXT NOT NULL DEFAULT '{}',
  state TEXT NOT NULL DEFAULT 'ready'
);
CREATE TABLE serving (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  version INTEGER NOT NULL REFERENCES model_versions(version),
  started_at INTEGER NOT NULL,
  action TEXT NOT NULL,
  rolled_back_at INTEGER
);
CREATE TABLE tuning_jobs (
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL DEFAULT '',
  spec BLOB NOT NULL,
  state INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  step INTEGER NOT NULL DEFAULT 0,
  total_steps INTEGER NOT NULL DEFAULT 0,
  trained_tokens INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  resume_checkpoint TEXT NOT NULL DEFAULT '',
  base_version INTEGER NOT NULL DEFAULT 0,
  result_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tuning_jobs_by_state ON tuning_jobs(state);
CREATE TABLE tuning_job_events (
  job_id TEXT NOT NULL REFERENCES tuning_jobs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  event BLOB NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE tuning_job_checkpoints (
  job_id TEXT NOT NULL REFERENCES tuning_jobs(id) ON DELETE CASCADE,
  step INTEGER NOT NULL,
  path TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  train_loss REAL NOT NULL DEFAULT 0,
  metrics_json TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (job_id, step)
) WITHOUT ROWID;
)sql",
  };
  return *migrations;
}

int64_t NowSeconds() { return absl::ToUnixSeconds(absl::Now()); }

bool IsTerminal(otaro::v1::JobState state) {
  return state == otaro::v1::JOB_STATE_SUCCEEDED || state == otaro::v1::JOB_STATE_FAILED ||
         state == otaro::v1::JOB_STATE_CANCELLED || state == otaro::v1::JOB_STATE_INTERRUPTED;
}

std::string ToJson(const google::protobuf::Message& message, bool pretty = false) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = pretty;
  std::string json;
  // Only fails on messages with unresolvable Any fields, which these have none of.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

absl::Status FromJson(const std::string& json, google::protobuf::Message* message,
                      absl::string_view what) {
  auto status = google::protobuf::util::JsonStringToMessage(json, message);
  if (!status.ok()) {
    return absl::DataLossError(
        absl::StrCat("the store holds an unreadable ", what, ": ", std::string(status.message())));
  }
  return absl::OkStatus();
}

// fsync of a file or directory, so a rename or copy survives power loss.
absl::Status SyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::InternalError(absl::StrCat("open ", path.string(), ": ", std::strerror(errno)));
  int rc = ::fsync(fd);
  int error = errno;
  ::close(fd);
  if (rc != 0)
    return absl::InternalError(absl::StrCat("fsync ", path.string(), ": ", std::strerror(error)));
  return absl::OkStatus();
}

absl::Status FsError(const std::error_code& error, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", error.message()));
}

// Copies or moves `source` to `target` (same directory tree), durably.
absl::Status BringFileIn(const fs::path& source, const fs::path& target, RegisterMode mode) {
  std::error_code error;
  if (mode == RegisterMode::kMove) {
    fs::rename(source, target, error);
    if (!error) return SyncPath(target);
    if (error != std::errc::cross_device_link) {
      return FsError(error, absl::StrCat("move ", source.string(), " to ", target.string()));
    }
    error.clear();  // Another file system: copy, then remove the source.
  }
  fs::copy_file(source, target, fs::copy_options::overwrite_existing, error);
  if (error) return FsError(error, absl::StrCat("copy ", source.string(), " to ", target.string()));
  OTARO_RETURN_IF_ERROR(SyncPath(target));
  if (mode == RegisterMode::kMove) {
    fs::remove(source, error);
    if (error)
      OTARO_LOG_WARN("registered a copy of {} but cannot remove it: {}", source.string(),
                     error.message());
  }
  return absl::OkStatus();
}

// Staging directories of registrations whose process is gone (a crash before
// the rename) are garbage.
void RemoveDeadStagingDirs(const fs::path& models) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(models, error)) {
    std::string name = entry.path().filename().string();
    if (name.rfind(kStagingPrefix, 0) != 0) continue;
    std::string rest = name.substr(std::strlen(kStagingPrefix));
    int pid = 0;
    if (!absl::SimpleAtoi(rest.substr(0, rest.find('-')), &pid) || pid <= 0) continue;
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
    std::error_code remove_error;
    fs::remove_all(entry.path(), remove_error);
    OTARO_LOG_INFO("removed {} left by an interrupted model registration", entry.path().string());
  }
}

// Columns of model_versions in the order ReadVersion expects.
constexpr char kVersionColumns[] =
    "version, path, created_at, base_version, job_id, dataset, strategy, reconstruction, "
    "eval_json, provenance_json, state";

absl::StatusOr<ModelVersionRecord> ReadVersion(const sqlite::Statement& row) {
  ModelVersionRecord record;
  record.version = static_cast<uint64_t>(row.Int(0));
  record.path = row.Text(1);
  record.created_unix_seconds = row.Int(2);
  ModelProvenance& p = record.provenance;
  p.base_version = static_cast<uint64_t>(row.Int(3));
  p.job_id = row.Text(4);
  p.dataset = row.Text(5);
  std::string strategy = row.Text(6);
  if (!strategy.empty() && !otaro::v1::Strategy_Parse(strategy, &p.strategy)) {
    return absl::DataLossError(absl::StrCat("model version ", record.version,
                                            " has an unknown strategy '", strategy, "'"));
  }
  std::string reconstruction = row.Text(7);
  if (!reconstruction.empty() &&
      !otaro::v1::Reconstruction_Parse(reconstruction, &p.reconstruction)) {
    return absl::DataLossError(absl::StrCat(
        "model version ", record.version, " has an unknown reconstruction '", reconstruction, "'"));
  }
  OTARO_RETURN_IF_ERROR(FromJson(row.Text(8), &p.evaluation,
                                 absl::StrCat("evaluation of model version ", record.version)));
  p.notes_json = row.Text(9);
  record.state = row.Text(10);
  return record;
}

constexpr char kJobColumns[] =
    "id, spec, state, created_at, started_at, finished_at, step, total_steps, trained_tokens, "
    "error, resume_checkpoint, base_version, result_version, rowid";

absl::StatusOr<JobRecord> ReadJob(const sqlite::Statement& row) {
  JobRecord job;
  job.id = row.Text(0);
  if (!job.spec.ParseFromString(row.Text(1))) {
    return absl::DataLossError(absl::StrCat("tuning job ", job.id, " has an unreadable spec"));
  }
  job.state = static_cast<otaro::v1::JobState>(row.Int(2));
  job.created_unix_seconds = row.Int(3);
  job.started_unix_seconds = row.IsNull(4) ? 0 : row.Int(4);
  job.finished_unix_seconds = row.IsNull(5) ? 0 : row.Int(5);
  job.step = static_cast<uint64_t>(row.Int(6));
  job.total_steps = static_cast<uint64_t>(row.Int(7));
  job.trained_tokens = static_cast<uint64_t>(row.Int(8));
  job.error = row.Text(9);
  job.resume_checkpoint_path = row.Text(10);
  job.base_version = static_cast<uint64_t>(row.Int(11));
  job.result_version = static_cast<uint64_t>(row.Int(12));
  return job;
}

absl::Status JobNotFound(const std::string& id) {
  return absl::NotFoundError(absl::StrCat("no tuning job with id '", id, "'"));
}

}  // namespace

otaro::v1::ModelVersion ToModelVersionProto(const ModelVersionRecord& record, bool serving) {
  otaro::v1::ModelVersion out;
  out.set_version(record.version);
  out.set_checkpoint_path(record.path);
  const ModelProvenance& p = record.provenance;
  out.set_base_version(p.base_version);
  out.set_tuning_job_id(p.job_id);
  out.set_dataset(p.dataset);
  out.set_strategy(p.strategy);
  out.set_reconstruction(p.reconstruction);
  *out.mutable_evaluation() = p.evaluation;
  // The evaluation a tuning job recorded scores this version (the job could not
  // know its number yet: tuning.proto, EvaluationTable.model_version).
  if (p.evaluation.rows_size() > 0 && p.evaluation.model_version() == 0) {
    out.mutable_evaluation()->set_model_version(record.version);
  }
  out.set_created_unix_seconds(record.created_unix_seconds);
  out.set_serving(serving);
  return out;
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("store.dir is empty");
  std::error_code error;
  fs::create_directories(fs::path(dir) / kModelsDir, error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the store directory ", dir, " (store.dir): ", error.message()));
  }
  OTARO_ASSIGN_OR_RETURN(auto db, sqlite::Database::Open((fs::path(dir) / kDatabaseFile).string()));
  std::unique_ptr<Store> store(new Store(dir, std::move(db)));
  {
    MutexLock lock(&store->mu_);
    OTARO_RETURN_IF_ERROR(store->Migrate());
  }
  RemoveDeadStagingDirs(fs::path(dir) / kModelsDir);
  return store;
}

absl::Status Store::Migrate() {
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  OTARO_RETURN_IF_ERROR(
      db_->Exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
  OTARO_ASSIGN_OR_RETURN(auto query, db_->Prepare("SELECT version FROM schema_version"));
  OTARO_ASSIGN_OR_RETURN(bool has_row, query.Step());
  int64_t version = has_row ? query.Int(0) : 0;
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("the store ", db_->path(), " has schema version ", version,
                     " but this otaro_server reads "
                     "version ",
                     kSchemaVersion,
                     ": it was written by a newer otaro_server; run that one, or "
                     "point store.dir at another directory"));
  }
  if (version == kSchemaVersion) return transaction.Commit();
  for (int64_t v = version; v < kSchemaVersion; ++v) {
    absl::Status status = db_->Exec(Migrations()[static_cast<size_t>(v)]);
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat("migrating the store from schema version ", v,
                                                      " to ", v + 1, ": ", status.message()));
    }
  }
  OTARO_RETURN_IF_ERROR(db_->Exec("DELETE FROM schema_version"));
  OTARO_RETURN_IF_ERROR(db_->Run("INSERT INTO schema_version (version) VALUES (?)",
                                 static_cast<int64_t>(kSchemaVersion)));
  OTARO_RETURN_IF_ERROR(transaction.Commit());
  if (version != 0) {
    OTARO_LOG_INFO("migrated the store {} from schema version {} to {}", db_->path(), version,
                   kSchemaVersion);
  }
  return absl::OkStatus();
}

std::string Store::ModelCheckpointPath(uint64_t version) const {
  return (fs::path(dir_) / kModelsDir / absl::StrCat(version) / kCheckpointFile).string();
}

// --- Model versions ------------------------------------------------------------

absl::Status Store::InsertModelVersionLocked(const ModelVersionRecord& r) {
  const ModelProvenance& p = r.provenance;
  return db_->Run(
      absl::StrCat("INSERT INTO model_versions (", kVersionColumns,
                   ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      r.version, r.path, r.created_unix_seconds, p.base_version, p.job_id, p.dataset,
      p.strategy == otaro::v1::STRATEGY_UNSPECIFIED ? "" : otaro::v1::Strategy_Name(p.strategy),
      p.reconstruction == otaro::v1::RECONSTRUCTION_UNSPECIFIED
          ? ""
          : otaro::v1::Reconstruction_Name(p.reconstruction),
      ToJson(p.evaluation), p.notes_json.empty() ? "{}" : p.notes_json, r.state);
}

absl::StatusOr<uint64_t> Store::RegisterModelVersion(const std::string& sefp_path,
                                                     const ModelProvenance& provenance,
                                                     RegisterMode mode) {
  // Refuse what could never be served before copying anything.
  if (auto reader = sefp::CheckpointReader::Open(sefp_path); !reader.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot register ", sefp_path, " as a model version: ", reader.status().message()));
  }
  if (!provenance.notes_json.empty() && provenance.notes_json.front() != '{') {
    return absl::InvalidArgumentError("model provenance notes must be a JSON object");
  }
  // The slow part (copying a checkpoint) happens in a private staging folder
  // without any lock; only numbering and the rename are serialised.
  static std::atomic<uint64_t> counter{0};
  const fs::path models = fs::path(dir_) / kModelsDir;
  const fs::path staging = models / absl::StrCat(kStagingPrefix, ::getpid(), "-",
                                                 counter.fetch_add(1), "-", std::random_device()());
  std::error_code error;
  fs::create_directories(staging, error);
  if (error) return FsError(error, absl::StrCat("create ", staging.string()));
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ignored;
      if (!path.empty()) fs::remove_all(path, ignored);
    }
  } cleanup{staging};
  OTARO_RETURN_IF_ERROR(BringFileIn(sefp_path, staging / kCheckpointFile, mode));

  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  OTARO_ASSIGN_OR_RETURN(auto max,
                         db_->Prepare("SELECT COALESCE(MAX(version), 0) FROM model_versions"));
  OTARO_ASSIGN_OR_RETURN(bool row, max.Step());
  (void)row;  // an aggregate always answers one row
  ModelVersionRecord record;
  record.version = static_cast<uint64_t>(max.Int(0)) + 1;
  record.created_unix_seconds = NowSeconds();
  record.provenance = provenance;
  record.state = "ready";
  const fs::path final_dir = models / absl::StrCat(record.version);
  record.path = (final_dir / kCheckpointFile).string();
  OTARO_RETURN_IF_ERROR(WriteFileAtomically((staging / kProvenanceFile).string(),
                                            ToJson(ToModelVersionProto(record, false), true)));
  OTARO_RETURN_IF_ERROR(SyncPath(staging));
  // A folder with this number but no row is what a crash between the rename
  // and the commit leaves; the write lock we hold says nobody else owns it.
  fs::remove_all(final_dir, error);
  if (error) return FsError(error, absl::StrCat("remove the stale ", final_dir.string()));
  fs::rename(staging, final_dir, error);
  if (error)
    return FsError(error, absl::StrCat("rename ", staging.string(), " to ", final_dir.string()));
  cleanup.path = final_dir;  // removed again unless the commit succeeds
  OTARO_RETURN_IF_ERROR(SyncPath(models));
  OTARO_RETURN_IF_ERROR(InsertModelVersionLocked(record));
  OTARO_RETURN_IF_ERROR(transaction.Commit());
  cleanup.path.clear();
  OTARO_LOG_INFO("registered model version {} ({})", record.version, record.path);
  return record.version;
}

absl::StatusOr<ModelVersionRecord> Store::InitializeServing(const std::string& model_path) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  OTARO_ASSIGN_OR_RETURN(std::optional<uint64_t> current, CurrentVersionLocked());
  if (!current.has_value()) {
    if (model_path.empty()) {
      return absl::FailedPreconditionError(
          "the store has no served model version yet and model.path is empty: set model.path "
          "to the model to start from");
    }
    OTARO_ASSIGN_OR_RETURN(auto max,
                           db_->Prepare("SELECT COALESCE(MAX(version), 0) FROM model_versions"));
    OTARO_RETURN_IF_ERROR(max.Step().status());
    ModelVersionRecord record;
    record.version = static_cast<uint64_t>(max.Int(0)) + 1;
    record.path = model_path;
    record.created_unix_seconds = NowSeconds();
    record.state = "ready";
    OTARO_RETURN_IF_ERROR(InsertModelVersionLocked(record));
    OTARO_RETURN_IF_ERROR(
        db_->Run("INSERT INTO serving (version, started_at, action) VALUES (?, ?, 'initial')",
                 record.version, record.created_unix_seconds));
    current = record.version;
  }
  OTARO_ASSIGN_OR_RETURN(ModelVersionRecord record, GetModelVersionLocked(*current));
  OTARO_RETURN_IF_ERROR(transaction.Commit());
  return record;
}

absl::StatusOr<ModelVersionRecord> Store::GetModelVersionLocked(uint64_t version) {
  OTARO_ASSIGN_OR_RETURN(auto query,
                         db_->Prepare(absl::StrCat("SELECT ", kVersionColumns,
                                                   " FROM model_versions WHERE version = ?")));
  OTARO_RETURN_IF_ERROR(query.BindAll(version));
  OTARO_ASSIGN_OR_RETURN(bool found, query.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no model version ", version));
  return ReadVersion(query);
}

absl::StatusOr<ModelVersionRecord> Store::GetModelVersion(uint64_t version) {
  MutexLock lock(&mu_);
  return GetModelVersionLocked(version);
}

absl::StatusOr<std::vector<ModelVersionRecord>> Store::ListModelVersions() {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(auto query,
                         db_->Prepare(absl::StrCat("SELECT ", kVersionColumns,
                                                   " FROM model_versions ORDER BY version")));
  std::vector<ModelVersionRecord> out;
  while (true) {
    OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    OTARO_ASSIGN_OR_RETURN(ModelVersionRecord record, ReadVersion(query));
    out.push_back(std::move(record));
  }
  return out;
}

// --- Serving -------------------------------------------------------------------

absl::StatusOr<std::optional<uint64_t>> Store::CurrentVersionLocked() {
  OTARO_ASSIGN_OR_RETURN(auto query,
                         db_->Prepare("SELECT version FROM serving WHERE "
                                      "rolled_back_at IS NULL ORDER BY seq DESC LIMIT 1"));
  OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
  if (!row) return std::optional<uint64_t>();
  return std::optional<uint64_t>(static_cast<uint64_t>(query.Int(0)));
}

absl::StatusOr<std::optional<uint64_t>> Store::RollbackTargetLocked() {
  // The live entry before the current one. Neighbouring live entries always
  // differ: RecordPublish of the current version adds none.
  OTARO_ASSIGN_OR_RETURN(auto query,
                         db_->Prepare("SELECT version FROM serving WHERE rolled_back_at IS NULL "
                                      "ORDER BY seq DESC LIMIT 1 OFFSET 1"));
  OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
  if (!row) return std::optional<uint64_t>();
  return std::optional<uint64_t>(static_cast<uint64_t>(query.Int(0)));
}

absl::StatusOr<std::optional<uint64_t>> Store::CurrentVersion() {
  MutexLock lock(&mu_);
  return CurrentVersionLocked();
}

absl::StatusOr<std::optional<uint64_t>> Store::RollbackTarget() {
  MutexLock lock(&mu_);
  return RollbackTargetLocked();
}

absl::Status Store::RecordPublish(uint64_t version) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  OTARO_RETURN_IF_ERROR(GetModelVersionLocked(version).status());
  OTARO_ASSIGN_OR_RETURN(std::optional<uint64_t> current, CurrentVersionLocked());
  if (current == version) return absl::OkStatus();
  OTARO_RETURN_IF_ERROR(
      db_->Run("INSERT INTO serving (version, started_at, action) VALUES (?, ?, 'publish')",
               version, NowSeconds()));
  return transaction.Commit();
}

absl::StatusOr<uint64_t> Store::RecordRollback(uint64_t expected_target) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  OTARO_ASSIGN_OR_RETURN(std::optional<uint64_t> target, RollbackTargetLocked());
  if (!target.has_value()) {
    return absl::FailedPreconditionError(
        "no earlier model version to roll back to: the serving history has one entry");
  }
  if (*target != expected_target) {
    return absl::AbortedError(
        absl::StrCat("the serving history changed meanwhile: rollback "
                     "would now serve version ",
                     *target, ", not ", expected_target));
  }
  OTARO_RETURN_IF_ERROR(db_->Run(
      "UPDATE serving SET rolled_back_at = ? WHERE seq = (SELECT MAX(seq) FROM serving WHERE "
      "rolled_back_at IS NULL)",
      NowSeconds()));
  OTARO_RETURN_IF_ERROR(transaction.Commit());
  return *target;
}

absl::StatusOr<std::vector<ServingEntry>> Store::ServingHistory() {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(auto query,
                         db_->Prepare("SELECT seq, version, started_at, action, rolled_back_at "
                                      "FROM serving ORDER BY seq"));
  std::vector<ServingEntry> out;
  while (true) {
    OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    ServingEntry entry;
    entry.sequence = query.Int(0);
    entry.version = static_cast<uint64_t>(query.Int(1));
    entry.started_unix_seconds = query.Int(2);
    entry.action = query.Text(3);
    if (!query.IsNull(4)) entry.rolled_back_unix_seconds = query.Int(4);
    out.push_back(std::move(entry));
  }
  return out;
}

// --- Tuning jobs ---------------------------------------------------------------

absl::Status Store::CreateJob(const JobRecord& job) {
  if (job.id.empty()) return absl::InvalidArgumentError("a tuning job needs an id");
  MutexLock lock(&mu_);
  absl::Status status = db_->Run(
      "INSERT INTO tuning_jobs (id, display_name, spec, state, created_at, started_at, "
      "finished_at, step, total_steps, trained_tokens, error, resume_checkpoint, base_version, "
      "result_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      job.id, job.spec.display_name(), Blob{job.spec.SerializeAsString()},
      static_cast<int64_t>(job.state),
      job.created_unix_seconds != 0 ? job.created_unix_seconds : NowSeconds(),
      job.started_unix_seconds != 0 ? std::optional<int64_t>(job.started_unix_seconds)
                                    : std::nullopt,
      job.finished_unix_seconds != 0 ? std::optional<int64_t>(job.finished_unix_seconds)
                                     : std::nullopt,
      job.step, job.total_steps, job.trained_tokens, job.error, job.resume_checkpoint_path,
      job.base_version, job.result_version);
  if (status.code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(absl::StrCat("a tuning job with id '", job.id, "' exists"));
  }
  return status;
}

absl::StatusOr<JobRecord> Store::GetJob(const std::string& id) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(auto query, db_->Prepare(absl::StrCat("SELECT ", kJobColumns,
                                                               " FROM tuning_jobs WHERE id = ?")));
  OTARO_RETURN_IF_ERROR(query.BindAll(id));
  OTARO_ASSIGN_OR_RETURN(bool found, query.Step());
  if (!found) return JobNotFound(id);
  return ReadJob(query);
}

absl::StatusOr<JobPage> Store::ListJobs(const JobFilter& filter, int page_size,
                                        const std::string& page_token) {
  if (page_size <= 0) return absl::InvalidArgumentError("page_size must be positive");
  // The token is the rowid of the last job returned: insertion order, stable
  // while jobs are added.
  int64_t before = INT64_MAX;
  if (!page_token.empty() && (!absl::SimpleAtoi(page_token, &before) || before <= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid page_token '", page_token, "'"));
  }
  std::string where = "rowid < ?";
  if (!filter.states.empty()) {
    std::vector<std::string> states;
    for (otaro::v1::JobState state : filter.states)
      states.push_back(absl::StrCat(static_cast<int>(state)));
    absl::StrAppend(&where, " AND state IN (", absl::StrJoin(states, ", "), ")");
  }
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(
      auto query, db_->Prepare(absl::StrCat("SELECT ", kJobColumns, " FROM tuning_jobs WHERE ",
                                            where, " ORDER BY rowid DESC LIMIT ?")));
  OTARO_RETURN_IF_ERROR(query.BindAll(before, static_cast<int64_t>(page_size) + 1));
  JobPage page;
  int64_t last_rowid = 0;
  while (true) {
    OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    if (static_cast<int>(page.jobs.size()) == page_size) {
      page.next_page_token = absl::StrCat(last_rowid);
      break;
    }
    OTARO_ASSIGN_OR_RETURN(JobRecord job, ReadJob(query));
    last_rowid = query.Int(13);
    page.jobs.push_back(std::move(job));
  }
  return page;
}

absl::StatusOr<std::map<otaro::v1::JobState, int64_t>> Store::CountJobsByState() {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(auto query,
                         db_->Prepare("SELECT state, COUNT(*) FROM tuning_jobs GROUP BY state"));
  std::map<otaro::v1::JobState, int64_t> counts;
  while (true) {
    OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    counts[static_cast<otaro::v1::JobState>(query.Int(0))] = query.Int(1);
  }
  return counts;
}

absl::Status Store::CheckJobChanged(const std::string& id) {
  return db_->Changes() == 0 ? JobNotFound(id) : absl::OkStatus();
}

namespace {
// An interrupted job's step: the last checkpoint's, where a resume continues
// (0 without one), not how far the lost run had got.
constexpr char kInterruptedStepSql[] =
    "(SELECT COALESCE(MAX(step), 0) FROM tuning_job_checkpoints "
    "WHERE job_id = tuning_jobs.id)";
}  // namespace

absl::Status Store::UpdateJobState(const std::string& id, otaro::v1::JobState state,
                                   const std::string& error) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  const int64_t now = NowSeconds();
  OTARO_RETURN_IF_ERROR(
      db_->Run(absl::StrCat("UPDATE tuning_jobs SET state = ?, error = ?, "
                            "started_at = CASE WHEN ? AND started_at IS NULL THEN ? ELSE "
                            "started_at END, "
                            "finished_at = CASE WHEN ? THEN ? ELSE NULL END, "
                            "step = CASE WHEN ? THEN ",
                            kInterruptedStepSql, " ELSE step END WHERE id = ?"),
               static_cast<int64_t>(state), error, state == otaro::v1::JOB_STATE_RUNNING ? 1 : 0,
               now, IsTerminal(state) ? 1 : 0, now,
               state == otaro::v1::JOB_STATE_INTERRUPTED ? 1 : 0, id));
  OTARO_RETURN_IF_ERROR(CheckJobChanged(id));
  otaro::v1::TuningJobEvent event;
  event.set_state_change(state);
  OTARO_RETURN_IF_ERROR(AppendEventLocked(id, std::move(event)).status());
  return transaction.Commit();
}

absl::Status Store::UpdateJobProgress(const std::string& id, uint64_t step, uint64_t total_steps,
                                      uint64_t trained_tokens) {
  MutexLock lock(&mu_);
  OTARO_RETURN_IF_ERROR(
      db_->Run("UPDATE tuning_jobs SET step = ?, total_steps = ?, trained_tokens = ? WHERE id = ?",
               step, total_steps, trained_tokens, id));
  return CheckJobChanged(id);
}

absl::Status Store::SetJobResult(const std::string& id, uint64_t result_version) {
  MutexLock lock(&mu_);
  OTARO_RETURN_IF_ERROR(
      db_->Run("UPDATE tuning_jobs SET result_version = ? WHERE id = ?", result_version, id));
  return CheckJobChanged(id);
}

absl::StatusOr<std::vector<std::string>> Store::MarkRunningJobsInterrupted() {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  std::vector<std::string> ids;
  {
    OTARO_ASSIGN_OR_RETURN(auto query,
                           db_->Prepare("SELECT id FROM tuning_jobs WHERE state IN (?, ?)"));
    OTARO_RETURN_IF_ERROR(query.BindAll(static_cast<int64_t>(otaro::v1::JOB_STATE_RUNNING),
                                        static_cast<int64_t>(otaro::v1::JOB_STATE_VALIDATING)));
    while (true) {
      OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
      if (!row) break;
      ids.push_back(query.Text(0));
    }
  }
  const int64_t now = NowSeconds();
  for (const std::string& id : ids) {
    OTARO_RETURN_IF_ERROR(db_->Run(absl::StrCat("UPDATE tuning_jobs SET state = ?, finished_at = ?, "
                                                "step = ", kInterruptedStepSql, " WHERE id = ?"),
                                   static_cast<int64_t>(otaro::v1::JOB_STATE_INTERRUPTED), now,
                                   id));
    otaro::v1::TuningJobEvent event;
    event.set_state_change(otaro::v1::JOB_STATE_INTERRUPTED);
    OTARO_RETURN_IF_ERROR(AppendEventLocked(id, std::move(event)).status());
  }
  OTARO_RETURN_IF_ERROR(transaction.Commit());
  return ids;
}

absl::StatusOr<otaro::v1::TuningJobEvent> Store::AppendEventLocked(
    const std::string& job_id, otaro::v1::TuningJobEvent event) {
  OTARO_ASSIGN_OR_RETURN(auto exists, db_->Prepare("SELECT 1 FROM tuning_jobs WHERE id = ?"));
  OTARO_RETURN_IF_ERROR(exists.BindAll(job_id));
  OTARO_ASSIGN_OR_RETURN(bool found, exists.Step());
  if (!found) return JobNotFound(job_id);
  OTARO_ASSIGN_OR_RETURN(auto next, db_->Prepare("SELECT COALESCE(MAX(seq), 0) + 1 FROM "
                                                 "tuning_job_events WHERE job_id = ?"));
  OTARO_RETURN_IF_ERROR(next.BindAll(job_id));
  OTARO_RETURN_IF_ERROR(next.Step().status());
  event.set_sequence(static_cast<uint64_t>(next.Int(0)));
  if (event.unix_millis() == 0) event.set_unix_millis(absl::ToUnixMillis(absl::Now()));
  OTARO_RETURN_IF_ERROR(
      db_->Run("INSERT INTO tuning_job_events (job_id, seq, time_ms, event) VALUES (?, ?, ?, ?)",
               job_id, event.sequence(), event.unix_millis(), Blob{event.SerializeAsString()}));
  return event;
}

absl::StatusOr<otaro::v1::TuningJobEvent> Store::AppendEvent(const std::string& job_id,
                                                             otaro::v1::TuningJobEvent event) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  OTARO_ASSIGN_OR_RETURN(otaro::v1::TuningJobEvent stored,
                         AppendEventLocked(job_id, std::move(event)));
  OTARO_RETURN_IF_ERROR(transaction.Commit());
  return stored;
}

absl::StatusOr<std::vector<otaro::v1::TuningJobEvent>> Store::ListEvents(const std::string& job_id,
                                                                         uint64_t after_sequence,
                                                                         int limit) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(auto query,
                         db_->Prepare("SELECT seq, event FROM tuning_job_events WHERE job_id = ? "
                                      "AND seq > ? ORDER BY seq LIMIT ?"));
  OTARO_RETURN_IF_ERROR(
      query.BindAll(job_id, after_sequence, limit > 0 ? static_cast<int64_t>(limit) : int64_t{-1}));
  std::vector<otaro::v1::TuningJobEvent> out;
  while (true) {
    OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    otaro::v1::TuningJobEvent event;
    if (!event.ParseFromString(query.Text(1))) {
      return absl::DataLossError(
          absl::StrCat("event ", query.Int(0), " of tuning job ", job_id, " is unreadable"));
    }
    out.push_back(std::move(event));
  }
  return out;
}

absl::Status Store::AddCheckpoint(const std::string& job_id, const CheckpointRecord& checkpoint) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(db_.get()));
  OTARO_RETURN_IF_ERROR(db_->Run("UPDATE tuning_jobs SET resume_checkpoint = ? WHERE id = ?",
                                 checkpoint.path, job_id));
  OTARO_RETURN_IF_ERROR(CheckJobChanged(job_id));
  absl::Status status = db_->Run(
      "INSERT INTO tuning_job_checkpoints (job_id, step, path, created_at, train_loss, "
      "metrics_json) VALUES (?, ?, ?, ?, ?, ?)",
      job_id, checkpoint.step, checkpoint.path,
      checkpoint.created_unix_seconds != 0 ? checkpoint.created_unix_seconds : NowSeconds(),
      checkpoint.train_loss, ToJson(checkpoint.evaluation));
  if (status.code() == absl::StatusCode::kAlreadyExists) {
    return absl::AlreadyExistsError(
        absl::StrCat("tuning job ", job_id, " already has a checkpoint at step ", checkpoint.step));
  }
  OTARO_RETURN_IF_ERROR(status);
  return transaction.Commit();
}

absl::StatusOr<std::vector<CheckpointRecord>> Store::ListCheckpoints(const std::string& job_id) {
  MutexLock lock(&mu_);
  OTARO_ASSIGN_OR_RETURN(
      auto query, db_->Prepare("SELECT step, path, created_at, train_loss, metrics_json FROM "
                               "tuning_job_checkpoints WHERE job_id = ? ORDER BY step"));
  OTARO_RETURN_IF_ERROR(query.BindAll(job_id));
  std::vector<CheckpointRecord> out;
  while (true) {
    OTARO_ASSIGN_OR_RETURN(bool row, query.Step());
    if (!row) break;
    CheckpointRecord checkpoint;
    checkpoint.step = static_cast<uint64_t>(query.Int(0));
    checkpoint.path = query.Text(1);
    checkpoint.created_unix_seconds = query.Int(2);
    checkpoint.train_loss = query.Double(3);
    OTARO_RETURN_IF_ERROR(FromJson(query.Text(4), &checkpoint.evaluation,
                                   absl::StrCat("checkpoint of tuning job ", job_id)));
    out.push_back(std::move(checkpoint));
  }
  return out;
}

}  // namespace otaro::server
