// The store on a temporary directory: model versions (files and rows), the
// serving history behind publish/rollback, tuning jobs with their events and
// checkpoints, atomicity on errors, survival of a crashed process, and schema
// versions.
#include "server/store/store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/testing/shared_data.h"
#include "gtest/gtest.h"
#include "sefp/checkpoint.h"
#include "server/store/sqlite.h"

namespace otaro::server {
namespace {

namespace fs = std::filesystem;
using otaro::v1::JobState;

std::unique_ptr<Store> OpenStore(const std::string& dir) {
  auto store = Store::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

// A tiny valid SEFP checkpoint (one dense tensor) whose bytes depend on `tag`.
std::string WriteTinyCheckpoint(const std::string& path, float tag) {
  sefp::Checkpoint checkpoint;
  checkpoint.metadata.source_model = "store_test";
  sefp::DenseTensor tensor;
  tensor.shape = {2};
  float values[2] = {tag, -tag};
  tensor.bytes.assign(reinterpret_cast<const uint8_t*>(values),
                      reinterpret_cast<const uint8_t*>(values) + sizeof(values));
  checkpoint.dense["norm.weight"] = tensor;
  absl::Status status = sefp::WriteCheckpoint(path, checkpoint);
  EXPECT_TRUE(status.ok()) << status;
  return path;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST(StoreTest, FirstStartRecordsTheConfiguredModelAsVersionOne) {
  std::string dir = testing::ScratchDir("store_initial");
  auto store = OpenStore(dir);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(fs::exists(dir + "/otaro.db"));
  auto current = store->CurrentVersion();
  ASSERT_TRUE(current.ok());
  EXPECT_FALSE(current->has_value());
  EXPECT_EQ(store->InitializeServing("").status().code(), absl::StatusCode::kFailedPrecondition);

  auto served = store->InitializeServing("/models/base.gguf");
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_EQ(served->version, 1u);
  EXPECT_EQ(served->path, "/models/base.gguf");
  EXPECT_GT(served->created_unix_seconds, 1600000000);
  // A second start (another model.path) keeps what the store serves.
  served = store->InitializeServing("/models/other.gguf");
  ASSERT_TRUE(served.ok());
  EXPECT_EQ(served->version, 1u);
  EXPECT_EQ(served->path, "/models/base.gguf");
  auto versions = store->ListModelVersions();
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ(versions->size(), 1u);
}

TEST(StoreTest, RegisterCopiesTheCheckpointInAndNumbersVersions) {
  std::string dir = testing::ScratchDir("store_register");
  auto store = OpenStore(dir + "/store");
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->InitializeServing("/models/base.gguf").ok());

  std::string source = WriteTinyCheckpoint(dir + "/tuned.sefp", 1.5f);
  ModelProvenance provenance;
  provenance.base_version = 1;
  provenance.job_id = "job-7";
  provenance.dataset = "alpaca_2k.jsonl";
  provenance.strategy = otaro::v1::STRATEGY_OTARO;
  provenance.reconstruction = otaro::v1::RECONSTRUCTION_TRUNCATE;
  provenance.evaluation.set_step(120);
  auto* row = provenance.evaluation.add_rows();
  row->set_mantissa_bits(4);
  row->set_perplexity(12.25);
  (*row->mutable_accuracy())["piqa"] = 0.625;
  provenance.notes_json = R"({"bit_set":[3,4,5,6,7,8]})";
  auto version = store->RegisterModelVersion(source, provenance);
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, 2u);
  EXPECT_TRUE(fs::exists(source));  // copied, not moved
  EXPECT_EQ(ReadAll(store->ModelCheckpointPath(2)), ReadAll(source));
  std::string provenance_json = ReadAll(dir + "/store/models/2/provenance.json");
  EXPECT_NE(provenance_json.find("job-7"), std::string::npos) << provenance_json;
  EXPECT_NE(provenance_json.find("STRATEGY_OTARO"), std::string::npos);

  auto record = store->GetModelVersion(2);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->path, store->ModelCheckpointPath(2));
  EXPECT_EQ(record->state, "ready");
  EXPECT_EQ(record->provenance.base_version, 1u);
  EXPECT_EQ(record->provenance.job_id, "job-7");
  EXPECT_EQ(record->provenance.dataset, "alpaca_2k.jsonl");
  EXPECT_EQ(record->provenance.strategy, otaro::v1::STRATEGY_OTARO);
  EXPECT_EQ(record->provenance.reconstruction, otaro::v1::RECONSTRUCTION_TRUNCATE);
  EXPECT_EQ(record->provenance.notes_json, provenance.notes_json);
  ASSERT_EQ(record->provenance.evaluation.rows_size(), 1);
  EXPECT_EQ(record->provenance.evaluation.step(), 120u);
  EXPECT_EQ(record->provenance.evaluation.rows(0).perplexity(), 12.25);
  EXPECT_EQ(record->provenance.evaluation.rows(0).accuracy().at("piqa"), 0.625);

