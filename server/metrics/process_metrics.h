// The standard process metrics every Prometheus client exports (names and help
// as in the Go client, so shared dashboards work), plus otaro's build info and
// uptime. Values come from /proc/self at scrape time.
#ifndef OTARO_SERVER_METRICS_PROCESS_METRICS_H_
#define OTARO_SERVER_METRICS_PROCESS_METRICS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/metrics/registry.h"

namespace otaro::metrics {

struct BuildInfo {
  std::string version;
  std::string git_commit;
};

// The fields of /proc/self/stat (proc(5)) the collector uses, in raw units.
struct ProcStat {
  uint64_t utime_ticks = 0;       // Field 14.
  uint64_t stime_ticks = 0;       // Field 15.
  uint64_t start_time_ticks = 0;  // Field 22: clock ticks after boot.
  uint64_t vsize_bytes = 0;       // Field 23.
  int64_t rss_pages = 0;          // Field 24.
};

// Parses /proc/<pid>/stat text. The command name (field 2) is in parentheses
// and may itself contain spaces and ')', so fields are counted from the last ')'.
absl::StatusOr<ProcStat> ParseProcStat(absl::string_view contents);

// The "btime" line of /proc/stat: boot time in seconds since the epoch.
absl::StatusOr<uint64_t> ParseBootTime(absl::string_view proc_stat_contents);

// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds and otaro_uptime_seconds. A family whose source
// cannot be read at scrape time is left out of that scrape (and logged once)
// rather than reported as a made-up zero.
class ProcessCollector final : public Collector {
 public:
  ProcessCollector();

  std::vector<Descriptor> Describe() const override;
  void Collect(std::vector<MetricFamilySnapshot>* out) const override;

  double start_time_seconds() const { return start_time_seconds_; }

 private:
  // Wall-clock start, for process_start_time_seconds.
  double start_time_seconds_;
  // Start on CLOCK_BOOTTIME (the clock /proc's starttime counts on): uptime is
  // measured on it, so a wall-clock step (NTP, manual) cannot make it jump.
  double start_boot_seconds_;
};

// Registers otaro_build_info{version,git_commit} 1 and a ProcessCollector.
absl::Status RegisterProcessMetrics(Registry& registry, const BuildInfo& build_info);

}  // namespace otaro::metrics

#endif  // OTARO_SERVER_METRICS_PROCESS_METRICS_H_
