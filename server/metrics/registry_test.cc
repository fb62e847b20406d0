#include "server/metrics/registry.h"

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/exposition.h"
#include "server/metrics/metric.h"

namespace otaro::metrics {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr double kInf = std::numeric_limits<double>::infinity();

template <typename T>
T* Must(absl::StatusOr<T*> result) {
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? *result : nullptr;
}

// ---- Text format ----

TEST(ExpositionTest, ExactTextForCountersGaugesHistogramsWithEscaping) {
  Registry registry;
  CounterFamily* requests = Must(
      registry.AddCounter("otaro_requests_total", "Requests handled.\nBy \\method\\ \"and\" code.",
                          {"method", "code"}));
  ASSERT_NE(requests, nullptr);
  requests->WithLabels({"Generate", "OK"}).Increment();
  requests->WithLabels({"Generate", "OK"}).Increment(2);
  requests->WithLabels({"Embed", "INVALID_ARGUMENT"}).Increment(0.5);

  GaugeFamily* depth = Must(registry.AddGauge("otaro_queue_depth", "Queued requests.", {"model"}));
  depth->WithLabels({"a\"b\\c\nd"}).Set(-3.25);
  GaugeFamily* up = Must(registry.AddGauge("otaro_up", "Always 1."));
  up->WithLabels({}).Set(1);

  HistogramFamily* latency =
      Must(registry.AddHistogram("otaro_latency_seconds", "Latency.", {0.125, 0.5, 1}, {"op"}));
  Histogram& gen = latency->WithLabels({"gen"});
  gen.Observe(0.0625);
  gen.Observe(0.125);  // On a bound: "le" is inclusive.
  gen.Observe(0.25);
  gen.Observe(2);

  // Families sorted by name, children by label values, histogram buckets
  // cumulative, _count equal to the +Inf bucket.
  EXPECT_EQ(registry.Serialize(),
            "# HELP otaro_latency_seconds Latency.\n"
            "# TYPE otaro_latency_seconds histogram\n"
            "otaro_latency_seconds_bucket{op=\"gen\",le=\"0.125\"} 2\n"
            "otaro_latency_seconds_bucket{op=\"gen\",le=\"0.5\"} 3\n"
            "otaro_latency_seconds_bucket{op=\"gen\",le=\"1\"} 3\n"
            "otaro_latency_seconds_bucket{op=\"gen\",le=\"+Inf\"} 4\n"
            "otaro_latency_seconds_sum{op=\"gen\"} 2.4375\n"
            "otaro_latency_seconds_count{op=\"gen\"} 4\n"
            "# HELP otaro_queue_depth Queued requests.\n"
            "# TYPE otaro_queue_depth gauge\n"
            "otaro_queue_depth{model=\"a\\\"b\\\\c\\nd\"} -3.25\n"
            "# HELP otaro_requests_total Requests handled.\\nBy \\\\method\\\\ \"and\" code.\n"
            "# TYPE otaro_requests_total counter\n"
            "otaro_requests_total{method=\"Embed\",code=\"INVALID_ARGUMENT\"} 0.5\n"
            "otaro_requests_total{method=\"Generate\",code=\"OK\"} 3\n"
            "# HELP otaro_up Always 1.\n"
            "# TYPE otaro_up gauge\n"
            "otaro_up 1\n");
}

TEST(ExpositionTest, UnlabeledHistogramAndEmptyFamiliesOmitted) {
  Registry registry;
  HistogramFamily* h = Must(registry.AddHistogram("x_seconds", "X.", {1}));
  Must(registry.AddCounter("never_used_total", "Has no children."));
  h->WithLabels({}).Observe(3);
  EXPECT_EQ(registry.Serialize(),
            "# HELP x_seconds X.\n"
            "# TYPE x_seconds histogram\n"
            "x_seconds_bucket{le=\"1\"} 0\n"
            "x_seconds_bucket{le=\"+Inf\"} 1\n"
            "x_seconds_sum 3\n"
            "x_seconds_count 1\n");
}

TEST(ExpositionTest, EscapingRules) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd\te"), "a\\\\b\\\"c\\nd\te");
  // HELP does not escape double quotes.
  EXPECT_EQ(EscapeHelp("a\\b\"c\nd"), "a\\\\b\"c\\nd");
}

