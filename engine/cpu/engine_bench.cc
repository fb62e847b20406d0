// In-process engine benchmark (prints figures, not a test): prefill and decode
// tokens/s of the CPU backend at each precision, thread count and batch size.
//   engine_bench MODEL [--bits 8,5,3] [--threads 1,2] [--batch 1] [--prompt 64] [--decode 32]
// Token values do not change the speed; prompts are fixed pseudo-random ids.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/loader.h"

namespace {

using otaro::engine::BatchStep;
using otaro::engine::Logits;
using otaro::engine::SequenceStep;

std::vector<int> ParseList(const char* text) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int v;
    if (!absl::SimpleAtoi(part, &v)) {
      std::fprintf(stderr, "not a number: %s\n", std::string(part).c_str());
      std::exit(2);
    }
    out.push_back(v);
  }
  return out;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [--bits 8,5,3] [--threads 1,2] [--batch 1] "
                         "[--prompt 64] [--decode 32]\n", argv[0]);
    return 2;
  }
  std::vector<int> bits = {8, 5, 3}, threads = {1, 2}, batches = {1};
  int prompt = 64, decode = 32;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--bits") bits = ParseList(argv[i + 1]);
    else if (flag == "--threads") threads = ParseList(argv[i + 1]);
    else if (flag == "--batch") batches = ParseList(argv[i + 1]);
    else if (flag == "--prompt") prompt = ParseList(argv[i + 1])[0];
    else if (flag == "--decode") decode = ParseList(argv[i + 1])[0];
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  const auto t_load = std::chrono::steady_clock::now();
  auto model = otaro::engine::LoadModel(argv[1]);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const auto& cfg = (*model)->config;
  std::printf("model %s: %lld layers, hidden %lld, vocab %lld; loaded in %.1f s\n", argv[1],
              static_cast<long long>(cfg.num_layers), static_cast<long long>(cfg.hidden_size),
              static_cast<long long>(cfg.vocab_size), Seconds(t_load));
  std::printf("%6s %7s %5s %14s %14s %16s\n", "bits", "threads", "batch", "prefill tok/s",
              "decode tok/s", "linear GB/s dec");
  for (int t : threads) {
    otaro::engine::cpu::CpuBackendOptions options;
    options.num_threads = t;
    options.kv_cache.budget_bytes = 512ll << 20;
    auto backend = otaro::engine::cpu::CpuBackend::Create(model->get(), options);
    if (!backend.ok()) {
      std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
      return 1;
    }
    auto& kv = (*backend)->kv_cache();
    for (int batch : batches) {
      for (int m : bits) {
        std::vector<otaro::engine::SequenceHandle> seqs;
        BatchStep step;
        for (int b = 0; b < batch; ++b) {
          auto seq = kv.Allocate(prompt + decode, prompt + decode);
          if (!seq.ok()) {
            std::fprintf(stderr, "%s\n", seq.status().ToString().c_str());
            return 1;
          }
          seqs.push_back(*seq);
          SequenceStep s;
          s.seq = *seq;
          s.precision = m;
          for (int i = 0; i < prompt; ++i) s.tokens.push_back((i * 7919 + b * 31 + 13) % cfg.vocab_size);
          step.sequences.push_back(s);
        }
        Logits out;
        auto t0 = std::chrono::steady_clock::now();
        if (auto s = (*backend)->Forward(step, &out); !s.ok()) {
          std::fprintf(stderr, "%s\n", s.ToString().c_str());
          return 1;
        }
        const double prefill_s = Seconds(t0);
        t0 = std::chrono::steady_clock::now();
        for (int d = 0; d < decode; ++d) {
          for (auto& s : step.sequences) {
            s.start_position = prompt + d;
            s.tokens = {(d * 13 + 5) % static_cast<int>(cfg.vocab_size)};
          }
          if (auto s = (*backend)->Forward(step, &out); !s.ok()) {
            std::fprintf(stderr, "%s\n", s.ToString().c_str());
            return 1;
          }
        }
        const double decode_s = Seconds(t0);
        const double steps_per_s = decode / decode_s;
        std::printf("%6s %7d %5d %14.1f %14.1f %16.2f\n", ("E5M" + std::to_string(m)).c_str(), t,
                    batch, batch * prompt / prefill_s, batch * steps_per_s,
                    steps_per_s * (*model)->LinearBytesRead(m) / 1e9);
        std::fflush(stdout);
        for (auto s : seqs) (void)kv.Free(s);
      }
    }
  }
  return 0;
}
