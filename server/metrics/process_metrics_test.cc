#include "server/metrics/process_metrics.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::metrics {
namespace {

using ::testing::HasSubstr;

// Single-sample families by name, from a fresh collection.
std::map<std::string, double> CollectValues(const ProcessCollector& collector) {
  std::vector<MetricFamilySnapshot> families;
  collector.Collect(&families);
  std::map<std::string, double> values;
  for (const MetricFamilySnapshot& f : families) {
    EXPECT_EQ(f.samples.size(), 1u) << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
    if (!f.samples.empty()) values[f.name] = f.samples[0].value;
  }
  return values;
}

double Now(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

TEST(ProcStatTest, ParsesFieldsAfterTrickyCommandName) {
  // The command name may hold spaces and ')'; fields count from the last ')'.
  std::string line =
      "4242 (my) (odd) cmd) S 1 4242 4242 0 -1 4194304 1000 0 0 0 "
      "250 75 0 0 20 0 3 0 123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 "
      "17 1 0 0 0 0 0\n";
  absl::StatusOr<ProcStat> stat = ParseProcStat(line);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->utime_ticks, 250u);
  EXPECT_EQ(stat->stime_ticks, 75u);
  EXPECT_EQ(stat->start_time_ticks, 123456u);
  EXPECT_EQ(stat->vsize_bytes, 987654321u);
  EXPECT_EQ(stat->rss_pages, 2048);
  EXPECT_FALSE(ParseProcStat("4242 (cmd S 1 2 3").ok());
  EXPECT_FALSE(ParseProcStat("4242 (cmd) S 1 2 3\n").ok());
}

TEST(ProcStatTest, ParsesBootTime) {
  absl::StatusOr<uint64_t> btime =
      ParseBootTime("cpu  1 2 3\nintr 5\nctxt 9\nbtime 1700000000\nprocesses 7\n");
  ASSERT_TRUE(btime.ok()) << btime.status();
  EXPECT_EQ(*btime, 1700000000u);
  EXPECT_EQ(ParseBootTime("cpu 1\n").status().code(), absl::StatusCode::kNotFound);
}

TEST(ProcessCollectorTest, ReportsPlausibleLiveValues) {
  ProcessCollector collector;
  std::map<std::string, double> v = CollectValues(collector);
  ASSERT_EQ(v.size(), 7u);
  // The test process started moments ago.
  double now = Now(CLOCK_REALTIME);
  EXPECT_LE(v["process_start_time_seconds"], now + 1);
  EXPECT_GT(v["process_start_time_seconds"], now - 600);
  EXPECT_GE(v["otaro_uptime_seconds"], 0);
  EXPECT_LT(v["otaro_uptime_seconds"], 600);
  EXPECT_GT(v["process_resident_memory_bytes"], 1 << 20);
  EXPECT_GE(v["process_virtual_memory_bytes"], v["process_resident_memory_bytes"]);
  EXPECT_GE(v["process_open_fds"], 3);  // stdin, stdout, stderr at least.
  EXPECT_GE(v["process_max_fds"], v["process_open_fds"]);
  EXPECT_GE(v["process_cpu_seconds_total"], 0);
}

TEST(ProcessCollectorTest, OpenFdsTracksExactlyOneMoreFile) {
  ProcessCollector collector;
  double before = CollectValues(collector)["process_open_fds"];
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  double during = CollectValues(collector)["process_open_fds"];
  close(fd);
  double after = CollectValues(collector)["process_open_fds"];
  EXPECT_EQ(during, before + 1);
  EXPECT_EQ(after, before);
}

TEST(ProcessCollectorTest, CpuSecondsAndUptimeAdvance) {
  ProcessCollector collector;
  std::map<std::string, double> first = CollectValues(collector);
  // Burn 0.2 s of CPU (by this process's own CPU clock, so a busy machine only
  // makes it take longer, not fail).
  double cpu_start = Now(CLOCK_PROCESS_CPUTIME_ID);
  volatile uint64_t sink = 0;
  while (Now(CLOCK_PROCESS_CPUTIME_ID) - cpu_start < 0.2) sink = sink + 1;
  std::map<std::string, double> second = CollectValues(collector);
  // Tick granularity is 10 ms; allow for it.
  EXPECT_GE(second["process_cpu_seconds_total"] - first["process_cpu_seconds_total"], 0.15);
  EXPECT_GE(second["otaro_uptime_seconds"] - first["otaro_uptime_seconds"], 0.15);
  EXPECT_EQ(second["process_start_time_seconds"], first["process_start_time_seconds"]);
}

TEST(RegisterProcessMetricsTest, BuildInfoAndCollector) {
  Registry registry;
  ASSERT_TRUE(RegisterProcessMetrics(registry, {"1.2.3", "abc\"123"}).ok());
  std::string text = registry.Serialize();
  EXPECT_THAT(text, HasSubstr("# TYPE otaro_build_info gauge\n"
                              "otaro_build_info{version=\"1.2.3\",git_commit=\"abc\\\"123\"} 1\n"));
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
                           "process_start_time_seconds", "otaro_uptime_seconds"}) {
    EXPECT_THAT(text, HasSubstr(std::string("\n") + name + " ")) << name;
  }
  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter\n"));
  // Registering twice is a clear error, not a second copy.
  absl::Status again = RegisterProcessMetrics(registry, {"1.2.3", "abc"});
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(again.message()), HasSubstr("otaro_build_info"));
}

}  // namespace
}  // namespace otaro::metrics