TEST(ExpositionTest, FormatValueMatchesGoClient) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(1), "1");
  EXPECT_EQ(FormatValue(100), "100");
  EXPECT_EQ(FormatValue(-0.5), "-0.5");
  EXPECT_EQ(FormatValue(12.5), "12.5");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(0.0025), "0.0025");
  EXPECT_EQ(FormatValue(0.0001), "0.0001");
  EXPECT_EQ(FormatValue(0.00001), "1e-05");
  EXPECT_EQ(FormatValue(123456), "123456");
  EXPECT_EQ(FormatValue(999999), "999999");
  EXPECT_EQ(FormatValue(1e6), "1e+06");
  EXPECT_EQ(FormatValue(1234567), "1.234567e+06");
  EXPECT_EQ(FormatValue(-2.5e-7), "-2.5e-07");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FormatValue(kInf), "+Inf");
  EXPECT_EQ(FormatValue(-kInf), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(ExpositionTest, InvalidUtf8LabelValuesAreRepaired) {
  Registry registry;
  GaugeFamily* g = Must(registry.AddGauge("g", "G.", {"l"}));
  Gauge& a = g->WithLabels({"a\xff"});
  // Repaired before lookup, so two invalid spellings of the same text share a
  // child instead of producing duplicate series.
  EXPECT_EQ(&a, &g->WithLabels({"a\xfe"}));
  a.Set(2);
  EXPECT_THAT(registry.Serialize(), HasSubstr("g{l=\"a\xEF\xBF\xBD\"} 2\n"));
  // Valid multi-byte text is untouched.
  g->WithLabels({"caf\xC3\xA9"}).Set(1);
  EXPECT_THAT(registry.Serialize(), HasSubstr("g{l=\"caf\xC3\xA9\"} 1\n"));
}

// ---- Names ----

TEST(NameValidationTest, MetricNames) {
  for (const char* ok : {"a", "_a", ":a", "a:b_c", "otaro_requests_total", "A9"}) {
    EXPECT_TRUE(ValidateMetricName(ok).ok()) << ok;
  }
  for (const char* bad : {"", "1a", "a-b", "a b", "a.b", "__reserved", "caf\xC3\xA9", "a{"}) {
    absl::Status s = ValidateMetricName(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr(std::string("\"") + bad + "\"")) << bad;
  }
}

TEST(NameValidationTest, LabelNames) {
  for (const char* ok : {"a", "_a", "a9", "git_commit", "_"}) {
    EXPECT_TRUE(ValidateLabelName(ok, true).ok()) << ok;
  }
  for (const char* bad : {"", "9a", "a:b", "a-b", "__name__", "__x"}) {
    EXPECT_EQ(ValidateLabelName(bad, false).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(ValidateLabelName("le", false).ok());
  EXPECT_EQ(ValidateLabelName("le", true).code(), absl::StatusCode::kInvalidArgument);
}

TEST(RegistryTest, RegistrationErrors) {
  Registry registry;
  EXPECT_EQ(registry.AddCounter("bad-name_total", "h").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(registry.AddCounter("requests", "h").status().message()),
              HasSubstr("_total"));
  EXPECT_EQ(registry.AddGauge("g", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddGauge("g", "h", {"a", "a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.AddGauge("g", "h", {"__a"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(registry.AddGauge("g_le", "h", {"le"}).ok());
  absl::Status le = registry.AddHistogram("h", "h", {1}, {"le"}).status();
  EXPECT_EQ(le.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(le.message()), HasSubstr("\"le\""));

  ASSERT_TRUE(registry.AddGauge("g", "h").ok());
  EXPECT_EQ(registry.AddGauge("g", "h").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.AddCallbackGauge("g", "h").status().code(), absl::StatusCode::kAlreadyExists);
  // A histogram writes name_bucket/_sum/_count: they clash with other families
  // in both directions.
  ASSERT_TRUE(registry.AddGauge("lat_count", "h").ok());
  EXPECT_EQ(registry.AddHistogram("lat", "h", {1}).status().code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(registry.AddHistogram("size", "h", {1}).ok());
  EXPECT_EQ(registry.AddGauge("size_sum", "h").status().code(), absl::StatusCode::kAlreadyExists);
  // A failed registration reserves nothing.
  EXPECT_TRUE(registry.AddGauge("lat", "h").ok());
}

TEST(RegistryDeathTest, WrongLabelCountAbortsNamingTheFamily) {
  Registry registry;
  CounterFamily* c = Must(registry.AddCounter("c_total", "C.", {"a", "b"}));
  EXPECT_DEATH(c->WithLabels({"only"}), "\"c_total\" expects 2 label value\\(s\\), got 1");
}

// ---- Histograms ----

TEST(HistogramTest, BucketHelpers) {
  EXPECT_THAT(ExponentialBuckets(1, 2, 5), ElementsAre(1, 2, 4, 8, 16));
  EXPECT_THAT(ExponentialBuckets(0.001, 10, 4), ElementsAre(0.001, 0.01, 0.1, 1));
  // Rounded to 15 digits: exactly the doubles the literals denote.
  EXPECT_THAT(LinearBuckets(0.1, 0.1, 3), ElementsAre(0.1, 0.2, 0.3));
  EXPECT_THAT(LinearBuckets(0, 5, 3), ElementsAre(0, 5, 10));
  EXPECT_TRUE(LinearBuckets(0, 5, 0).empty());
  EXPECT_TRUE(ExponentialBuckets(1, 2, -1).empty());
}

TEST(HistogramTest, BadBoundsRejectedAtRegistration) {
  Registry registry;
  // Helpers do not validate; registration does, with one message.
  EXPECT_THAT(
      std::string(registry.AddHistogram("a", "h", ExponentialBuckets(0, 2, 3)).status().message()),
      HasSubstr("strictly increasing"));
  EXPECT_FALSE(registry.AddHistogram("b", "h", LinearBuckets(1, -1, 3)).ok());
  EXPECT_FALSE(registry.AddHistogram("c", "h", {1, 1}).ok());
  EXPECT_FALSE(registry.AddHistogram("d", "h", {1, std::nan("")}).ok());
  EXPECT_FALSE(registry.AddHistogram("e", "h", {-kInf, 1}).ok());
  EXPECT_FALSE(registry.AddHistogram("f", "h", {1, kInf, 2}).ok());
  // A trailing +Inf is accepted and not written twice; no bounds at all is a
  // histogram with just +Inf.
  HistogramFamily* g = Must(registry.AddHistogram("g", "h", {1, kInf}));
  EXPECT_THAT(g->WithLabels({}).bounds(), ElementsAre(1));
  HistogramFamily* only_inf = Must(registry.AddHistogram("i", "h", {}));
  only_inf->WithLabels({}).Observe(5);
  EXPECT_THAT(registry.Serialize(), HasSubstr("i_bucket{le=\"+Inf\"} 1\ni_sum 5\ni_count 1\n"));
}

TEST(HistogramTest, ObservationsLandInTheRightBucket) {
  auto bounds = std::make_shared<const std::vector<double>>(std::vector<double>{-1, 0, 2.5, 10});
  Histogram h(bounds);
  h.Observe(-5);     // <= -1
  h.Observe(-1);     // <= -1 (inclusive)
  h.Observe(-kInf);  // <= -1
  h.Observe(0);      // <= 0
  h.Observe(1e-9);   // <= 2.5
  h.Observe(2.5);    // <= 2.5
  h.Observe(10);     // <= 10
  h.Observe(10.5);   // +Inf
  h.Observe(kInf);   // +Inf
  EXPECT_THAT(h.CumulativeCounts(), ElementsAre(3, 4, 6, 7, 9));
  Histogram n(bounds);
  n.Observe(std::nan(""));  // Like the Go client: +Inf bucket, sum becomes NaN.
  EXPECT_THAT(n.CumulativeCounts(), ElementsAre(0, 0, 0, 0, 1));
  EXPECT_TRUE(std::isnan(n.Sum()));
  Histogram s(bounds);
  s.Observe(1.5);
  s.Observe(2.25);
  EXPECT_EQ(s.Sum(), 3.75);
}

// ---- Metric semantics ----

TEST(CounterTest, WholeAndFractionalIncrementsAddUp) {
  Counter c;
  c.Increment();
  c.Increment(4);
  c.Increment(0.25);
  c.Increment(-3);            // Dropped: counters never go down.
  c.Increment(std::nan(""));  // Dropped.
  EXPECT_EQ(c.Value(), 5.25);
  Gauge g;
  g.Increment();
  g.Decrement(3.5);
  EXPECT_EQ(g.Value(), -2.5);
  g.Set(7);
  EXPECT_EQ(g.Value(), 7);
}

TEST(CallbackGaugeTest, ComputedAtScrapeTimeAndRemovable) {
  Registry registry;
  CallbackGaugeFamily* queue =
      Must(registry.AddCallbackGauge("otaro_queue_length", "Queued.", {"model"}));
  int length = 3;
  queue->Set({"m1"}, [&length] { return static_cast<double>(length); });
  EXPECT_THAT(registry.Serialize(), HasSubstr("otaro_queue_length{model=\"m1\"} 3\n"));
  length = 11;
  EXPECT_THAT(registry.Serialize(), HasSubstr("otaro_queue_length{model=\"m1\"} 11\n"));
  queue->Set({"m1"}, [] { return 0.5; });  // Replaces.
  EXPECT_THAT(registry.Serialize(), HasSubstr("otaro_queue_length{model=\"m1\"} 0.5\n"));
  queue->Remove({"m1"});
  EXPECT_EQ(registry.Serialize(), "");
}

class FakeCollector final : public Collector {
 public:
  std::vector<Descriptor> Describe() const override {
    return {{"fake_a", MetricType::kGauge}, {"fake_ops_total", MetricType::kCounter}};
  }
  void Collect(std::vector<MetricFamilySnapshot>* out) const override {
    for (const char* name : {"fake_a", "fake_undeclared", "fake_a", "fake_ops_total"}) {
      MetricFamilySnapshot f;
      f.name = name;
      f.help = "Fake.";
      f.type = absl::EndsWith(name, "_total") ? MetricType::kCounter : MetricType::kGauge;
      f.samples.push_back(Sample{{}, 1, {}, 0});
      out->push_back(std::move(f));
    }
  }
};

TEST(CollectorTest, OnlyDescribedFamiliesOnceEach) {
  Registry registry;
  ASSERT_TRUE(registry.AddCollector(std::make_unique<FakeCollector>()).ok());
  EXPECT_EQ(registry.Serialize(),
            "# HELP fake_a Fake.\n# TYPE fake_a gauge\nfake_a 1\n"
            "# HELP fake_ops_total Fake.\n# TYPE fake_ops_total counter\nfake_ops_total 1\n");
  // Its names are reserved like any family's.
  EXPECT_EQ(registry.AddGauge("fake_a", "h").status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.AddCollector(std::make_unique<FakeCollector>()).code(),
            absl::StatusCode::kAlreadyExists);
}

// ---- Concurrency ----

TEST(ConcurrencyTest, ManyThreadsExactTotals) {
  Registry registry;
  CounterFamily* counters = Must(registry.AddCounter("ops_total", "Ops.", {"kind"}));
  GaugeFamily* gauges = Must(registry.AddGauge("level", "Level."));
  HistogramFamily* hists = Must(registry.AddHistogram("size", "Size.", {1, 2}, {"kind"}));

  constexpr int kThreads = 8;
  constexpr int kIterations = 50000;
  std::atomic<bool> stop_scraping{false};
  std::atomic<int> scrapes{0};
  // A scraper running the whole time: reads must not disturb the writers.
  std::thread scraper([&] {
    while (!stop_scraping.load()) {
      std::string text = registry.Serialize();
      scrapes.fetch_add(1);
      (void)text;
    }
  });
  std::vector<Counter*> seen(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every thread races to create the same children.
      Counter& whole = counters->WithLabels({"whole"});
      Counter& quarter = counters->WithLabels({"quarter"});
      Gauge& level = gauges->WithLabels({});
      seen[t] = &whole;
      for (int i = 0; i < kIterations; ++i) {
        whole.Increment();
        quarter.Increment(0.25);  // Fractional path (CAS); quarters sum exactly.
        level.Increment(1);
        level.Decrement(0.5);
        // A fresh lookup every time on one series exercises the shared-lock path.
        hists->WithLabels({"x"}).Observe(i % 3);  // 0, 1, 2: buckets le=1 gets 2/3.
      }
    });
  }
  for (std::thread& t : threads) t.join();
  stop_scraping.store(true);
  scraper.join();
  EXPECT_GT(scrapes.load(), 0);

  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(seen[t], seen[0]);
  constexpr double kTotal = static_cast<double>(kThreads) * kIterations;
  EXPECT_EQ(counters->WithLabels({"whole"}).Value(), kTotal);
  EXPECT_EQ(counters->WithLabels({"quarter"}).Value(), kTotal * 0.25);
  EXPECT_EQ(gauges->WithLabels({}).Value(), kTotal * 0.5);
  Histogram& h = hists->WithLabels({"x"});
  // i % 3 over 50000 iterations: 16667 zeros, 16667 ones, 16666 twos.
  const uint64_t zeros = kThreads * 16667ull, ones = kThreads * 16667ull,
                 twos = kThreads * 16666ull;
  EXPECT_THAT(h.CumulativeCounts(),
              ElementsAre(zeros + ones, zeros + ones + twos, zeros + ones + twos));
  EXPECT_EQ(h.Sum(), static_cast<double>(ones + 2 * twos));
  EXPECT_THAT(registry.Serialize(), HasSubstr("ops_total{kind=\"whole\"} 400000\n"));
}

}  // namespace
}  // namespace otaro::metrics
