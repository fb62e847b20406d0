// otaro-convert IN OUT: any supported model (Hugging Face folder, GGUF) to a
// SEFP checkpoint, the format otaro_server loads fastest. Run as
// `otaro convert IN OUT` through the otaro CLI, or directly.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/model/loader.h"
#include "sefp/format.h"

ABSL_FLAG(std::string, reconstruction, "midpoint",
          "Mantissa reconstruction the model is meant for: midpoint (default) or truncate.");

namespace {

// One line, redrawn in place on a terminal; plain lines every 10% otherwise.
class ProgressBar {
 public:
  ProgressBar() : tty_(::isatty(::fileno(stderr))) {}
  void Update(int64_t done, int64_t total, absl::string_view name) {
    const int width = 30;
    int filled = static_cast<int>(width * done / std::max<int64_t>(total, 1));
    if (tty_) {
      std::fprintf(stderr, "\r[%s%s] %3lld/%lld %-48.48s", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), static_cast<long long>(done),
                   static_cast<long long>(total), std::string(name).c_str());
      if (done == total) std::fputc('\n', stderr);
    } else if (done * 10 / total != last_decile_ || done == total) {
      last_decile_ = done * 10 / total;
      std::fprintf(stderr, "converted %lld/%lld tensors\n", static_cast<long long>(done),
                   static_cast<long long>(total));
    }
  }

 private:
  bool tty_;
  int64_t last_decile_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "otaro convert IN OUT [--reconstruction midpoint|truncate]\n\n"
      "Converts a Hugging Face model folder or a GGUF file into a SEFP checkpoint.");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 3) {
    std::fprintf(stderr, "usage: otaro convert IN OUT (see --help)\n");
    return 2;
  }
  auto mode = otaro::sefp::ParseReconstruction(absl::GetFlag(FLAGS_reconstruction));
  if (!mode.ok()) {
    std::fprintf(stderr, "otaro convert: --reconstruction: %s\n",
                 std::string(mode.status().message()).c_str());
    return 2;
  }
  const std::string in = args[1], out = args[2];
  ProgressBar bar;
  absl::Time start = absl::Now();
  auto summary = otaro::engine::ConvertToSefpCheckpoint(
      in, out, *mode,
      [&](int64_t done, int64_t total, absl::string_view name) { bar.Update(done, total, name); });
  if (!summary.ok()) {
    std::fprintf(stderr, "otaro convert: %s\n", summary.status().ToString().c_str());
    return 1;
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double linear = static_cast<double>(summary->linear_parameters);
  std::printf("wrote %s\n", out.c_str());
  std::printf("parameters        %lld (%lld in SEFP linear layers, %lld tensors)\n",
              static_cast<long long>(summary->parameters),
              static_cast<long long>(summary->linear_parameters),
              static_cast<long long>(summary->tensors));
  std::printf("reconstruction    %s\n", std::string(otaro::sefp::ReconstructionName(*mode)).c_str());
  std::printf("saturated groups  %lld\n", static_cast<long long>(summary->saturated_groups));
  std::printf("linear bytes read per token, by precision (SEFP.md: (m+1)/8 + 1/64 per weight):\n");
  for (int m = otaro::sefp::kMasterBits; m >= otaro::sefp::kMinBits; --m) {
    double bytes = linear * ((m + 1) / 8.0 + 1 / 64.0);
    std::printf("  E5M%d  %8.1f MiB\n", m, bytes / 1048576.0);
  }
  std::printf("time              %.1f s\n", seconds);
  return 0;
}
