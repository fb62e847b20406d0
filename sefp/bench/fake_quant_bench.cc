// Fake quantization benchmark: the trainer's Q(W, m) (sefp::FakeQuantize) over one
// SmolLM2-135M MLP weight shape (576 x 1536), reported as CPU ns per weight.
//
// Single-threaded runs report CPU time (the machine is shared with other builds, so
// wall time is noisy); runs with a pool report wall time, since CPU time then counts
// the calling thread only.
//
//   bazel build -c opt //sefp/bench:fake_quant_bench
//   bazel-out/k8-opt/bin/sefp/bench/fake_quant_bench
#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/types/span.h"
#include "benchmark/benchmark.h"
#include "sefp/fake_quant.h"
#include "sefp/format.h"
#include "sefp/kernels/thread_pool.h"

namespace otaro::sefp {
namespace {

constexpr int64_t kRows = 576, kCols = 1536;

const std::vector<float>& Weights() {
  static const std::vector<float> w = [] {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> v(static_cast<size_t>(kRows * kCols));
    for (float& x : v) x = normal(rng);
    return v;
  }();
  return w;
}

void SetTimePerWeight(benchmark::State& state) {
  // kIsRate divides by the measured time; kInvert turns weights/s into s/weight,
  // printed with an SI prefix ("2.1ns").
  state.counters["per_weight"] = benchmark::Counter(
      static_cast<double>(kRows * kCols) * state.iterations(),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

Reconstruction ModeArg(int64_t v) { return v == 0 ? Reconstruction::kMidpoint : Reconstruction::kTruncate; }

void BM_FakeQuantize(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0));
  const Reconstruction mode = ModeArg(state.range(1));
  const int threads = static_cast<int>(state.range(2));
  const std::vector<float>& w = Weights();
  std::vector<float> out(w.size());
  std::unique_ptr<ThreadPool> pool = threads > 1 ? std::make_unique<ThreadPool>(threads) : nullptr;
  for (auto _ : state) {
    absl::Status s = FakeQuantize("bench", w, kRows, kCols, m, mode, absl::MakeSpan(out),
                                  /*stats=*/nullptr, pool.get());
    if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
    benchmark::DoNotOptimize(out.data());
  }
  SetTimePerWeight(state);
}

// The per-element reference the fast path is tested against (EncodeGroup, then
// DecodeWeight per weight): the shape of FakeQuantize before it was fused.
void BM_ReferencePerElement(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0));
  const Reconstruction mode = ModeArg(state.range(1));
  const std::vector<float>& w = Weights();
  std::vector<float> out(w.size());
  uint8_t sign[kGroupSize], q8[kGroupSize];
  int64_t saturated = 0;
  for (auto _ : state) {
    for (int64_t r = 0; r < kRows; ++r) {
      for (int64_t c0 = 0; c0 < kCols; c0 += kGroupSize) {
        const int n = static_cast<int>(std::min<int64_t>(kGroupSize, kCols - c0));
        const int8_t e = EncodeGroup(&w[r * kCols + c0], n, sign, q8, &saturated);
        for (int i = 0; i < n; ++i) out[r * kCols + c0 + i] = DecodeWeight(e, sign[i], q8[i], m, mode);
      }
    }
    benchmark::DoNotOptimize(out.data());
  }
  SetTimePerWeight(state);
}

int AllThreads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

BENCHMARK(BM_FakeQuantize)
    ->ArgNames({"m", "trunc", "thr"})
    ->Args({3, 0, 1})
    ->Args({4, 0, 1})
    ->Args({8, 0, 1})
    ->Args({4, 1, 1})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_FakeQuantize)
    ->ArgNames({"m", "trunc", "thr"})
    ->Args({4, 0, AllThreads()})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReferencePerElement)
    ->ArgNames({"m", "trunc"})
    ->Args({4, 0})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace otaro::sefp

BENCHMARK_MAIN();
