#include "server/metrics/registry.h"

#include "common/utf8.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace otaro::metrics {
namespace {

[[noreturn]] void DieLabelCount(const std::string& family, size_t expected, size_t got) {
  // Straight to stderr: this runs on a request thread with no status to return,
  // and the message must survive even if logging is not set up.
  std::fprintf(stderr, "otaro::metrics: metric family \"%s\" expects %zu label value(s), got %zu\n",
               family.c_str(), expected, got);
  std::abort();
}

// Label values after UTF-8 repair. Valid input (the normal case) is not copied.
class CleanLabels {
 public:
  explicit CleanLabels(absl::Span<const absl::string_view> values) : values_(values) {
    bool all_valid = true;
    for (absl::string_view v : values) all_valid = all_valid && IsValidUtf8(v);
    if (all_valid) return;
    owned_.reserve(values.size());
    for (absl::string_view v : values) owned_.push_back(ToValidUtf8(v));
    views_.assign(owned_.begin(), owned_.end());
    values_ = views_;
  }
  absl::Span<const absl::string_view> values() const { return values_; }

  // An unambiguous map key: each value prefixed by its length, so ("a,b") and
  // ("a", "b") differ whatever bytes the values hold.
  std::string Key() const {
    std::string key;
    size_t total = 0;
    for (absl::string_view v : values_) total += v.size() + 4;
    key.reserve(total);
    for (absl::string_view v : values_) {
      uint32_t n = static_cast<uint32_t>(v.size());
      for (int b = 0; b < 4; ++b) key.push_back(static_cast<char>((n >> (8 * b)) & 0xFF));
      key.append(v.data(), v.size());
    }
    return key;
  }
  std::vector<std::string> Copy() const { return {values_.begin(), values_.end()}; }

 private:
  absl::Span<const absl::string_view> values_;
  std::vector<std::string> owned_;
  std::vector<absl::string_view> views_;
};

void SortSamples(std::vector<Sample>* samples) {
  std::sort(samples->begin(), samples->end(),
            [](const Sample& a, const Sample& b) { return a.label_values < b.label_values; });
}

std::vector<std::string> SeriesNames(absl::string_view name, MetricType type) {
  std::vector<std::string> names = {std::string(name)};
  if (type == MetricType::kHistogram) {
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      names.push_back(absl::StrCat(name, suffix));
  }
  return names;
}

}  // namespace

// ---- Family<T> ----

template <typename T>
Family<T>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                  std::shared_ptr<const std::vector<double>> bucket_bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      bucket_bounds_(std::move(bucket_bounds)) {}

template <typename T>
T& Family<T>::WithLabels(absl::Span<const absl::string_view> label_values) {
  if (label_values.size() != label_names_.size()) {
    DieLabelCount(name_, label_names_.size(), label_values.size());
  }
  CleanLabels labels(label_values);
  std::string key = labels.Key();
  {
    MutexLock lock(&mu_);
    auto it = children_.find(key);
    if (it != children_.end()) return *it->second.metric;
  }
  MutexLock lock(&mu_);
  // Another thread may have created it between the two locks; try_emplace
  // returns that one, so every caller gets the same child.
  auto [it, inserted] = children_.try_emplace(std::move(key));
  if (inserted) {
    it->second.label_values = labels.Copy();
    if constexpr (std::is_same_v<T, Histogram>) {
      it->second.metric = std::make_unique<Histogram>(bucket_bounds_);
    } else {
      it->second.metric = std::make_unique<T>();
    }
  }
  return *it->second.metric;
}

template <typename T>
void Family<T>::Collect(std::vector<MetricFamilySnapshot>* out) const {
  MetricFamilySnapshot family;
  family.name = name_;
  family.help = help_;
  family.label_names = label_names_;
  if constexpr (std::is_same_v<T, Counter>) {
    family.type = MetricType::kCounter;
  } else if constexpr (std::is_same_v<T, Gauge>) {
    family.type = MetricType::kGauge;
  } else {
    family.type = MetricType::kHistogram;
    family.bucket_bounds = *bucket_bounds_;
  }
  {
    MutexLock lock(&mu_);
    family.samples.reserve(children_.size());
    for (const auto& [key, child] : children_) {
      Sample sample;
      sample.label_values = child.label_values;
      if constexpr (std::is_same_v<T, Histogram>) {
        sample.cumulative_counts = child.metric->CumulativeCounts();
        sample.sum = child.metric->Sum();
      } else {
        sample.value = child.metric->Value();
      }
      family.samples.push_back(std::move(sample));
    }
  }
  SortSamples(&family.samples);
  out->push_back(std::move(family));
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- CallbackGaugeFamily ----

CallbackGaugeFamily::CallbackGaugeFamily(std::string name, std::string help,
                                         std::vector<std::string> label_names)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)) {}

