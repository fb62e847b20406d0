// Training-step benchmark (prints figures, not a test): tokens/s of forward +
// backward of a training backend (the CPU model, or the CUDA one with
// --device cuda: one driver for every device, through TrainingBackend) at a
// fixed batch x window, and its bytes (activations, scratch, Q(W, m) cache,
// masters -- the device's for CUDA; plus the host gradient buffer and the
// process's peak RSS). For comparison with PyTorch eager on the same model,
// batch and window (tests/fixtures/trainer_gradients/torch_train_bench.py).
//   train_step_bench MODEL [--device cpu|cuda] [--batch 4] [--seq 128]
//                    [--threads 2] [--bits fp|2..8] [--steps 5] [--warmup 1]
// For CUDA the times include what a tuning step pays: the upload of the
// masters in each forward and the download of the gradient in each backward.
// MODEL: a Hugging Face folder, a GGUF file or a llama2.c checkpoint (the
// masters come from the original weights, never from a SEFP checkpoint).
// Tokens are the fixed pseudo-random ids (i * 7919 + 13) % vocab, every target
// scored; token values do not change the speed.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "engine/model/loader.h"
#include "trainer/model/parameters.h"
#include "trainer/training_device.h"

namespace {

using otaro::trainer::Batch;
using otaro::trainer::Precision;

int64_t PositiveFlag(const char* name, const char* text) {
  int64_t v;
  if (!absl::SimpleAtoi(text, &v) || v <= 0) {
    std::fprintf(stderr, "%s: not a positive number: %s\n", name, text);
    std::exit(2);
  }
  return v;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double MiB(int64_t bytes) { return bytes / (1024.0 * 1024.0); }

// User + system CPU seconds of this process so far: on a shared machine the
// wall time depends on the neighbours, the CPU time much less.
double CpuSeconds() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: train_step_bench MODEL [--device cpu|cuda] [--batch B] [--seq T] "
                 "[--threads N] [--bits fp|2..8] [--steps S] [--warmup W]\n");
    return 2;
  }
  const std::string path = argv[1];
  int64_t batch_size = 4, seq = 128, threads = 2, steps = 5, warmup = 1;
  Precision precision;
  std::string bits = "fp";
  otaro::trainer::TrainingDevice device = otaro::trainer::TrainingDevice::kCpu;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const char* value = argv[i + 1];
    if (flag == "--device") {
      auto parsed = otaro::trainer::ParseTrainingDevice(value);
      if (!parsed.ok()) {
        std::fprintf(stderr, "--device: %s\n", parsed.status().ToString().c_str());
        return 2;
      }
      device = *parsed;
    } else if (flag == "--batch") {
      batch_size = PositiveFlag("--batch", value);
    } else if (flag == "--seq") {
      seq = PositiveFlag("--seq", value);
    } else if (flag == "--threads") {
      threads = PositiveFlag("--threads", value);
    } else if (flag == "--steps") {
      steps = PositiveFlag("--steps", value);
    } else if (flag == "--warmup") {
      warmup = std::atoll(value);
    } else if (flag == "--bits") {
      bits = value;
      if (bits != "fp") {
        auto m = otaro::sefp::ParsePrecision(bits);
        if (!m.ok()) {
          std::fprintf(stderr, "--bits: %s\n", m.status().ToString().c_str());
          return 2;
        }
        precision.quantized = true;
        precision.m = *m;
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }

  otaro::engine::ModelConfig config;
  auto source = otaro::engine::OpenModelSource(path, &config);
  if (!source.ok()) {
    std::fprintf(stderr, "%s\n", source.status().ToString().c_str());
    return 1;
  }
  auto params = otaro::trainer::Parameters::FromSource(**source, config);
  if (!params.ok()) {
    std::fprintf(stderr, "%s\n", params.status().ToString().c_str());
    return 1;
  }

  Batch batch;
  batch.batch_size = batch_size;
  batch.seq_len = seq;
  const int64_t n = batch_size * seq;
  for (int64_t i = 0; i < n; ++i) {
    batch.inputs.push_back(static_cast<int32_t>((i * 7919 + 13) % config.vocab_size));
  }
  for (int64_t i = 0; i < n; ++i) {
    batch.targets.push_back(batch.inputs[(i + 1) % n]);
  }

  auto backend = otaro::trainer::CreateTrainingBackend(device, &*params, batch_size, seq,
                                                      static_cast<int>(threads));
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
    return 1;
  }
  otaro::trainer::TrainingBackend& model = **backend;
  otaro::trainer::Parameters grads = otaro::trainer::Parameters::ZerosLike(*params);
  double forward_s = 0, backward_s = 0, loss = 0, cpu_s = 0;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    if (step == warmup) cpu_s = CpuSeconds();
    auto t0 = std::chrono::steady_clock::now();
    auto l = model.Forward(batch, precision);
    if (!l.ok()) {
      std::fprintf(stderr, "forward: %s\n", l.status().ToString().c_str());
      return 1;
    }
    const double f = Seconds(t0);
    t0 = std::chrono::steady_clock::now();
    absl::Status s = model.Backward(1.0f, grads.values());
    if (!s.ok()) {
      std::fprintf(stderr, "backward: %s\n", s.ToString().c_str());
      return 1;
    }
    const double b = Seconds(t0);
    if (step >= warmup) {
      forward_s += f;
      backward_s += b;
    }
    loss = *l;
  }
  cpu_s = CpuSeconds() - cpu_s;
  const otaro::trainer::TrainingMemory mem = model.Memory();
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  const double tokens = static_cast<double>(n) * steps;
  std::printf("model %s: %lld parameters, device %s, batch %lld x %lld, %lld threads, bits %s\n",
              path.c_str(), static_cast<long long>(config.ParameterCount()),
              std::string(otaro::trainer::TrainingDeviceName(device)).c_str(),
              static_cast<long long>(batch_size), static_cast<long long>(seq),
              static_cast<long long>(threads), bits.c_str());
  std::printf("loss %.4f; forward %.1f ms, backward %.1f ms per step (mean of %lld)\n", loss,
              1e3 * forward_s / steps, 1e3 * backward_s / steps, static_cast<long long>(steps));
  std::printf("train tokens/s (forward + backward): %.1f; CPU %.2f s per step\n",
              tokens / (forward_s + backward_s), cpu_s / steps);
  std::printf("bytes: activations %.1f MiB, scratch %.1f MiB, Q(W,m) cache %.1f MiB, masters "
              "%.1f MiB, model total %.1f MiB; + gradients %.1f MiB; peak RSS %.1f MiB\n",
              MiB(mem.activation_bytes), MiB(mem.scratch_bytes), MiB(mem.quantized_weight_bytes),
              MiB(mem.parameter_bytes), MiB(mem.Total()),
              MiB(static_cast<int64_t>(grads.values().size() * sizeof(float))),
              usage.ru_maxrss / 1024.0);
  return 0;
}
