// A small Prometheus registry in the spirit of prometheus-cpp (which Debian 12
// does not package): families of counters, gauges and histograms keyed by label
// values, callback gauges computed at scrape time, and custom collectors.
//
// Registration is done once at startup and returns absl::StatusOr: a bad name is
// a programmer error, but returning it lets server startup fail with one clear
// message through its usual error path (OTARO_ASSIGN_OR_RETURN) and lets tests
// check every rule without death tests. WithLabels with the wrong number of
// values, by contrast, happens on the request path where there is no status to
// return; it aborts with a message naming the family (a bug the first test run
// hits).
//
//   OTARO_ASSIGN_OR_RETURN(CounterFamily* requests,
//       registry.AddCounter("otaro_requests_total", "Requests handled.", {"method", "code"}));
//   Counter& ok = requests->WithLabels({"Generate", "OK"});  // Keep the reference.
//   ok.Increment();
//
// Children are never removed (except callback gauges), so references stay valid
// for the registry's lifetime; keep label cardinality bounded.
#ifndef OTARO_SERVER_METRICS_REGISTRY_H_
#define OTARO_SERVER_METRICS_REGISTRY_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/mutex.h"
#include "server/metrics/exposition.h"
#include "server/metrics/metric.h"

namespace otaro::metrics {

// Anything that contributes families to a scrape.
class Collectable {
 public:
  virtual ~Collectable() = default;
  // Appends this source's families. Called from the HTTP server's threads, so it
  // must be thread-safe.
  virtual void Collect(std::vector<MetricFamilySnapshot>* out) const = 0;
};

// A family of one metric kind (Counter, Gauge or Histogram) with fixed label
// names; each distinct tuple of label values is one child.
template <typename T>
class Family final : public Collectable {
 public:
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  // The child for these label values (positional, in label_names() order),
  // created on first use. The reference stays valid as long as the registry:
  // callers on a hot path look it up once and keep it. The lookup itself takes
  // a shared lock and builds one key string. Values that are not valid UTF-8
  // have the bad bytes replaced by U+FFFD (the format requires UTF-8).
  // Aborts if the number of values differs from the number of label names.
  T& WithLabels(absl::Span<const absl::string_view> label_values);

  const std::string& name() const { return name_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Children sorted by label values, so the output is stable between scrapes.
  void Collect(std::vector<MetricFamilySnapshot>* out) const override;

 private:
  friend class Registry;
  struct Child {
    std::vector<std::string> label_values;
    std::unique_ptr<T> metric;
  };

  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::shared_ptr<const std::vector<double>> bucket_bounds);

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const std::shared_ptr<const std::vector<double>> bucket_bounds_;  // Histogram only.
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Child> children_ ABSL_GUARDED_BY(mu_);
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// A gauge family whose values are computed at scrape time by callbacks (queue
// length, cache size: numbers that already live elsewhere). Callbacks run on
// the HTTP server's threads while this family's (and the registry's) lock is
// held, so they must be thread-safe, quick, and must not touch this family or
// register metrics.
class CallbackGaugeFamily final : public Collectable {
 public:
  CallbackGaugeFamily(const CallbackGaugeFamily&) = delete;
  CallbackGaugeFamily& operator=(const CallbackGaugeFamily&) = delete;

  // Installs (or replaces) the callback for these label values. Aborts on a
  // label count mismatch, like Family::WithLabels.
  void Set(absl::Span<const absl::string_view> label_values, std::function<double()> callback);
  // Removes the child. When Remove returns, no scrape is running its callback
  // any more, so the object it reads may be destroyed.
  void Remove(absl::Span<const absl::string_view> label_values);

  const std::string& name() const { return name_; }
  void Collect(std::vector<MetricFamilySnapshot>* out) const override;

 private:
  friend class Registry;
  struct Child {
    std::vector<std::string> label_values;
    std::function<double()> callback;
  };
  CallbackGaugeFamily(std::string name, std::string help, std::vector<std::string> label_names);

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Child> children_ ABSL_GUARDED_BY(mu_);
};

// A source of families computed at scrape time by code of its own (the process
// collector reads /proc once for several families).
class Collector : public Collectable {
 public:
  struct Descriptor {
    std::string name;
    MetricType type;
  };
  // The families Collect may produce. The registry validates and reserves
  // these names, and drops anything else Collect emits, so a collector cannot
  // produce an invalid or duplicate family.
  virtual std::vector<Descriptor> Describe() const = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Errors (InvalidArgument, or AlreadyExists for a name in use) name the
  // metric and the rule. Rules: metric and label names per ValidateMetricName /
  // ValidateLabelName, distinct label names, non-empty help (promtool's lint
  // requires it), and counter names ending in "_total" (the Prometheus naming
  // convention, which promtool also checks; enforcing it here keeps every
  // counter the server registers lint-clean).
  absl::StatusOr<CounterFamily*> AddCounter(absl::string_view name, absl::string_view help,
                                            std::vector<std::string> label_names = {});
  absl::StatusOr<GaugeFamily*> AddGauge(absl::string_view name, absl::string_view help,
                                        std::vector<std::string> label_names = {});
  // `bucket_bounds` per ValidateBucketBounds; +Inf is always added.
  absl::StatusOr<HistogramFamily*> AddHistogram(absl::string_view name, absl::string_view help,
                                                std::vector<double> bucket_bounds,
                                                std::vector<std::string> label_names = {});
  absl::StatusOr<CallbackGaugeFamily*> AddCallbackGauge(absl::string_view name,
                                                        absl::string_view help,
                                                        std::vector<std::string> label_names = {});
  // Validates every described family name and reserves it.
  absl::Status AddCollector(std::unique_ptr<Collector> collector);

  // Every family with at least one sample, sorted by name.
  std::vector<MetricFamilySnapshot> Collect() const;
  // Collect() in the text exposition format 0.0.4.
  std::string Serialize() const;

 private:
  struct Entry {
    std::unique_ptr<Collectable> source;
    // Family names `source` may emit (one for built-in families).
    absl::flat_hash_set<std::string> names;
  };

  // Checks the family name, help and labels, and that neither the name nor the
  // series names it writes (name_bucket, name_sum, name_count for histograms)
  // clash with an existing family's.
  absl::Status CheckFamily(absl::string_view name, absl::string_view help, MetricType type,
                           const std::vector<std::string>& label_names) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Reserve(absl::string_view name, MetricType type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Every series name written by a registered family.
  absl::flat_hash_set<std::string> series_names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace otaro::metrics

#endif  // OTARO_SERVER_METRICS_REGISTRY_H_
