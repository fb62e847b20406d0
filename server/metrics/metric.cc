#include "server/metrics/metric.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace otaro::metrics {
namespace {

// Largest double below which every integer is exact; whole amounts up to it
// can take the integer path without changing the sum.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

double RoundTo15Digits(double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.15g", value);
  return std::strtod(buf, nullptr);
}

}  // namespace

void Counter::Increment(double amount) {
  if (!(amount >= 0)) return;  // Also catches NaN.
  if (amount < kMaxExactInteger && amount == std::floor(amount)) {
    whole_.fetch_add(static_cast<uint64_t>(amount), std::memory_order_relaxed);
    return;
  }
  // libstdc++ implements atomic<double>::fetch_add as a compare-and-swap loop:
  // lock-free, retried only when another thread changed the value meanwhile.
  fraction_.fetch_add(amount, std::memory_order_relaxed);
}

double Counter::Value() const {
  return static_cast<double>(whole_.load(std::memory_order_relaxed)) +
         fraction_.load(std::memory_order_relaxed);
}

Histogram::Histogram(std::shared_ptr<const std::vector<double>> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_->size() + 1)) {
  // make_unique<T[]> value-initializes, but say it: every bucket starts at zero.
  for (size_t i = 0; i <= bounds_->size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  // First bound >= value: buckets are "less than or equal". NaN compares false
  // with everything and would land in the first bucket; the Go client puts it in
  // +Inf, and so do we.
  size_t index =
      std::isnan(value)
          ? bounds_->size()
          : static_cast<size_t>(std::lower_bound(bounds_->begin(), bounds_->end(), value) -
                                bounds_->begin());
  counts_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_->size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    running += counts_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

absl::Status ValidateBucketBounds(absl::Span<const double> bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    double b = bounds[i];
    bool last = i + 1 == bounds.size();
    if (std::isnan(b) || (std::isinf(b) && !(last && b > 0))) {
      return absl::InvalidArgumentError(absl::StrCat("histogram bucket bound #", i, " is ", b,
                                                     ": bounds must be finite (+Inf is implicit)"));
    }
    if (i > 0 && !(bounds[i - 1] < b)) {
      return absl::InvalidArgumentError(
          absl::StrCat("histogram bucket bounds must be strictly increasing: bound #", i - 1,
                       " is ", bounds[i - 1], ", bound #", i, " is ", b));
    }
  }
  return absl::OkStatus();
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  out.reserve(std::max(count, 0));
  for (int i = 0; i < count; ++i) out.push_back(RoundTo15Digits(start * std::pow(factor, i)));
  return out;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  std::vector<double> out;
  out.reserve(std::max(count, 0));
  for (int i = 0; i < count; ++i) out.push_back(RoundTo15Digits(start + width * i));
  return out;
}

}  // namespace otaro::metrics
