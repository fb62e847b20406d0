// otaro-export MODEL OUT --format gguf|hf: a model otaro loads, written for
// llama.cpp (GGUF) or transformers (Hugging Face folder); engine/model/export.h
// says exactly what is written. Run as `otaro export ...` through the otaro CLI.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "engine/model/export.h"
#include "sefp/format.h"

ABSL_FLAG(std::string, format, "", "gguf (llama.cpp) or hf (a Hugging Face folder); required");
ABSL_FLAG(std::string, dtype, "f32", "f32, f16 or bf16: the weights' type (GGUF keeps norms in f32)");
ABSL_FLAG(std::string, bits, "",
          "2..8 or E5M2..E5M8: the linear layers at that SEFP precision (required for a SEFP "
          "checkpoint, whose own reconstruction is used)");
ABSL_FLAG(std::string, reconstruction, "midpoint",
          "with --bits and a float source: midpoint or truncate");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "otaro export: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "otaro export MODEL OUT --format gguf|hf [--dtype f32|f16|bf16] [--bits M]\n\n"
      "Writes MODEL (a master checkpoint, HF folder, GGUF, llama2.c, or a SEFP checkpoint\n"
      "read at --bits M) as a GGUF file llama.cpp loads or a Hugging Face folder.");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 3) return Fail("usage: otaro export MODEL OUT --format gguf|hf (see --help)");
  otaro::engine::ExportOptions options;
  if (absl::GetFlag(FLAGS_format).empty()) return Fail("--format gguf|hf is required");
  auto format = otaro::engine::ParseExportFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return Fail(absl::StrCat("--format: ", format.status().message()));
  options.format = *format;
  auto dtype = otaro::engine::ParseExportDType(absl::GetFlag(FLAGS_dtype));
  if (!dtype.ok()) return Fail(absl::StrCat("--dtype: ", dtype.status().message()));
  options.dtype = *dtype;
  if (!absl::GetFlag(FLAGS_bits).empty()) {
    auto bits = otaro::sefp::ParsePrecision(absl::GetFlag(FLAGS_bits));
    if (!bits.ok()) return Fail(absl::StrCat("--bits: ", bits.status().message()));
    options.bits = *bits;
  }
  auto mode = otaro::sefp::ParseReconstruction(absl::GetFlag(FLAGS_reconstruction));
  if (!mode.ok()) return Fail(absl::StrCat("--reconstruction: ", mode.status().message()));
  options.reconstruction = *mode;

  const absl::Time start = absl::Now();
  auto summary = otaro::engine::ExportModel(args[1], args[2], options);
  if (!summary.ok()) {
    std::fprintf(stderr, "otaro export: %s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  std::printf("%s: %lld tensors, %lld parameters from %s (%.1f s)\n", args[2],
              static_cast<long long>(summary->tensors),
              static_cast<long long>(summary->parameters), summary->source.c_str(),
              absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}
