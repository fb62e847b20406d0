// otaro-bench: a client-side load generator against a running otaro_server,
// through the public API only (run as `otaro bench`).
//   otaro-bench --server host:port --bits 8,3 --concurrency 1,4,16 --requests N
//               --max_tokens 64 --prompt "..." [--mix] [--temperature T --top_p P]
// For each (bits, concurrency) it sends N GenerateStream requests (greedy unless
// --temperature, stop_at_eos=false, prefill and decode at E5M<bits>) with that many in flight,
// and prints, as the client saw them: time to first token p50/p99, inter-token
// latency p50/p99, aggregate generated tokens/s, requests/s and errors. With
// --mix, one row per concurrency whose requests cycle through the precisions.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/connection.h"
#include "grpcpp/grpcpp.h"
#include "otaro/v1/inference.grpc.pb.h"
#include "tools/bench/bench_stats.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "host:port of otaro_server.");
ABSL_FLAG(std::string, bits, "8,3", "Mantissa bits to test (prefill and decode), e.g. 8,5,3.");
ABSL_FLAG(std::string, concurrency, "1,4,16", "Requests in flight, e.g. 1,4,16.");
ABSL_FLAG(int, requests, 16, "Requests per (bits, concurrency).");
ABSL_FLAG(int, max_tokens, 64, "Tokens generated per request (EOS does not stop them).");
ABSL_FLAG(std::string, prompt, "Once upon a time, in a small village by the sea,",
          "Prompt text of every request.");
ABSL_FLAG(bool, mix, false,
          "One row per concurrency with the --bits precisions mixed: request i runs at "
          "bits[i % n] (prefill and decode), so concurrent streams differ in precision.");
ABSL_FLAG(double, temperature, 0,
          "Sampling temperature of every request; 0 = greedy. Chat clients sample (e.g. 0.7 "
          "with --top_p 0.9), which costs the server more per token than greedy.");
ABSL_FLAG(double, top_p, 1, "Nucleus sampling threshold, (0, 1] (with --temperature > 0).");
ABSL_FLAG(int, warmup, 1, "Requests sent (and not measured) before each measured run.");
ABSL_FLAG(double, timeout_seconds, 600, "Deadline of each request.");

namespace {

using otaro::bench::RequestTrace;
using otaro::bench::Summary;
using otaro::client::ConnectionOptions;

bool ParseList(const std::string& text, std::vector<int>* out) {
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::string digits(part);
    if (digits.size() > 3 && (digits.rfind("E5M", 0) == 0 || digits.rfind("e5m", 0) == 0)) {
      digits = digits.substr(3);
    }
    int v;
    if (!absl::SimpleAtoi(digits, &v) || v <= 0) return false;
    out->push_back(v);
  }
  return !out->empty();
}

