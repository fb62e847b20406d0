// The three metric kinds a family hands out. Their update methods are on the
// request path, so each is a handful of relaxed atomic operations: no locks, no
// allocation. Memory order is relaxed because a scrape only needs every update
// to land eventually, not an order between different metrics.
#ifndef OTARO_SERVER_METRICS_METRIC_H_
#define OTARO_SERVER_METRICS_METRIC_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace otaro::metrics {

// A monotonically increasing value. Whole increments (the common "one more
// request") go to an integer atomic with fetch_add, which never retries under
// contention; fractional increments (seconds, bytes as double) go to a double
// updated by compare-and-swap. Value() adds the two.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Increment() { whole_.fetch_add(1, std::memory_order_relaxed); }
  // Negative and NaN amounts are dropped: a counter never goes down, and a bad
  // amount on the request path should not take the server down.
  void Increment(double amount);

  double Value() const;

 private:
  std::atomic<uint64_t> whole_{0};
  std::atomic<double> fraction_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Increment(double amount = 1.0) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void Decrement(double amount = 1.0) { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Counts observations into buckets by upper bound (value <= bound), plus the
// sum. Buckets are stored non-cumulative (one increment per Observe) and summed
// at scrape time, where the cost belongs.
class Histogram {
 public:
  // `bounds` must already have passed ValidateBucketBounds (a family checks it
  // once at registration and shares it between its children).
  explicit Histogram(std::shared_ptr<const std::vector<double>> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double value);

  const std::vector<double>& bounds() const { return *bounds_; }
  // Cumulative counts, bounds().size() + 1 entries (the last is +Inf, i.e. the
  // total count), and the sum of observations.
  std::vector<uint64_t> CumulativeCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<const std::vector<double>> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_->size() + 1.
  std::atomic<double> sum_{0.0};
};

// Bucket bounds must be finite and strictly increasing; a trailing +Inf is
// allowed (and dropped by the registry, which always adds its own).
absl::Status ValidateBucketBounds(absl::Span<const double> bounds);

// `count` bounds start, start*factor, start*factor^2, ... and start, start+width,
// start+2*width, .... Each bound is rounded to 15 significant digits so float
// error does not leak into the `le` label (0.30000000000000004 becomes 0.3).
// They do not validate their arguments: a bad start/factor/width yields bounds
// that AddHistogram rejects with a message naming them, so there is one error
// path, at registration.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
std::vector<double> LinearBuckets(double start, double width, int count);

}  // namespace otaro::metrics

#endif  // OTARO_SERVER_METRICS_METRIC_H_
