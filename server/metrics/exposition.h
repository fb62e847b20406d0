// The Prometheus text exposition format, version 0.0.4: the plain snapshot types
// a registry collects into, the name rules, and the serializer. Kept apart from
// the registry so custom collectors (process metrics, ...) and tests can build
// snapshots directly, and so the format rules live in one place.
// Reference: https://prometheus.io/docs/instrumenting/exposition_formats/
#ifndef OTARO_SERVER_METRICS_EXPOSITION_H_
#define OTARO_SERVER_METRICS_EXPOSITION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace otaro::metrics {

// The Content-Type header value that announces this format to a scraper.
inline constexpr char kTextContentType[] = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge" or "histogram", as written on the # TYPE line.
absl::string_view MetricTypeName(MetricType type);

// One labelled child of a family at scrape time.
struct Sample {
  // Parallel to MetricFamilySnapshot::label_names.
  std::vector<std::string> label_values;
  // Counter and gauge value.
  double value = 0;
  // Histogram only: cumulative counts, one per bucket bound plus the last for
  // +Inf, so the last entry is also the _count.
  std::vector<uint64_t> cumulative_counts;
  double sum = 0;  // Histogram only.
};

struct MetricFamilySnapshot {
  std::string name;
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<std::string> label_names;
  std::vector<double> bucket_bounds;  // Histogram only; finite, ascending, no +Inf.
  std::vector<Sample> samples;
};

// Metric names: [a-zA-Z_:][a-zA-Z0-9_:]* and no leading "__" (reserved for
// Prometheus-internal names). Errors are InvalidArgument and quote the name.
absl::Status ValidateMetricName(absl::string_view name);

// Label names: [a-zA-Z_][a-zA-Z0-9_]* and no leading "__". "le" is refused when
// `for_histogram`, since the histogram writes that label itself.
absl::Status ValidateLabelName(absl::string_view name, bool for_histogram);

// Label values escape backslash, double quote and newline; HELP text escapes
// backslash and newline only (0.0.4 rules).
std::string EscapeLabelValue(absl::string_view value);
std::string EscapeHelp(absl::string_view help);

// Formats a sample value or bucket bound the way the Go client does
// (strconv.FormatFloat(v, 'g', -1, 64)): shortest round-trip digits, exponent
// form outside [1e-4, 1e6), and "+Inf", "-Inf", "NaN". Matching Go matters for
// `le`: the label value is part of the series identity, so every otaro replica
// and every Go exporter must spell the same bound the same way.
std::string FormatValue(double value);

// Appends the text of every family with at least one sample, in the order
// given, samples in the order given. Families without samples are skipped (like
// the Go client): a bare HELP/TYPE pair carries nothing for a scraper.
void AppendText(const MetricFamilySnapshot& family, std::string* out);
std::string SerializeText(absl::Span<const MetricFamilySnapshot> families);

}  // namespace otaro::metrics

#endif  // OTARO_SERVER_METRICS_EXPOSITION_H_
