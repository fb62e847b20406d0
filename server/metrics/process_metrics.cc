#include "server/metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace otaro::metrics {
namespace {

// /proc files report size 0, so read until EOF instead of trusting stat().
std::optional<std::string> ReadProcFile(const char* path) {
  std::FILE* f = std::fopen(path, "re");
  if (f == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return std::nullopt;
  return out;
}

double ClockSeconds(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double TicksPerSecond() {
  long ticks = sysconf(_SC_CLK_TCK);
  return ticks > 0 ? static_cast<double>(ticks) : 100.0;
}

// Open descriptors, not counting the one opendir itself holds.
std::optional<int64_t> CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  int own = dirfd(dir);
  int64_t count = 0;
  while (struct dirent* e = readdir(dir)) {
    int fd;
    if (!absl::SimpleAtoi(e->d_name, &fd)) continue;  // "." and "..".
    if (fd != own) ++count;
  }
  closedir(dir);
  return count;
}

MetricFamilySnapshot Single(std::string name, std::string help, MetricType type, double value) {
  MetricFamilySnapshot family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  Sample sample;
  sample.value = value;
  family.samples.push_back(std::move(sample));
  return family;
}

// Logs a failed /proc read once per process, not once per scrape.
void WarnOnce(std::atomic<bool>& flag, const char* what) {
  if (!flag.exchange(true)) OTARO_LOG_WARN("process metrics: cannot read {}; leaving it out", what);
}

std::atomic<bool> warned_stat{false};
std::atomic<bool> warned_fds{false};

}  // namespace

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view contents) {
  size_t close = contents.rfind(')');
  if (close == absl::string_view::npos) {
    return absl::InvalidArgumentError("/proc stat: no ')' after the command name");
  }
  // After ")" come fields 3, 4, ...: field k is at index k - 3.
  std::vector<absl::string_view> fields =
      absl::StrSplit(contents.substr(close + 1), ' ', absl::SkipWhitespace());
  if (fields.size() < 22) {
    return absl::InvalidArgumentError(
        absl::StrCat("/proc stat: expected at least 24 fields, got ", fields.size() + 2));
  }
  ProcStat stat;
  auto field = [&](int k) { return absl::StripAsciiWhitespace(fields[k - 3]); };
  if (!absl::SimpleAtoi(field(14), &stat.utime_ticks) ||
      !absl::SimpleAtoi(field(15), &stat.stime_ticks) ||
      !absl::SimpleAtoi(field(22), &stat.start_time_ticks) ||
      !absl::SimpleAtoi(field(23), &stat.vsize_bytes) ||
      !absl::SimpleAtoi(field(24), &stat.rss_pages)) {
    return absl::InvalidArgumentError("/proc stat: a numeric field does not parse");
  }
  return stat;
}

absl::StatusOr<uint64_t> ParseBootTime(absl::string_view proc_stat_contents) {
  for (absl::string_view line : absl::StrSplit(proc_stat_contents, '\n')) {
    if (absl::ConsumePrefix(&line, "btime ")) {
      uint64_t btime;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &btime)) return btime;
      return absl::InvalidArgumentError(absl::StrCat("/proc/stat: bad btime line: ", line));
    }
  }
  return absl::NotFoundError("/proc/stat: no btime line");
}

ProcessCollector::ProcessCollector() {
  // Fallback if /proc cannot tell: the collector is created at startup, so
  // "now" is close to the truth.
  start_time_seconds_ = ClockSeconds(CLOCK_REALTIME);
  start_boot_seconds_ = ClockSeconds(CLOCK_BOOTTIME);
  std::optional<std::string> self_stat = ReadProcFile("/proc/self/stat");
  std::optional<std::string> system_stat = ReadProcFile("/proc/stat");
  if (!self_stat || !system_stat) return;
  absl::StatusOr<ProcStat> stat = ParseProcStat(*self_stat);
  absl::StatusOr<uint64_t> btime = ParseBootTime(*system_stat);
  if (!stat.ok() || !btime.ok()) return;
  start_boot_seconds_ = static_cast<double>(stat->start_time_ticks) / TicksPerSecond();
  start_time_seconds_ = static_cast<double>(*btime) + start_boot_seconds_;
}

std::vector<Collector::Descriptor> ProcessCollector::Describe() const {
  return {
      {"process_cpu_seconds_total", MetricType::kCounter},
      {"process_resident_memory_bytes", MetricType::kGauge},
      {"process_virtual_memory_bytes", MetricType::kGauge},
      {"process_open_fds", MetricType::kGauge},
      {"process_max_fds", MetricType::kGauge},
      {"process_start_time_seconds", MetricType::kGauge},
      {"otaro_uptime_seconds", MetricType::kGauge},
  };
}

void ProcessCollector::Collect(std::vector<MetricFamilySnapshot>* out) const {
  out->push_back(Single("process_start_time_seconds",
                        "Start time of the process since unix epoch in seconds.",
                        MetricType::kGauge, start_time_seconds_));
  out->push_back(Single("otaro_uptime_seconds", "Seconds since the otaro process started.",
                        MetricType::kGauge,
                        std::max(0.0, ClockSeconds(CLOCK_BOOTTIME) - start_boot_seconds_)));

  std::optional<std::string> contents = ReadProcFile("/proc/self/stat");
  absl::StatusOr<ProcStat> stat =
      contents ? ParseProcStat(*contents) : absl::UnavailableError("unreadable");
  if (stat.ok()) {
    double ticks = TicksPerSecond();
    out->push_back(Single("process_cpu_seconds_total",
                          "Total user and system CPU time spent in seconds.", MetricType::kCounter,
                          static_cast<double>(stat->utime_ticks + stat->stime_ticks) / ticks));
    out->push_back(Single(
        "process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::kGauge,
        static_cast<double>(stat->rss_pages) * static_cast<double>(sysconf(_SC_PAGESIZE))));
    out->push_back(Single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                          MetricType::kGauge, static_cast<double>(stat->vsize_bytes)));
  } else {
    WarnOnce(warned_stat, "/proc/self/stat");
  }

  if (std::optional<int64_t> fds = CountOpenFds()) {
    out->push_back(Single("process_open_fds", "Number of open file descriptors.",
                          MetricType::kGauge, static_cast<double>(*fds)));
  } else {
    WarnOnce(warned_fds, "/proc/self/fd");
  }
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out->push_back(Single("process_max_fds", "Maximum number of open file descriptors.",
                          MetricType::kGauge,
                          limit.rlim_cur == RLIM_INFINITY ? std::numeric_limits<double>::infinity()
                                                          : static_cast<double>(limit.rlim_cur)));
  }
}

absl::Status RegisterProcessMetrics(Registry& registry, const BuildInfo& build_info) {
  OTARO_ASSIGN_OR_RETURN(
      GaugeFamily * info,
      registry.AddGauge("otaro_build_info",
                        "A metric with a constant '1' value labeled by the otaro version and "
                        "git commit it was built from.",
                        {"version", "git_commit"}));
  info->WithLabels({build_info.version, build_info.git_commit}).Set(1);
  return registry.AddCollector(std::make_unique<ProcessCollector>());
}

}  // namespace otaro::metrics