void CallbackGaugeFamily::Set(absl::Span<const absl::string_view> label_values,
                              std::function<double()> callback) {
  if (label_values.size() != label_names_.size()) {
    DieLabelCount(name_, label_names_.size(), label_values.size());
  }
  CleanLabels labels(label_values);
  MutexLock lock(&mu_);
  Child& child = children_[labels.Key()];
  child.label_values = labels.Copy();
  child.callback = std::move(callback);
}

void CallbackGaugeFamily::Remove(absl::Span<const absl::string_view> label_values) {
  if (label_values.size() != label_names_.size()) {
    DieLabelCount(name_, label_names_.size(), label_values.size());
  }
  CleanLabels labels(label_values);
  MutexLock lock(&mu_);
  children_.erase(labels.Key());
}

void CallbackGaugeFamily::Collect(std::vector<MetricFamilySnapshot>* out) const {
  MetricFamilySnapshot family;
  family.name = name_;
  family.help = help_;
  family.type = MetricType::kGauge;
  family.label_names = label_names_;
  {
    // Callbacks run under the lock on purpose: Remove() waits for them, which
    // is what makes it safe to destroy what a removed callback reads.
    MutexLock lock(&mu_);
    for (const auto& [key, child] : children_) {
      Sample sample;
      sample.label_values = child.label_values;
      sample.value = child.callback ? child.callback() : 0.0;
      family.samples.push_back(std::move(sample));
    }
  }
  SortSamples(&family.samples);
  out->push_back(std::move(family));
}

// ---- Registry ----

absl::Status Registry::CheckFamily(absl::string_view name, absl::string_view help, MetricType type,
                                   const std::vector<std::string>& label_names) const {
  if (absl::Status s = ValidateMetricName(name); !s.ok()) return s;
  if (help.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("metric \"", name, "\": help text is empty"));
  }
  if (type == MetricType::kCounter &&
      (name.size() <= 6 || name.substr(name.size() - 6) != "_total")) {
    return absl::InvalidArgumentError(
        absl::StrCat("counter \"", name, "\": counter names must end in \"_total\""));
  }
  absl::flat_hash_set<absl::string_view> seen;
  for (const std::string& label : label_names) {
    if (absl::Status s = ValidateLabelName(label, type == MetricType::kHistogram); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("metric \"", name, "\": ", s.message()));
    }
    if (!seen.insert(label).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("metric \"", name, "\": label \"", label, "\" is listed twice"));
    }
  }
  for (const std::string& series : SeriesNames(name, type)) {
    if (series_names_.contains(series)) {
      return absl::AlreadyExistsError(absl::StrCat("metric \"", name, "\": series name \"", series,
                                                   "\" is already registered"));
    }
  }
  return absl::OkStatus();
}

void Registry::Reserve(absl::string_view name, MetricType type) {
  for (std::string& series : SeriesNames(name, type)) series_names_.insert(std::move(series));
}

absl::StatusOr<CounterFamily*> Registry::AddCounter(absl::string_view name, absl::string_view help,
                                                    std::vector<std::string> label_names) {
  MutexLock lock(&mu_);
  if (absl::Status s = CheckFamily(name, help, MetricType::kCounter, label_names); !s.ok())
    return s;
  auto* family =
      new CounterFamily(std::string(name), std::string(help), std::move(label_names), nullptr);
  entries_.push_back({std::unique_ptr<Collectable>(family), {std::string(name)}});
  Reserve(name, MetricType::kCounter);
  return family;
}

