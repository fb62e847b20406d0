// SEFP GEMV benchmark: y = Q(W, m) x at every m, for LLaMA-sized shapes, against
// this machine's measured memory bandwidth and a float32 GEMV baseline; and the
// batched product Y = X Q(W, m)^T (decode of many sequences, prefill) with every
// SIMD path this CPU has, against OpenBLAS sgemm on the float32 weights.
//
// Matrices are rotated among enough copies that the working set exceeds the LLC
// several times over, so every call streams its weights from DRAM (the decode
// regime); "GB/s" counts the SEFP bytes the kernel must read at m:
// (m + 1)/8 + 1/64 bytes per weight. "of_bw" = GB/s / measured stream-read GB/s
// with the same number of threads.
//
//   bazel build -c opt //sefp/bench:sefp_gemv_bench
//   bazel-bin/sefp/bench/sefp_gemv_bench --benchmark_counters_tabular=true
#include <cblas.h>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "sefp/format.h"
#include "sefp/kernels/gemm.h"
#include "sefp/kernels/thread_pool.h"
#include "sefp/layout.h"

namespace otaro::sefp {
namespace {

constexpr size_t kColdBytes = 256ull << 20;  // working set per benchmark: 8x a 32 MiB LLC
constexpr size_t kStreamBytes = 1ull << 30;

int AllThreads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

ThreadPool* Pool(int threads) {
  static std::vector<std::unique_ptr<ThreadPool>> pools(256);
  if (!pools[threads]) pools[threads] = std::make_unique<ThreadPool>(threads);
  return pools[threads].get();
}

// --- memory bandwidth: a streaming read with AVX2 loads ------------------------
__attribute__((target("avx2"))) uint64_t SumAvx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t out[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), s);
  return out[0] + out[1] + out[2] + out[3];
}

uint8_t* StreamBuffer() {
  static uint8_t* buf = [] {
    auto* b = static_cast<uint8_t*>(std::aligned_alloc(64, kStreamBytes));
    for (size_t i = 0; i < kStreamBytes; i += 8) *reinterpret_cast<uint64_t*>(b + i) = i;
    return b;
  }();
  return buf;
}

void StreamRead(int threads) {
  uint8_t* buf = StreamBuffer();
  std::vector<uint64_t> sink(threads);
  Pool(threads)->ParallelFor(threads, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const size_t chunk = kStreamBytes / threads / 128 * 128;
      sink[t] = SumAvx2(buf + t * chunk, chunk);
    }
  });
  benchmark::DoNotOptimize(sink.data());
}

double g_bandwidth[257];  // GB/s by thread count, measured once

double MeasureBandwidth(int threads) {
  if (g_bandwidth[threads] > 0) return g_bandwidth[threads];
  StreamRead(threads);  // warm-up (page faults)
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    StreamRead(threads);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, kStreamBytes / s / 1e9);
  }
  return g_bandwidth[threads] = best;
}

void BM_StreamRead(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  MeasureBandwidth(threads);
  for (auto _ : state) StreamRead(threads);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(kStreamBytes) * state.iterations(),
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

// --- SEFP GEMV -------------------------------------------------------------------
struct Fixture {
  std::vector<PackedMatrix> copies;
  std::vector<float> x;
};

Fixture* GetFixture(int64_t n, int64_t k) {
  static std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Fixture>> cache;
  auto& f = cache[{n, k}];
  if (f) return f.get();
  f = std::make_unique<Fixture>();
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n * k));
  for (auto& v : w) v = normal(rng);
  auto t = EncodeTensor("bench", w, n, k);
  auto packed = PackedMatrix::Pack(*t);
  const size_t copies = std::max<size_t>(1, kColdBytes / packed->BytesRead(8) + 1);
  f->copies.push_back(std::move(*packed));
  for (size_t i = 1; i < copies; ++i) f->copies.push_back(f->copies[0].Clone());
  f->x.resize(k);
  for (auto& v : f->x) v = normal(rng) * 50;
  return f.get();
}

void BM_SefpGemv(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  const int m = static_cast<int>(state.range(2));
  const int threads = static_cast<int>(state.range(3));
  const bool cold = state.range(4) != 0;  // 0: one copy, cache-resident when it fits
  Fixture* f = GetFixture(n, k);
  const size_t rotation = cold ? f->copies.size() : 1;
  std::vector<float> y(n);
  GemmOptions opt{Reconstruction::kMidpoint, Isa::kAuto, threads > 1 ? Pool(threads) : nullptr};
  size_t i = 0;
  for (auto _ : state) {
    const PackedMatrix& w = f->copies[i++ % rotation];
    if (!Gemv(w, m, f->x, absl::MakeSpan(y), opt).ok()) state.SkipWithError("gemv failed");
    benchmark::DoNotOptimize(y.data());
  }
  const double bytes = static_cast<double>(f->copies[0].BytesRead(m));
  state.counters["GB/s"] = benchmark::Counter(bytes * state.iterations(), benchmark::Counter::kIsRate,
                                              benchmark::Counter::kIs1000);
  state.counters["bw_GB/s"] = MeasureBandwidth(threads);
  state.counters["B/weight"] = bytes / (n * k);
  state.SetLabel(std::string(IsaName(*ResolveIsa(Isa::kAuto))));
}

// --- float32 baseline: a plain blocked AVX2 GEMV --------------------------------
__attribute__((target("avx2,fma"))) void Fp32GemvRows(const float* w, const float* x, int64_t k,
                                                       int64_t r0, int64_t r1, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* row = w + r * k;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 32 <= k; c += 32) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + 8), _mm256_loadu_ps(x + c + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + 16), _mm256_loadu_ps(x + c + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + 24), _mm256_loadu_ps(x + c + 24), a3);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
    alignas(32) float l[8];
    _mm256_store_ps(l, s);
    float sum = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    for (; c < k; ++c) sum += row[c] * x[c];
    y[r] = sum;
  }
}

