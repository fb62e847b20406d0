// Load: N concurrent streaming clients at mixed precisions (E5M2..E5M8, some
// with a different prefill precision, some sampled) for a fixed time against
// the real otaro_server on stories260K, over loopback. Every call must succeed;
// the clients' time to first token and inter-token latency (p50/p99) are
// printed; after the load the scheduler is idle, the KV cache empty, and the
// server's resident memory no higher after a second round than after the first
// (no leak per request).
#include <atomic>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/reliability/serving.h"

namespace otaro::reliability {
namespace {

constexpr int kClients = 8;

struct RoundResult {
  int calls = 0;
  int errors = 0;
  int64_t tokens = 0;
  std::vector<double> ttft_seconds;
  std::vector<double> inter_token_seconds;
  std::string first_error;
};

// kClients threads stream for `duration`, each call at a precision of its own.
RoundResult RunRound(const StoriesServer& server, absl::Duration duration, int round) {
  RoundResult total;
  std::mutex mu;
  const absl::Time end = absl::Now() + duration;
  const std::vector<std::string> prompts = {"Once upon a time", "Lily and Ben", "The dog",
                                            "One day, a little bird", "The sun was"};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = server.Stub();
      RoundResult mine;
      for (int i = 0; absl::Now() < end; ++i) {
        const int bits = 2 + (c + i) % 7;  // every precision in flight at once
        otaro::v1::GenerateRequest request =
            Request(prompts[(c + i) % prompts.size()], bits, 24 + 8 * ((c + i) % 5));
        request.set_stop_at_eos(false);
        if (i % 3 == 1) request.mutable_prefill_precision()->set_mantissa_bits(8);
        if (i % 2 == 1) {
          request.mutable_sampling()->set_temperature(0.8f);
          request.mutable_sampling()->set_seed(1000 * round + 10 * c + i);
        }
        auto context = Context();
        const absl::Time start = absl::Now();
        absl::Time last = start;
        bool first = true;
        auto stream = stub->GenerateStream(context.get(), request);
        otaro::v1::GenerateChunk chunk;
        int64_t tokens = 0;
        while (stream->Read(&chunk)) {
          if (chunk.token_ids_size() == 0) continue;
          const absl::Time now = absl::Now();
          if (first) {
            mine.ttft_seconds.push_back(absl::ToDoubleSeconds(now - start));
            first = false;
          } else {
            // A chunk may carry several tokens (held back for UTF-8 or stop
            // strings): spread the gap over them.
            const double gap = absl::ToDoubleSeconds(now - last) / chunk.token_ids_size();
            for (int t = 0; t < chunk.token_ids_size(); ++t) mine.inter_token_seconds.push_back(gap);
          }
          last = now;
          tokens += chunk.token_ids_size();
        }
        grpc::Status status = stream->Finish();
        ++mine.calls;
        mine.tokens += tokens;
        if (!status.ok() || tokens != request.max_tokens()) {
          ++mine.errors;
          if (mine.first_error.empty()) {
            mine.first_error = absl::StrCat("E5M", bits, ": ", status.error_message(), " (",
                                            tokens, " of ", request.max_tokens(), " tokens)");
          }
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      total.calls += mine.calls;
      total.errors += mine.errors;
      total.tokens += mine.tokens;
      total.ttft_seconds.insert(total.ttft_seconds.end(), mine.ttft_seconds.begin(),
                                mine.ttft_seconds.end());
      total.inter_token_seconds.insert(total.inter_token_seconds.end(),
                                       mine.inter_token_seconds.begin(),
                                       mine.inter_token_seconds.end());
      if (total.first_error.empty()) total.first_error = mine.first_error;
    });
  }
  for (auto& client : clients) client.join();
  return total;
}

TEST(LoadTest, ConcurrentMixedPrecisionStreamsWithoutErrorsOrLeaks) {
  StoriesServer server("load", {"engine.max_batch_sequences=16"});
  const absl::Duration round_time = absl::Seconds(6);

  // Round 1 warms up allocators, thread pools and gRPC buffers.
  RoundResult first = RunRound(server, round_time, 1);
  ASSERT_TRUE(server.WaitIdle()) << "requests or KV blocks still held after the load";
  const int64_t rss_after_first = server.ResidentBytes();
  RoundResult second = RunRound(server, round_time, 2);
  ASSERT_TRUE(server.WaitIdle()) << "requests or KV blocks still held after the load";
  const int64_t rss_after_second = server.ResidentBytes();

  for (const RoundResult* r : {&first, &second}) {
    EXPECT_EQ(r->errors, 0) << r->first_error;
    EXPECT_GE(r->calls, kClients);
  }
  const double seconds = absl::ToDoubleSeconds(round_time);
  std::printf(
      "load: %d clients, %.0f s: %d calls, %lld tokens (%.0f tokens/s); "
      "TTFT p50 %.1f ms p99 %.1f ms; inter-token p50 %.2f ms p99 %.2f ms; "
      "RSS %.1f MiB after round 1, %.1f MiB after round 2\n",
      kClients, seconds, second.calls, static_cast<long long>(second.tokens),
      static_cast<double>(second.tokens) / seconds, 1e3 * Percentile(second.ttft_seconds, 0.5),
      1e3 * Percentile(second.ttft_seconds, 0.99), 1e3 * Percentile(second.inter_token_seconds, 0.5),
      1e3 * Percentile(second.inter_token_seconds, 0.99), rss_after_first / 1048576.0,
      rss_after_second / 1048576.0);
  // A second round as long as the first holds no more memory: anything kept
  // per request (thousands of them) would show. 8 MiB of slack for allocator
  // arenas and gRPC's buffer pools.
  ASSERT_GT(rss_after_first, 0);
  EXPECT_LT(rss_after_second, rss_after_first + 8 * 1048576)
      << "resident memory grew by " << (rss_after_second - rss_after_first) / 1048576.0
      << " MiB over " << second.calls << " calls";
  // The server counted every call as OK.
  EXPECT_EQ(server.Sample("otaro_scheduler_requests{state=\"running\"}"), 0);
}

}  // namespace
}  // namespace otaro::reliability