  otaro::v1::ModelVersion proto = ToModelVersionProto(*record, true);
  EXPECT_EQ(proto.version(), 2u);
  EXPECT_EQ(proto.tuning_job_id(), "job-7");
  EXPECT_TRUE(proto.serving());

  // Moving takes the file away from where it was.
  std::string moved = WriteTinyCheckpoint(dir + "/moved.sefp", 2.5f);
  std::string bytes = ReadAll(moved);
  version = store->RegisterModelVersion(moved, {}, RegisterMode::kMove);
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, 3u);
  EXPECT_FALSE(fs::exists(moved));
  EXPECT_EQ(ReadAll(store->ModelCheckpointPath(3)), bytes);
  EXPECT_EQ(store->GetModelVersion(9).status().code(), absl::StatusCode::kNotFound);
}

TEST(StoreTest, RegisteringSomethingUnservableChangesNothing) {
  std::string dir = testing::ScratchDir("store_register_bad");
  auto store = OpenStore(dir + "/store");
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->InitializeServing("/models/base.gguf").ok());
  { std::ofstream(dir + "/garbage.sefp") << "not a checkpoint"; }
  auto version = store->RegisterModelVersion(dir + "/garbage.sefp", {});
  EXPECT_EQ(version.status().code(), absl::StatusCode::kInvalidArgument) << version.status();
  EXPECT_NE(version.status().message().find("garbage.sefp"), absl::string_view::npos);
  version = store->RegisterModelVersion(dir + "/missing.sefp", {});
  EXPECT_EQ(version.status().code(), absl::StatusCode::kInvalidArgument);
  ModelProvenance bad_notes;
  bad_notes.notes_json = "[1]";
  EXPECT_FALSE(
      store->RegisterModelVersion(WriteTinyCheckpoint(dir + "/ok.sefp", 1), bad_notes).ok());

  auto versions = store->ListModelVersions();
  ASSERT_TRUE(versions.ok());
  EXPECT_EQ(versions->size(), 1u);
  // Nothing but version 1's row: no folders, no staging leftovers.
  EXPECT_TRUE(fs::is_empty(dir + "/store/models"));
}

TEST(StoreTest, RegisterReplacesAFolderACrashLeftWithoutARow) {
  std::string dir = testing::ScratchDir("store_orphan");
  auto store = OpenStore(dir + "/store");
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->InitializeServing("/models/base.gguf").ok());
  fs::create_directories(dir + "/store/models/2");
  { std::ofstream(dir + "/store/models/2/model.sefp") << "torn"; }
  std::string source = WriteTinyCheckpoint(dir + "/tuned.sefp", 3);
  auto version = store->RegisterModelVersion(source, {});
  ASSERT_TRUE(version.ok()) << version.status();
  EXPECT_EQ(*version, 2u);
  EXPECT_EQ(ReadAll(store->ModelCheckpointPath(2)), ReadAll(source));
}

TEST(StoreTest, PublishAndRollbackFollowTheServingHistory) {
  std::string dir = testing::ScratchDir("store_serving");
  auto store = OpenStore(dir + "/store");
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->InitializeServing("/models/base.gguf").ok());
  for (float tag : {2.0f, 3.0f}) {
    ASSERT_TRUE(store->RegisterModelVersion(WriteTinyCheckpoint(dir + "/c.sefp", tag), {}).ok());
  }
  auto current = [&] { return store->CurrentVersion()->value_or(0); };
  auto target = [&] { return store->RollbackTarget()->value_or(0); };
  EXPECT_EQ(target(), 0u);
  EXPECT_EQ(store->RecordRollback(1).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->RecordPublish(42).code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(store->RecordPublish(2).ok());
  ASSERT_TRUE(store->RecordPublish(2).ok());  // already served: no new entry
  ASSERT_TRUE(store->RecordPublish(3).ok());
  EXPECT_EQ(current(), 3u);
  EXPECT_EQ(target(), 2u);
  // A stale expectation is refused and changes nothing.
  EXPECT_EQ(store->RecordRollback(1).status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(current(), 3u);
  auto back = store->RecordRollback(2);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, 2u);
  EXPECT_EQ(current(), 2u);
  EXPECT_EQ(target(), 1u);
  ASSERT_TRUE(store->RecordRollback(1).ok());
  EXPECT_EQ(current(), 1u);
  EXPECT_EQ(target(), 0u);
  // Publishing after rollbacks starts a new branch from the current version.
  ASSERT_TRUE(store->RecordPublish(3).ok());
  EXPECT_EQ(target(), 1u);

  auto history = store->ServingHistory();
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 4u);
  EXPECT_EQ((*history)[0].action, "initial");
  EXPECT_EQ((*history)[1].version, 2u);
  EXPECT_TRUE((*history)[1].rolled_back_unix_seconds.has_value());
  EXPECT_TRUE((*history)[2].rolled_back_unix_seconds.has_value());
  EXPECT_EQ((*history)[3].version, 3u);
  EXPECT_FALSE((*history)[3].rolled_back_unix_seconds.has_value());
}