absl::StatusOr<GaugeFamily*> Registry::AddGauge(absl::string_view name, absl::string_view help,
                                                std::vector<std::string> label_names) {
  MutexLock lock(&mu_);
  if (absl::Status s = CheckFamily(name, help, MetricType::kGauge, label_names); !s.ok()) return s;
  auto* family =
      new GaugeFamily(std::string(name), std::string(help), std::move(label_names), nullptr);
  entries_.push_back({std::unique_ptr<Collectable>(family), {std::string(name)}});
  Reserve(name, MetricType::kGauge);
  return family;
}

absl::StatusOr<HistogramFamily*> Registry::AddHistogram(absl::string_view name,
                                                        absl::string_view help,
                                                        std::vector<double> bucket_bounds,
                                                        std::vector<std::string> label_names) {
  if (absl::Status s = ValidateBucketBounds(bucket_bounds); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("histogram \"", name, "\": ", s.message()));
  }
  if (!bucket_bounds.empty() && std::isinf(bucket_bounds.back())) bucket_bounds.pop_back();
  MutexLock lock(&mu_);
  if (absl::Status s = CheckFamily(name, help, MetricType::kHistogram, label_names); !s.ok()) {
    return s;
  }
  auto* family =
      new HistogramFamily(std::string(name), std::string(help), std::move(label_names),
                          std::make_shared<const std::vector<double>>(std::move(bucket_bounds)));
  entries_.push_back({std::unique_ptr<Collectable>(family), {std::string(name)}});
  Reserve(name, MetricType::kHistogram);
  return family;
}

absl::StatusOr<CallbackGaugeFamily*> Registry::AddCallbackGauge(
    absl::string_view name, absl::string_view help, std::vector<std::string> label_names) {
  MutexLock lock(&mu_);
  if (absl::Status s = CheckFamily(name, help, MetricType::kGauge, label_names); !s.ok()) return s;
  auto* family =
      new CallbackGaugeFamily(std::string(name), std::string(help), std::move(label_names));
  entries_.push_back({std::unique_ptr<Collectable>(family), {std::string(name)}});
  Reserve(name, MetricType::kGauge);
  return family;
}

absl::Status Registry::AddCollector(std::unique_ptr<Collector> collector) {
  if (collector == nullptr) return absl::InvalidArgumentError("AddCollector: null collector");
  std::vector<Collector::Descriptor> descriptors = collector->Describe();
  MutexLock lock(&mu_);
  // Check every family first (including against each other) so a failure
  // reserves nothing.
  absl::flat_hash_set<std::string> own_series;
  for (const Collector::Descriptor& d : descriptors) {
    // Collectors write their own help; the registry only checks names here.
    if (absl::Status s = CheckFamily(d.name, "-", d.type, {}); !s.ok()) return s;
    for (std::string& series : SeriesNames(d.name, d.type)) {
      if (!own_series.insert(series).second) {
        return absl::AlreadyExistsError(
            absl::StrCat("collector: series name \"", series, "\" is described twice"));
      }
    }
  }
  Entry entry{std::move(collector), {}};
  for (const Collector::Descriptor& d : descriptors) {
    entry.names.insert(d.name);
    Reserve(d.name, d.type);
  }
  entries_.push_back(std::move(entry));
  return absl::OkStatus();
}

std::vector<MetricFamilySnapshot> Registry::Collect() const {
  std::vector<MetricFamilySnapshot> out;
  {
    MutexLock lock(&mu_);
    std::vector<MetricFamilySnapshot> batch;
    absl::flat_hash_set<std::string> emitted;
    for (const Entry& entry : entries_) {
      batch.clear();
      emitted.clear();
      entry.source->Collect(&batch);
      for (MetricFamilySnapshot& family : batch) {
        // Drop what the source did not declare (see Collector::Describe), a
        // second family of the same name, and empty families (nothing to expose).
        if (family.samples.empty() || !entry.names.contains(family.name) ||
            !emitted.insert(family.name).second) {
          continue;
        }
        out.push_back(std::move(family));
      }
    }
  }
  std::sort(
      out.begin(), out.end(),
      [](const MetricFamilySnapshot& a, const MetricFamilySnapshot& b) { return a.name < b.name; });
  return out;
}

std::string Registry::Serialize() const { return SerializeText(Collect()); }

}  // namespace otaro::metrics
