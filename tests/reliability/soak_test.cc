// Soak: model versions come and go under streaming load. The real otaro_server
// on the quick start's model (SmolLM2-135M) runs one tuning job (which makes
// version 2) and then publish/rollback cycles between versions 1 and 2 while
// four clients stream without pause, over loopback. Asserts what an operator
// relies on:
// - memory: resident memory at the end is within one model size (the SEFP
//   weights) of where it was before the first job; versions and the tuning
//   job's state are returned when they are no longer used;
// - streams keep flowing: every call succeeds, and no inter-token gap that
//   overlaps a publish or rollback exceeds 3x the median undisturbed gap
//   (or, on a noisy machine, the worst undisturbed gap) or reaches 0.3 s.
//   Measured alone on the machine (the test is exclusive): anything running
//   beside it takes the cores whose stalls it measures.
// Prints the figures. OTARO_SOAK_CYCLES sets the number of cycles (default 20;
// tools/soak.sh runs a longer one).
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"
#include "otaro/v1/models.grpc.pb.h"
#include "otaro/v1/tuning.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/reliability/serving.h"

namespace otaro::reliability {
namespace {

constexpr int kStreams = 4;

int Cycles() {
  int cycles = 20;
  const char* env = std::getenv("OTARO_SOAK_CYCLES");
  if (env != nullptr && !absl::SimpleAtoi(env, &cycles)) cycles = 20;
  return cycles;
}

// One inter-token gap a client saw: [begin, end].
struct Gap {
  absl::Time begin;
  absl::Time end;
  double seconds() const { return absl::ToDoubleSeconds(end - begin); }
};

// kStreams clients that stream greedy completions at mixed precisions until
// Stop(), recording every inter-token gap and every failed call.
class StreamingClients {
 public:
  explicit StreamingClients(const StoriesServer& server) {
    for (int c = 0; c < kStreams; ++c) {
      threads_.emplace_back([this, &server, c] { Run(server, c); });
    }
  }
  ~StreamingClients() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::vector<Gap> gaps() {
    std::lock_guard<std::mutex> lock(mu_);
    return gaps_;
  }
  int calls() const { return calls_; }
  int errors() const { return errors_; }
  std::string first_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  void Run(const StoriesServer& server, int c) {
    auto stub = server.Stub();
    const std::vector<std::string> prompts = {"The history of", "Once upon a time",
                                              "The capital of France", "A recipe for"};
    for (int i = 0; !stop_; ++i) {
      otaro::v1::GenerateRequest request = Request(prompts[(c + i) % 4], 3 + (c + i) % 6, 32);
      request.set_stop_at_eos(false);
      request.mutable_sampling()->set_temperature(0);
      auto context = Context(absl::Minutes(2));
      auto stream = stub->GenerateStream(context.get(), request);
      otaro::v1::GenerateChunk chunk;
      std::vector<Gap> mine;
      absl::Time last = absl::InfinitePast();
      int tokens = 0;
      while (stream->Read(&chunk)) {
        if (chunk.token_ids_size() == 0) continue;
        const absl::Time now = absl::Now();
        // A chunk may hold several tokens (held back for UTF-8): one gap each.
        if (last != absl::InfinitePast()) {
          const absl::Duration each = (now - last) / chunk.token_ids_size();
          for (int t = 0; t < chunk.token_ids_size(); ++t) {
            mine.push_back({last + each * t, last + each * (t + 1)});
          }
        }
        last = now;
        tokens += chunk.token_ids_size();
      }
      grpc::Status status = stream->Finish();
      ++calls_;
      std::lock_guard<std::mutex> lock(mu_);
      gaps_.insert(gaps_.end(), mine.begin(), mine.end());
      if (!status.ok() || tokens != request.max_tokens()) {
        ++errors_;
        if (first_error_.empty()) {
          first_error_ = absl::StrCat(status.error_message(), " (", tokens, " of ",
                                      request.max_tokens(), " tokens)");
        }
      }
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> calls_{0};
  std::atomic<int> errors_{0};
  std::mutex mu_;
  std::vector<Gap> gaps_;
  std::string first_error_;
  std::vector<std::thread> threads_;
};

std::string MakeDataDir() {
  const std::string data = testing::ScratchDir("soak_data");
  std::ifstream in(testing::SharedPath("data/corpora/wikitext-2-tokens/valid.txt"));
  std::string text, line;
  while (text.size() < 60000 && std::getline(in, line)) text += line + "\n";
  std::ofstream(data + "/wiki.txt") << text;
  return data;
}

// With OTARO_SOAK_SMAPS_DIR set, copies the server's /proc/PID/smaps there as
// NAME.smaps: what grew between two points, mapping by mapping (heap, malloc
// arenas, thread stacks, files), is what tools/soak_smaps.py compares.
void SaveSmaps(StoriesServer& server, const std::string& name) {
  const char* dir = std::getenv("OTARO_SOAK_SMAPS_DIR");
  if (dir == nullptr || *dir == 0) return;
  std::ifstream in(absl::StrCat("/proc/", server.process().pid(), "/smaps"));
  std::ofstream(absl::StrCat(dir, "/", name, ".smaps")) << in.rdbuf();
}

// Runs a 2-step job on the served model and waits for it: version 2.
void TuneOnce(const StoriesServer& server) {
  auto tuning = otaro::v1::Tuning::NewStub(grpc::CreateChannel(
      server.address(), grpc::InsecureChannelCredentials()));
  otaro::v1::CreateTuningJobRequest request;
  request.mutable_dataset()->set_path("wiki.txt");
  request.mutable_dataset()->set_format(otaro::v1::DATASET_FORMAT_TEXT);
  auto* h = request.mutable_hyperparameters();
  h->set_max_steps(2);
  h->set_seq_len(32);
  h->set_batch_size(1);
  h->set_optimizer(otaro::v1::OPTIMIZER_ADAMW);
  h->set_learning_rate(1e-5f);
  request.mutable_evaluation()->set_max_items(2);
  otaro::v1::TuningJob job;
  grpc::Status status = tuning->CreateTuningJob(Context().get(), request, &job);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const absl::Time end = absl::Now() + absl::Minutes(8);
  while (absl::Now() < end) {
    otaro::v1::GetTuningJobRequest get;
    get.set_id(job.id());
    ASSERT_TRUE(tuning->GetTuningJob(Context().get(), get, &job).ok());
    if (job.state() == otaro::v1::JOB_STATE_SUCCEEDED) break;
    ASSERT_NE(job.state(), otaro::v1::JOB_STATE_FAILED) << job.error();
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(job.state(), otaro::v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(job.result_version().version(), 2u);
}

TEST(SoakTest, PublishCyclesUnderStreamingLoadKeepMemoryFlatAndStreamsFlowing) {
  const char* model = std::getenv("OTARO_DEFAULT_MODEL");
  struct stat st;
  if (model == nullptr || ::stat(model, &st) != 0) {
    GTEST_SKIP() << "OTARO_DEFAULT_MODEL (the quick start's SmolLM2 GGUF) is not set or missing: "
                    "run through tools/test.sh";
  }
  const std::string data_dir = MakeDataDir();
  StoriesServer server("soak",
                       {absl::StrCat("store.dir=", testing::ScratchDir("soak_store")),
                        absl::StrCat("tuning.data_dir=", data_dir), "tuning.threads=1",
                        "engine.max_batch_sequences=8",
                        // One engine thread: the test's own clients and the
                        // server's gRPC threads need the other core. With the
                        // engine on both cores of a 2-core machine, every other
                        // runnable thread stalls a decode step, and the gaps'
                        // p99 is 6x their median before any publish.
                        "engine.threads=1"},
                       model);
  auto models = otaro::v1::ModelVersions::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  otaro::v1::ModelInfo info;
  ASSERT_TRUE(server.Stub()->GetModelInfo(Context().get(), otaro::v1::GetModelInfoRequest(), &info).ok());
  const int64_t model_bytes = static_cast<int64_t>(info.memory().weight_bytes());

  StreamingClients clients(server);
  absl::SleepFor(absl::Seconds(3));  // warm: KV cache, thread pools, gRPC buffers
  const int64_t rss_start = server.ResidentBytes();
  SaveSmaps(server, "start");

  const absl::Time job_begin = absl::Now();
  TuneOnce(server);
  const Gap job = {job_begin, absl::Now()};
  const int64_t rss_after_job = server.ResidentBytes();
  SaveSmaps(server, "after_job");

  const int cycles = Cycles();
  std::vector<Gap> swaps;  // when a publish or rollback was under way
  int64_t rss_peak = 0;
  // Between swaps the streams run undisturbed for a while: their gaps there
  // are the baseline a swap is measured against.
  const absl::Duration quiet = absl::Milliseconds(500);
  for (int i = 0; i < cycles; ++i) {
    otaro::v1::PublishModelVersionRequest publish;
    publish.set_version(2);
    otaro::v1::ModelVersion version;
    absl::Time begin = absl::Now();
    grpc::Status status = models->PublishModelVersion(Context().get(), publish, &version);
    swaps.push_back({begin, absl::Now()});
    ASSERT_TRUE(status.ok()) << "publish " << i << ": " << status.error_message();
    rss_peak = std::max(rss_peak, server.ResidentBytes());
    absl::SleepFor(quiet);
    begin = absl::Now();
    status = models->RollbackModelVersion(Context().get(),
                                          otaro::v1::RollbackModelVersionRequest(), &version);
    swaps.push_back({begin, absl::Now()});
    ASSERT_TRUE(status.ok()) << "rollback " << i << ": " << status.error_message();
    ASSERT_EQ(version.version(), 1u);
    rss_peak = std::max(rss_peak, server.ResidentBytes());
    absl::SleepFor(quiet);
    if (i == 0) SaveSmaps(server, "after_cycle_1");
  }
  clients.Stop();
  ASSERT_TRUE(server.WaitIdle()) << "requests or KV blocks still held after the soak";
  // The version replaced last is unloaded after its last request, at
  // background priority (served_model.cc): give that a few seconds to finish.
  int64_t rss_end = server.ResidentBytes();
  for (const absl::Time until = absl::Now() + absl::Seconds(5);
       rss_end > rss_start + model_bytes && absl::Now() < until;) {
    absl::SleepFor(absl::Milliseconds(100));
    rss_end = std::min(rss_end, server.ResidentBytes());
  }
  SaveSmaps(server, "end");
  if (const char* log = std::getenv("OTARO_SOAK_SERVER_LOG"); log != nullptr && *log != 0) {
    std::ofstream(log) << server.process().Stderr();  // to study a stall: tools/soak.sh
  }

  auto overlaps = [](const Gap& a, const Gap& b) { return a.begin < b.end && b.begin < a.end; };
  std::vector<double> undisturbed, during_swaps;
  std::vector<std::pair<double, std::string>> longest;  // during swaps, where in the swap
  for (const Gap& gap : clients.gaps()) {
    if (overlaps(gap, job)) continue;  // the tuning job shares the cores by design
    const Gap* in_swap = nullptr;
    for (const Gap& swap : swaps) {
      if (overlaps(gap, swap)) in_swap = &swap;
    }
    (in_swap ? during_swaps : undisturbed).push_back(gap.seconds());
    if (in_swap != nullptr) {
      longest.push_back({gap.seconds(), absl::StrFormat("%.0f ms at %s, %+.2f s into a %.2f s swap",
                                                        1e3 * gap.seconds(),
                                                        absl::FormatTime("%H:%M:%E3S", gap.begin, absl::UTCTimeZone()),
                                                        absl::ToDoubleSeconds(gap.begin - in_swap->begin),
                                                        in_swap->seconds())});
    }
  }
  std::sort(longest.rbegin(), longest.rend());
  for (size_t i = 0; i < longest.size() && i < 5; ++i) {
    std::printf("soak: long gap %s\n", longest[i].second.c_str());
  }
  std::vector<double> swap_seconds;
  for (const Gap& swap : swaps) swap_seconds.push_back(swap.seconds());
  const double median = Percentile(undisturbed, 0.5);
  const double worst = Percentile(during_swaps, 1.0);
  const double mib = 1048576.0;
  std::printf(
      "soak: %d publish/rollback cycles and one tuning job (%.1f s) under %d streams; %d calls; "
      "model %.1f MiB; RSS %.1f MiB before the job, %.1f after it, peak %.1f, %.1f at the end "
      "(%+.1f); publish/rollback p50 %.2f s max %.2f s; inter-token gaps: undisturbed p50 %.1f ms "
      "p99 %.1f ms max %.1f ms (%zu), during a publish/rollback p50 %.1f ms p99 %.1f ms max %.1f "
      "ms (%zu); "
      "worst / undisturbed median %.2fx\n",
      cycles, absl::ToDoubleSeconds(job.end - job.begin), kStreams, clients.calls(),
      model_bytes / mib, rss_start / mib, rss_after_job / mib, rss_peak / mib, rss_end / mib,
      (rss_end - rss_start) / mib, Percentile(swap_seconds, 0.5), Percentile(swap_seconds, 1.0),
      1e3 * median, 1e3 * Percentile(undisturbed, 0.99), 1e3 * Percentile(undisturbed, 1.0),
      undisturbed.size(),
      1e3 * Percentile(during_swaps, 0.5), 1e3 * Percentile(during_swaps, 0.99), 1e3 * worst,
      during_swaps.size(), median > 0 ? worst / median : 0.0);

  EXPECT_EQ(clients.errors(), 0) << clients.first_error();
  ASSERT_GT(rss_start, 0);
  EXPECT_LE(rss_end, rss_start + model_bytes)
      << "resident memory grew by " << (rss_end - rss_start) / mib << " MiB over " << cycles
      << " publish/rollback cycles and one tuning job (model " << model_bytes / mib << " MiB)";
  ASSERT_FALSE(during_swaps.empty());
  ASSERT_FALSE(undisturbed.empty());
  // Issue 17: no gap during a swap above 3x the undisturbed median. On 2
  // cores, quiet (20 and 60 cycles): 1.92-2.03x; in two full CI runs on this
  // machine 2.48x and 2.68x. Before the versions' schedulers shared a StepGate
  // it was 5.6-8x (two engine threads stepping at once took both cores from
  // the streams' gRPC threads); before loads and unloads (their heap trims
  // included) ran at background priority 2.2-2.8x. A gap the same run also
  // shows with no swap under way is the machine's, not the swap's: the bound
  // is 3x the median or the worst undisturbed gap, whichever is larger (on a
  // quiet machine that is the 3x).
  const double bound = std::max(3 * median, Percentile(undisturbed, 1.0));
  EXPECT_LE(worst, bound) << "a stream slowed down during a publish or rollback (undisturbed "
                          << "median " << 1e3 * median << " ms)";
  EXPECT_LT(worst, 0.3) << "a stream stalled during a publish or rollback";
}

}  // namespace
}  // namespace otaro::reliability