JobRecord MakeJob(const std::string& id) {
  JobRecord job;
  job.id = id;
  job.spec.set_display_name("tune " + id);
  job.spec.mutable_hyperparameters()->set_strategy(otaro::v1::STRATEGY_OTARO);
  job.spec.mutable_hyperparameters()->add_bit_set(4);
  job.spec.mutable_dataset()->set_inline_data(std::string("x\0y", 3));
  job.base_version = 1;
  return job;
}

TEST(StoreTest, JobsRoundTripWithStatesProgressAndResults) {
  auto store = OpenStore(testing::ScratchDir("store_jobs"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateJob(MakeJob("a")).ok());
  EXPECT_EQ(store->CreateJob(MakeJob("a")).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store->CreateJob(MakeJob("")).code(), absl::StatusCode::kInvalidArgument);
  auto job = store->GetJob("a");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->spec.SerializeAsString(), MakeJob("a").spec.SerializeAsString());
  EXPECT_EQ(job->state, otaro::v1::JOB_STATE_QUEUED);
  EXPECT_GT(job->created_unix_seconds, 0);
  EXPECT_EQ(job->started_unix_seconds, 0);
  EXPECT_EQ(job->base_version, 1u);
  EXPECT_EQ(store->GetJob("nope").status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(store->UpdateJobState("a", otaro::v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(store->UpdateJobProgress("a", 10, 100, 40960).ok());
  ASSERT_TRUE(store->UpdateJobState("a", otaro::v1::JOB_STATE_FAILED, "out of memory").ok());
  ASSERT_TRUE(store->SetJobResult("a", 5).ok());
  job = store->GetJob("a");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state, otaro::v1::JOB_STATE_FAILED);
  EXPECT_EQ(job->error, "out of memory");
  EXPECT_GT(job->started_unix_seconds, 0);
  EXPECT_GT(job->finished_unix_seconds, 0);
  EXPECT_EQ(job->step, 10u);
  EXPECT_EQ(job->total_steps, 100u);
  EXPECT_EQ(job->trained_tokens, 40960u);
  EXPECT_EQ(job->result_version, 5u);
  EXPECT_EQ(store->UpdateJobState("nope", otaro::v1::JOB_STATE_RUNNING).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store->UpdateJobProgress("nope", 1, 1, 1).code(), absl::StatusCode::kNotFound);

  // Every state change is also an event, in order.
  auto events = store->ListEvents("a", 0);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].sequence(), 1u);
  EXPECT_EQ((*events)[0].state_change(), otaro::v1::JOB_STATE_RUNNING);
  EXPECT_EQ((*events)[1].state_change(), otaro::v1::JOB_STATE_FAILED);
  EXPECT_GT((*events)[1].unix_millis(), 0);
}

TEST(StoreTest, EventsAreNumberedPerJobAndListedAfterASequence) {
  auto store = OpenStore(testing::ScratchDir("store_events"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateJob(MakeJob("a")).ok());
  ASSERT_TRUE(store->CreateJob(MakeJob("b")).ok());
  for (int i = 1; i <= 5; ++i) {
    otaro::v1::TuningJobEvent event;
    event.mutable_step()->set_step(i);
    event.mutable_step()->set_loss(1.0 / i);
    event.set_unix_millis(1000 + i);
    auto stored = store->AppendEvent("a", event);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->sequence(), static_cast<uint64_t>(i));
    EXPECT_EQ(stored->unix_millis(), 1000 + i);
  }
  otaro::v1::TuningJobEvent message;
  message.set_message("line 3 is not JSON");
  auto other = store->AppendEvent("b", message);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->sequence(), 1u);
  EXPECT_EQ(store->AppendEvent("nope", message).status().code(), absl::StatusCode::kNotFound);

  auto after = store->ListEvents("a", 2);
  ASSERT_TRUE(after.ok());
  ASSERT_EQ(after->size(), 3u);
  EXPECT_EQ((*after)[0].sequence(), 3u);
  EXPECT_EQ((*after)[0].step().step(), 3u);
  EXPECT_DOUBLE_EQ((*after)[2].step().loss(), 0.2);
  auto limited = store->ListEvents("a", 0, 2);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->size(), 2u);
  EXPECT_TRUE(store->ListEvents("a", 5)->empty());
}