void BM_Fp32Gemv(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const size_t bytes = static_cast<size_t>(n * k) * 4;
  const size_t copies = std::max<size_t>(1, kColdBytes / bytes + 1);
  std::vector<std::unique_ptr<float, decltype(&std::free)>> ws;
  for (size_t i = 0; i < copies; ++i) {
    ws.emplace_back(static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64)), &std::free);
    for (int64_t j = 0; j < n * k; ++j) ws.back().get()[j] = static_cast<float>(j % 13) * 0.01f;
  }
  std::vector<float> x(k, 0.5f), y(n);
  size_t i = 0;
  for (auto _ : state) {
    const float* w = ws[i++ % copies].get();
    if (threads > 1) {
      Pool(threads)->ParallelFor(n, [&](int64_t r0, int64_t r1) { Fp32GemvRows(w, x.data(), k, r0, r1, y.data()); });
    } else {
      Fp32GemvRows(w, x.data(), k, 0, n, y.data());
    }
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * state.iterations(),
                                              benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["bw_GB/s"] = MeasureBandwidth(threads);
}

// --- batched products: every SIMD path, and OpenBLAS on float32 -----------------
// GFLOP/s = 2 N K batch / time; tok/s = batch rows per second through this matrix.
void BM_SefpGemm(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1);
  const int m = static_cast<int>(state.range(2));
  const int64_t batch = state.range(3);
  const auto isa = static_cast<Isa>(state.range(4));
  const int threads = static_cast<int>(state.range(5));
  Fixture* f = GetFixture(n, k);
  std::vector<float> x(static_cast<size_t>(batch * k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = f->x[i % k] * (1.0f + 0.001f * static_cast<float>(i / k));
  std::vector<float> y(static_cast<size_t>(batch * n));
  GemmOptions opt{Reconstruction::kMidpoint, isa, threads > 1 ? Pool(threads) : nullptr};
  for (auto _ : state) {
    if (!Gemm(f->copies[0], m, x, batch, absl::MakeSpan(y), opt).ok()) state.SkipWithError("gemm failed");
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * k * batch * state.iterations(),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(batch) * state.iterations(),
                                               benchmark::Counter::kIsRate);
  state.SetLabel(std::string(IsaName(isa)));
}

void BM_OpenBlasSgemm(benchmark::State& state) {
  const int64_t n = state.range(0), k = state.range(1), batch = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  openblas_set_num_threads(threads);
  std::vector<float> w(static_cast<size_t>(n * k)), x(static_cast<size_t>(batch * k), 0.5f),
      y(static_cast<size_t>(batch * n));
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 13) * 0.01f;
  for (auto _ : state) {
    // Y[batch, n] = X[batch, k] W[n, k]^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(batch), static_cast<int>(n),
                static_cast<int>(k), 1.0f, x.data(), static_cast<int>(k), w.data(), static_cast<int>(k),
                0.0f, y.data(), static_cast<int>(n));
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * k * batch * state.iterations(),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(batch) * state.iterations(),
                                               benchmark::Counter::kIsRate);
}

constexpr int64_t kGemmShapes[][2] = {{1536, 576}, {2048, 8192}};
constexpr int64_t kBatches[] = {1, 4, 8, 16, 64, 256};

void SefpGemmArgs(benchmark::internal::Benchmark* b) {
  for (auto& s : kGemmShapes) {
    for (int threads : {1, AllThreads()}) {
      for (int64_t batch : kBatches) {
        if (s[1] == 8192 && batch == 256) continue;  // seconds per call; 64 already shows the trend
        for (int m : {3, 7, 8}) {
          for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
            if (CpuSupports(isa)) b->Args({s[0], s[1], m, batch, static_cast<int64_t>(isa), threads});
          }
        }
      }
    }
  }
  b->ArgNames({"N", "K", "m", "batch", "isa", "thr"});
}

void BlasArgs(benchmark::internal::Benchmark* b) {
  for (auto& s : kGemmShapes) {
    for (int threads : {1, AllThreads()}) {
      for (int64_t batch : kBatches) {
        if (s[1] == 8192 && batch == 256) continue;
        b->Args({s[0], s[1], batch, threads});
      }
    }
  }
  b->ArgNames({"N", "K", "batch", "thr"});
}

constexpr int64_t kShapes[][2] = {{576, 576}, {1536, 576}, {576, 1536}, {2048, 8192}, {4096, 4096}};

void SefpArgs(benchmark::internal::Benchmark* b) {
  for (auto& s : kShapes) {
    for (int threads : {1, AllThreads()}) {
      for (int m = 2; m <= 8; ++m) b->Args({s[0], s[1], m, threads, 1});
    }
  }
  // Cache-resident runs (compute ceiling of the kernel, no DRAM traffic).
  for (int m : {3, 8}) b->Args({576, 1536, m, 1, 0});
  b->ArgNames({"N", "K", "m", "thr", "cold"});
}

void Fp32Args(benchmark::internal::Benchmark* b) {
  for (auto& s : kShapes) {
    for (int threads : {1, AllThreads()}) b->Args({s[0], s[1], threads});
  }
  b->ArgNames({"N", "K", "thr"});
}

BENCHMARK(BM_StreamRead)->Arg(1)->Arg(AllThreads())->ArgName("thr")->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SefpGemv)->Apply(SefpArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Fp32Gemv)->Apply(Fp32Args)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_SefpGemm)->Apply(SefpGemmArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_OpenBlasSgemm)->Apply(BlasArgs)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace otaro::sefp

BENCHMARK_MAIN();
