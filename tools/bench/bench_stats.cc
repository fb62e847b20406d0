#include "tools/bench/bench_stats.h"

#include <algorithm>
#include <cmath>

namespace otaro::bench {

double TimeToFirstToken(const RequestTrace& trace) {
  for (size_t i = 0; i < trace.chunk_seconds.size(); ++i) {
    if (trace.chunk_tokens[i] > 0) return trace.chunk_seconds[i];
  }
  return -1;
}

std::vector<double> InterTokenLatencies(const RequestTrace& trace) {
  std::vector<double> out;
  double previous = -1;
  for (size_t i = 0; i < trace.chunk_seconds.size(); ++i) {
    const int k = trace.chunk_tokens[i];
    if (k <= 0) continue;
    if (previous >= 0) {
      const double gap = (trace.chunk_seconds[i] - previous) / k;
      out.insert(out.end(), k, gap);
    } else if (k > 1) {
      // Tokens that came with the first one: no time between them.
      out.insert(out.end(), k - 1, 0.0);
    }
    previous = trace.chunk_seconds[i];
  }
  return out;
}

int TokenCount(const RequestTrace& trace) {
  int n = 0;
  for (int k : trace.chunk_tokens) n += k;
  return n;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * values.size());
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

Summary Summarize(const std::vector<RequestTrace>& traces, double wall_seconds) {
  Summary s;
  std::vector<double> ttft, itl;
  int succeeded = 0;
  for (const RequestTrace& t : traces) {
    ++s.requests;
    if (!t.ok) {
      if (s.errors++ == 0) s.first_error = t.error;
      continue;
    }
    ++succeeded;
    s.tokens += TokenCount(t);
    const double first = TimeToFirstToken(t);
    if (first >= 0) ttft.push_back(first);
    const std::vector<double> gaps = InterTokenLatencies(t);
    itl.insert(itl.end(), gaps.begin(), gaps.end());
  }
  s.ttft_p50 = Percentile(ttft, 50);
  s.ttft_p99 = Percentile(ttft, 99);
  s.itl_p50 = Percentile(itl, 50);
  s.itl_p99 = Percentile(itl, 99);
  if (wall_seconds > 0) {
    s.tokens_per_second = s.tokens / wall_seconds;
    s.requests_per_second = succeeded / wall_seconds;
  }
  return s;
}

}  // namespace otaro::bench