TEST(StoreTest, CheckpointsBecomeTheResumePointAndDuplicatesRollBack) {
  auto store = OpenStore(testing::ScratchDir("store_checkpoints"));
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->CreateJob(MakeJob("a")).ok());
  CheckpointRecord first{100, "/ckpt/a/100.sefp", 0, 2.5, {}};
  first.evaluation.set_step(100);
  first.evaluation.add_rows()->set_perplexity(30);
  ASSERT_TRUE(store->AddCheckpoint("a", first).ok());
  ASSERT_TRUE(store->AddCheckpoint("a", {200, "/ckpt/a/200.sefp", 5, 2.0, {}}).ok());
  EXPECT_EQ(store->GetJob("a")->resume_checkpoint_path, "/ckpt/a/200.sefp");

  // The duplicate fails after the job row was updated: the transaction must
  // undo that update.
  absl::Status duplicate = store->AddCheckpoint("a", {100, "/ckpt/a/dup.sefp", 0, 0, {}});
  EXPECT_EQ(duplicate.code(), absl::StatusCode::kAlreadyExists) << duplicate;
  EXPECT_EQ(store->GetJob("a")->resume_checkpoint_path, "/ckpt/a/200.sefp");
  EXPECT_EQ(store->AddCheckpoint("nope", first).code(), absl::StatusCode::kNotFound);

  auto checkpoints = store->ListCheckpoints("a");
  ASSERT_TRUE(checkpoints.ok()) << checkpoints.status();
  ASSERT_EQ(checkpoints->size(), 2u);
  EXPECT_EQ((*checkpoints)[0].step, 100u);
  EXPECT_EQ((*checkpoints)[0].train_loss, 2.5);
  EXPECT_GT((*checkpoints)[0].created_unix_seconds, 0);
  EXPECT_EQ((*checkpoints)[0].evaluation.rows(0).perplexity(), 30);
  EXPECT_EQ((*checkpoints)[1].path, "/ckpt/a/200.sefp");
  EXPECT_EQ((*checkpoints)[1].created_unix_seconds, 5);
}

