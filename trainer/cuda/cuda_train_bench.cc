// CUDA training-step benchmark (prints figures, not a test): tokens/s of
// forward + backward of the CUDA training model at a fixed batch x window, and
// its device memory. The flags, the tokens and the output follow
// trainer/model/train_step_bench.cc (the CPU model), for comparison with it and
// with PyTorch on the same model, batch and window
// (tests/fixtures/trainer_gradients/torch_train_bench.py).
//   cuda_train_bench MODEL [--batch 4] [--seq 128] [--bits fp|2..8] [--steps 5]
//                    [--warmup 1] [--device 0]
// MODEL: a Hugging Face folder, a GGUF file or a llama2.c checkpoint.
// Tokens are the fixed pseudo-random ids (i * 7919 + 13) % vocab, every target
// scored. The times include what a tuning step pays: the upload of the masters
// in each forward and the download of the gradient in each backward.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "engine/model/loader.h"
#include "sefp/format.h"
#include "trainer/cuda/cuda_training_model.h"
#include "trainer/model/parameters.h"

namespace {

using otaro::trainer::Batch;
using otaro::trainer::Precision;

int64_t NonNegativeFlag(const char* name, const char* text, bool allow_zero) {
  int64_t v;
  if (!absl::SimpleAtoi(text, &v) || v < 0 || (v == 0 && !allow_zero)) {
    std::fprintf(stderr, "%s: not a %s number: %s\n", name, allow_zero ? "non-negative" : "positive",
                 text);
    std::exit(2);
  }
  return v;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double MiB(int64_t bytes) { return bytes / (1024.0 * 1024.0); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: cuda_train_bench MODEL [--batch B] [--seq T] [--bits fp|2..8] "
                 "[--steps S] [--warmup W] [--device D]\n");
    return 2;
  }
  const std::string path = argv[1];
  int64_t batch_size = 4, seq = 128, steps = 5, warmup = 1, device = 0;
  Precision precision;
  std::string bits = "fp";
  for (int i = 2; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", flag.c_str());
      return 2;
    }
    const char* value = argv[i + 1];
    if (flag == "--batch") {
      batch_size = NonNegativeFlag("--batch", value, false);
    } else if (flag == "--seq") {
      seq = NonNegativeFlag("--seq", value, false);
    } else if (flag == "--steps") {
      steps = NonNegativeFlag("--steps", value, false);
    } else if (flag == "--warmup") {
      warmup = NonNegativeFlag("--warmup", value, true);
    } else if (flag == "--device") {
      device = NonNegativeFlag("--device", value, true);
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
  for (int64_t i = 0; i < n; ++i) batch.targets.push_back(batch.inputs[(i + 1) % n]);

  auto model = otaro::trainer::CudaTrainingModel::Create(&*params, batch_size, seq,
                                                         static_cast<int>(device));
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  otaro::trainer::Parameters grads = otaro::trainer::Parameters::ZerosLike(*params);
  double forward_s = 0, backward_s = 0, loss = 0;
  int64_t peak_in_use = 0;
  for (int64_t step = 0; step < warmup + steps; ++step) {
    auto t0 = std::chrono::steady_clock::now();
    auto l = (*model)->Forward(batch, precision);
    if (!l.ok()) {
      std::fprintf(stderr, "forward: %s\n", l.status().ToString().c_str());
      return 1;
    }
    const double f = Seconds(t0);  // Forward returns after the losses reached the host
    t0 = std::chrono::steady_clock::now();
    absl::Status s = (*model)->Backward(1.0f, grads.values());
    if (!s.ok()) {
      std::fprintf(stderr, "backward: %s\n", s.ToString().c_str());
      return 1;
    }
    const double b = Seconds(t0);  // and Backward after the gradient did
    if (step >= warmup) {
      forward_s += f;
      backward_s += b;
    }
    loss = *l;
    auto in_use = (*model)->DeviceBytesInUse();
    if (in_use.ok()) peak_in_use = std::max(peak_in_use, *in_use);
  }
  const otaro::trainer::TrainingMemory mem = (*model)->Memory();
  const double tokens = static_cast<double>(n) * steps;
  std::printf("model %s: %lld parameters, batch %lld x %lld, CUDA device %lld (%s), bits %s\n",
              path.c_str(), static_cast<long long>(config.ParameterCount()),
              static_cast<long long>(batch_size), static_cast<long long>(seq),
              static_cast<long long>(device), (*model)->device_name().c_str(), bits.c_str());
  std::printf("loss %.4f; forward %.2f ms, backward %.2f ms per step (mean of %lld)\n", loss,
              1e3 * forward_s / steps, 1e3 * backward_s / steps, static_cast<long long>(steps));
  std::printf("train tokens/s (forward + backward): %.1f\n", tokens / (forward_s + backward_s));
  std::printf("device bytes: activations %.1f MiB, scratch (incl. gradient, workspace) %.1f MiB, "
              "Q(W,m) cache %.1f MiB, masters %.1f MiB, model total %.1f MiB; device in use at "
              "most %.1f MiB (driver: CUDA context, cuBLASLt and other processes included)\n",
              MiB(mem.activation_bytes), MiB(mem.scratch_bytes), MiB(mem.quantized_weight_bytes),
              MiB(mem.parameter_bytes), MiB(mem.Total()), MiB(peak_in_use));
  return 0;
}
