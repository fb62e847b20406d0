// Valid inputs for the checkpoint fuzzers: small SEFP checkpoints (with a short
// last group, zero groups, dense tensors) and a plain Hugging Face-style file.
#ifndef OTARO_SEFP_FUZZ_FUZZ_SEEDS_H_
#define OTARO_SEFP_FUZZ_FUZZ_SEEDS_H_

#include <string>
#include <vector>

namespace otaro::sefp::fuzz {

std::vector<std::string> SeedFiles();

}  // namespace otaro::sefp::fuzz

#endif  // OTARO_SEFP_FUZZ_FUZZ_SEEDS_H_