TEST(StoreTest, ListJobsPagesNewestFirstAndFiltersByState) {
  auto store = OpenStore(testing::ScratchDir("store_list_jobs"));
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->CreateJob(MakeJob(absl::StrCat("j", i))).ok());
  ASSERT_TRUE(store->UpdateJobState("j1", otaro::v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(store->UpdateJobState("j3", otaro::v1::JOB_STATE_RUNNING).ok());

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto page = store->ListJobs({}, 2, token);
    ASSERT_TRUE(page.ok()) << page.status();
    for (const JobRecord& job : page->jobs) seen.push_back(job.id);
    token = page->next_page_token;
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(seen, (std::vector<std::string>{"j4", "j3", "j2", "j1", "j0"}));
  EXPECT_EQ(pages, 3);

  auto running = store->ListJobs({{otaro::v1::JOB_STATE_RUNNING}}, 10, "");
  ASSERT_TRUE(running.ok());
  ASSERT_EQ(running->jobs.size(), 2u);
  EXPECT_EQ(running->jobs[0].id, "j3");
  EXPECT_TRUE(running->next_page_token.empty());
  EXPECT_EQ(store->ListJobs({}, 2, "bogus").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->ListJobs({}, 0, "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(StoreTest, StartUpMarksRunningJobsInterrupted) {
  auto store = OpenStore(testing::ScratchDir("store_interrupted"));
  ASSERT_NE(store, nullptr);
  for (const char* id : {"queued", "running", "validating", "done"}) {
    ASSERT_TRUE(store->CreateJob(MakeJob(id)).ok());
  }
  ASSERT_TRUE(store->UpdateJobState("running", otaro::v1::JOB_STATE_RUNNING).ok());
  ASSERT_TRUE(store->UpdateJobState("validating", otaro::v1::JOB_STATE_VALIDATING).ok());
  ASSERT_TRUE(store->UpdateJobState("done", otaro::v1::JOB_STATE_SUCCEEDED).ok());
  // "running" got to step 157 after its step-100 checkpoint: a resume
  // continues from 100, and that is the step an interrupted job reports.
  ASSERT_TRUE(store->AddCheckpoint("running", {100, "/ckpt/running/100.sefp", 5, 2.0, {}}).ok());
  ASSERT_TRUE(store->UpdateJobProgress("running", 157, 400, 1000).ok());
  ASSERT_TRUE(store->UpdateJobProgress("validating", 3, 400, 10).ok());
  auto ids = store->MarkRunningJobsInterrupted();
  ASSERT_TRUE(ids.ok()) << ids.status();
  std::sort(ids->begin(), ids->end());
  EXPECT_EQ(*ids, (std::vector<std::string>{"running", "validating"}));
  EXPECT_EQ(store->GetJob("running")->state, otaro::v1::JOB_STATE_INTERRUPTED);
  EXPECT_GT(store->GetJob("running")->finished_unix_seconds, 0);
  EXPECT_EQ(store->GetJob("running")->step, 100u);
  EXPECT_EQ(store->GetJob("validating")->step, 0u);  // no checkpoint: from the start
  EXPECT_EQ(store->GetJob("queued")->state, otaro::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(store->GetJob("done")->state, otaro::v1::JOB_STATE_SUCCEEDED);
  auto events = store->ListEvents("running", 0);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(events->back().state_change(), otaro::v1::JOB_STATE_INTERRUPTED);
  EXPECT_TRUE(store->MarkRunningJobsInterrupted()->empty());
}

TEST(StoreTest, ACrashedProcessKeepsWhatItCommittedAndNothingElse) {
  std::string dir = testing::ScratchDir("store_crash");
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The "server": commits a job, then dies mid-transaction without closing
    // anything (no destructor, no WAL checkpoint).
    auto store = Store::Open(dir);
    if (!store.ok() || !(*store)->CreateJob(MakeJob("committed")).ok()) _exit(2);
    auto db = sqlite::Database::Open(dir + "/otaro.db");
    if (!db.ok()) _exit(3);
    auto transaction = sqlite::Transaction::Begin(db->get());
    if (!transaction.ok()) _exit(4);
    if (!(*db)
             ->Run("INSERT INTO tuning_jobs (id, spec, state, created_at) VALUES "
                   "('uncommitted', x'', 2, 1)")
             .ok()) {
      _exit(5);
    }
    _exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0);

  auto store = OpenStore(dir);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->GetJob("committed").ok());
  EXPECT_EQ(store->GetJob("uncommitted").status().code(), absl::StatusCode::kNotFound);
  // And the reopened store takes writes.
  EXPECT_TRUE(store->CreateJob(MakeJob("after")).ok());
}

TEST(StoreTest, ANewerSchemaIsRefusedWithBothVersionsNamed) {
  std::string dir = testing::ScratchDir("store_schema");
  ASSERT_NE(OpenStore(dir), nullptr);
  {
    auto db = sqlite::Database::Open(dir + "/otaro.db");
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE((*db)->Exec("UPDATE schema_version SET version = 7").ok());
  }
  auto store = Store::Open(dir);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("schema version 7"), absl::string_view::npos)
      << store.status();
  EXPECT_NE(store.status().message().find(absl::StrCat("version ", Store::kSchemaVersion)),
            absl::string_view::npos);
}

TEST(StoreTest, ReopeningKeepsEverythingAndDoesNotMigrateTwice) {
  std::string dir = testing::ScratchDir("store_reopen");
  {
    auto store = OpenStore(dir);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->InitializeServing("/m").ok());
    ASSERT_TRUE(store->CreateJob(MakeJob("a")).ok());
  }
  auto store = OpenStore(dir);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->CurrentVersion()->value_or(0), 1u);
  EXPECT_TRUE(store->GetJob("a").ok());
  auto db = sqlite::Database::Open(dir + "/otaro.db");
  ASSERT_TRUE(db.ok());
  auto query = (*db)->Prepare("SELECT COUNT(*), MAX(version) FROM schema_version");
  ASSERT_TRUE(query.ok());
  ASSERT_TRUE(*query->Step());
  EXPECT_EQ(query->Int(0), 1);
  EXPECT_EQ(query->Int(1), Store::kSchemaVersion);
}

TEST(StoreTest, AnUnwritableDirectoryIsAClearError) {
  auto store = Store::Open("/proc/otaro-store-test");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("store.dir"), absl::string_view::npos) << store.status();
  EXPECT_EQ(Store::Open("").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace otaro::server