RequestTrace RunOne(otaro::v1::Inference::Stub* stub, const ConnectionOptions& options,
                    const otaro::v1::GenerateRequest& request) {
  RequestTrace trace;
  auto context = otaro::client::NewContext(options);
  const auto t0 = std::chrono::steady_clock::now();
  auto since = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto stream = stub->GenerateStream(context.get(), request);
  otaro::v1::GenerateChunk chunk;
  while (stream->Read(&chunk)) {
    trace.chunk_seconds.push_back(since());
    trace.chunk_tokens.push_back(chunk.token_ids_size());
  }
  grpc::Status status = stream->Finish();
  trace.end_seconds = since();
  trace.ok = status.ok();
  if (!status.ok()) trace.error = otaro::client::DescribeError(options, "GenerateStream", status);
  return trace;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "otaro bench --server host:port --bits 8,3 --concurrency 1,4,16 --requests N "
      "--max_tokens 64 --prompt \"...\"\n\n"
      "Load generator against a running otaro_server (client-side latencies and throughput).");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 1) {
    std::fprintf(stderr, "otaro bench takes no positional arguments (see --help)\n");
    return 2;
  }
  std::vector<int> bits, concurrency;
  if (!ParseList(absl::GetFlag(FLAGS_bits), &bits)) {
    std::fprintf(stderr, "otaro bench: --bits: expected a list like 8,5,3\n");
    return 2;
  }
  if (!ParseList(absl::GetFlag(FLAGS_concurrency), &concurrency)) {
    std::fprintf(stderr, "otaro bench: --concurrency: expected a list like 1,4,16\n");
    return 2;
  }
  const int requests = absl::GetFlag(FLAGS_requests);
  const int max_tokens = absl::GetFlag(FLAGS_max_tokens);
  if (requests <= 0 || max_tokens <= 0 || absl::GetFlag(FLAGS_prompt).empty()) {
    std::fprintf(stderr, "otaro bench: --requests and --max_tokens must be positive and "
                         "--prompt non-empty\n");
    return 2;
  }
  const double temperature = absl::GetFlag(FLAGS_temperature);
  const double top_p = absl::GetFlag(FLAGS_top_p);
  if (!(temperature >= 0) || !(top_p > 0 && top_p <= 1)) {
    std::fprintf(stderr, "otaro bench: --temperature must be >= 0 and --top_p in (0, 1]\n");
    return 2;
  }
  const std::string sampling =
      temperature == 0 ? "greedy"
                       : absl::StrCat("temperature ", temperature, ", top_p ", top_p, ", seeded");

  ConnectionOptions options;
  options.address = absl::GetFlag(FLAGS_server);
  auto channel = otaro::client::Connect(options);
  auto stub = otaro::v1::Inference::NewStub(channel);

  // Is anyone there? A short deadline so a server that is down says so at once.
  ConnectionOptions probe = options;
  probe.timeout_seconds = 5;
  otaro::v1::ModelInfo info;
  {
    auto context = otaro::client::NewContext(probe);
    grpc::Status status = stub->GetModelInfo(context.get(), otaro::v1::GetModelInfoRequest(), &info);
    if (!status.ok()) {
      std::fprintf(stderr, "otaro bench: %s\n",
                   otaro::client::DescribeError(probe, "GetModelInfo", status).c_str());
      return 1;
    }
  }
  options.timeout_seconds = absl::GetFlag(FLAGS_timeout_seconds);
  std::printf("server %s: %s (%s), %u layers, hidden %u, device %s, SEFP kernels %s, "
              "lm_head %s\n",
              options.address.c_str(), info.source().c_str(), info.architecture().c_str(),
              info.num_layers(), info.hidden_size(), info.device().c_str(),
              info.kernel_isa().c_str(), info.lm_head_precision().c_str());
  std::printf("%d requests per row, %d tokens each (%s, stop_at_eos=false), prompt of %zu "
              "characters; times in ms, as the client saw them\n\n",
              requests, max_tokens, sampling.c_str(), absl::GetFlag(FLAGS_prompt).size());
  std::printf("| bits | concurrency | requests | errors | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 "
              "| tokens/s (all) | requests/s |\n|---|---|---|---|---|---|---|---|---|---|\n");
  std::fflush(stdout);

  int total_errors = 0;
  std::string first_error;
  // Each row: the precisions its requests cycle through.
  std::vector<std::vector<int>> rows;
  if (absl::GetFlag(FLAGS_mix)) {
    rows.push_back(bits);
  } else {
    for (int m : bits) rows.push_back({m});
  }
  for (const std::vector<int>& row : rows) {
    std::vector<otaro::v1::GenerateRequest> variants;
    std::string label;
    for (int m : row) {
      otaro::v1::GenerateRequest request;
      request.set_text(absl::GetFlag(FLAGS_prompt));
      request.mutable_decode_precision()->set_mantissa_bits(m);
      request.mutable_prefill_precision()->set_mantissa_bits(m);
      request.set_max_tokens(static_cast<uint32_t>(max_tokens));
      request.mutable_sampling()->set_temperature(static_cast<float>(temperature));
      request.mutable_sampling()->set_top_p(static_cast<float>(top_p));
      // A fixed seed: the same tokens, so the same work, in every run.
      request.mutable_sampling()->set_seed(1);
      request.set_stop_at_eos(false);
      for (int i = 0; i < absl::GetFlag(FLAGS_warmup); ++i) (void)RunOne(stub.get(), options, request);
      variants.push_back(std::move(request));
      label += (label.empty() ? "E5M" : "/E5M") + std::to_string(m);
    }
    for (int c : concurrency) {
      std::vector<RequestTrace> traces(requests);
      std::atomic<int> next{0};
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> workers;
      for (int w = 0; w < std::min(c, requests); ++w) {
        workers.emplace_back([&] {
          for (int i = next++; i < requests; i = next++) {
            traces[i] = RunOne(stub.get(), options, variants[i % variants.size()]);
          }
        });
      }
      for (auto& w : workers) w.join();
      const double wall =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const Summary s = otaro::bench::Summarize(traces, wall);
      std::printf("| %s | %d | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f |\n",
                  label.c_str(), c, s.requests, s.errors, 1e3 * s.ttft_p50, 1e3 * s.ttft_p99,
                  1e3 * s.itl_p50, 1e3 * s.itl_p99, s.tokens_per_second, s.requests_per_second);
      std::fflush(stdout);
      if (s.errors > 0 && first_error.empty()) first_error = s.first_error;
      total_errors += s.errors;
    }
  }
  if (total_errors > 0) {
    std::fprintf(stderr, "otaro bench: %d request(s) failed; the first: %s\n", total_errors,
                 first_error.c_str());
    return 1;
  }
  return 0;
}
