// otaro-make-model --shape llama-3.2-1b|smollm2-135m|tiny --out PATH [--seed 1]
// Writes a LLaMA-shaped model with random weights (~N(0, 0.02)) directly as a
// SEFP checkpoint, for benchmarks: speed does not depend on the values. The
// model has no tokenizer (prompts must be token ids). Run as `otaro make-model`.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "sefp/checkpoint.h"
#include "tools/make_model/random_model.h"

ABSL_FLAG(std::string, shape, "", "Model shape: llama-3.2-1b, smollm2-135m or tiny.");
ABSL_FLAG(std::string, out, "", "Where to write the SEFP checkpoint.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the random weights.");
ABSL_FLAG(double, stddev, 0.02, "Standard deviation of the random weights.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "otaro make-model --shape llama-3.2-1b|smollm2-135m|tiny --out PATH [--seed 1]\n\n"
      "Writes a LLaMA-shaped model with random weights as a SEFP checkpoint (benchmarks).");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string shape = absl::GetFlag(FLAGS_shape), out = absl::GetFlag(FLAGS_out);
  if (args.size() != 1 || shape.empty() || out.empty()) {
    std::fprintf(stderr, "usage: otaro make-model --shape %s --out PATH [--seed 1] (see --help)\n",
                 absl::StrJoin(otaro::tools::RandomModelShapes(), "|").c_str());
    return 2;
  }
  auto config = otaro::tools::RandomModelShape(shape);
  if (!config.ok()) {
    std::fprintf(stderr, "otaro make-model: --shape: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  const absl::Time start = absl::Now();
  otaro::tools::RandomModelOptions options;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.stddev = absl::GetFlag(FLAGS_stddev);
  int64_t last_decile = -1;
  options.progress = [&](int64_t done, int64_t total, const std::string&) {
    if (done * 10 / total != last_decile) {
      last_decile = done * 10 / total;
      std::fprintf(stderr, "made %lld/%lld tensors\n", static_cast<long long>(done),
                   static_cast<long long>(total));
    }
  };
  auto checkpoint = otaro::tools::MakeRandomCheckpoint(*config, options);
  if (!checkpoint.ok()) {
    std::fprintf(stderr, "otaro make-model: %s\n", checkpoint.status().ToString().c_str());
    return 1;
  }
  if (auto status = otaro::sefp::WriteCheckpoint(out, *checkpoint); !status.ok()) {
    std::fprintf(stderr, "otaro make-model: writing %s: %s\n", out.c_str(),
                 status.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s: %s shape, %lld parameters (%lld in linear layers), seed %llu, %.1f s\n",
              out.c_str(), shape.c_str(), static_cast<long long>(config->ParameterCount()),
              static_cast<long long>(config->LinearParameterCount()),
              static_cast<unsigned long long>(options.seed),
              absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}
