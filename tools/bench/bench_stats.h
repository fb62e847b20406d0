// What `otaro bench` measures for one request, and the statistics it prints.
#ifndef OTARO_TOOLS_BENCH_BENCH_STATS_H_
#define OTARO_TOOLS_BENCH_BENCH_STATS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace otaro::bench {

// One streamed request, as the client saw it (seconds since it was sent).
struct RequestTrace {
  bool ok = false;
  std::string error;
  // Each chunk that carried tokens: when it arrived and how many tokens.
  std::vector<double> chunk_seconds;
  std::vector<int> chunk_tokens;
  double end_seconds = 0;
};

// Time to first token: the arrival of the first chunk with a token; -1 if none.
double TimeToFirstToken(const RequestTrace& trace);
// Inter-token latencies after the first token: a chunk of k tokens that came
// g seconds after the previous one contributes k samples of g / k.
std::vector<double> InterTokenLatencies(const RequestTrace& trace);
int TokenCount(const RequestTrace& trace);

// Nearest-rank percentile (p in [0, 100]) of unsorted values; 0 if empty.
double Percentile(std::vector<double> values, double p);

struct Summary {
  int requests = 0;
  int errors = 0;
  std::string first_error;
  int64_t tokens = 0;
  double ttft_p50 = 0, ttft_p99 = 0;
  double itl_p50 = 0, itl_p99 = 0;
  double tokens_per_second = 0;    // all tokens of the successful requests / wall time
  double requests_per_second = 0;  // successful requests / wall time
};

Summary Summarize(const std::vector<RequestTrace>& traces, double wall_seconds);

}  // namespace otaro::bench

#endif  // OTARO_TOOLS_BENCH_BENCH_STATS_H_
