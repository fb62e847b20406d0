// Runs a libFuzzer entry point (LLVMFuzzerTestOneInput) without libFuzzer, so
// fuzz targets also run as ordinary gcc-built cc_tests: every seed, then a
// fixed number of deterministic mutations of the seeds (bit flips, boundary
// bytes, huge 32/64-bit fields, truncations, splices, deletions). The real
// coverage-guided run is tools/fuzz/run_*_fuzz.sh (clang, -fsanitize=fuzzer).
#ifndef OTARO_TOOLS_FUZZ_FUZZ_DRIVER_H_
#define OTARO_TOOLS_FUZZ_FUZZ_DRIVER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace otaro::fuzz {

// Returns the number of inputs run. Each input is passed in a heap buffer of
// exactly its size, so sanitizers see any out-of-bounds read.
size_t RunSeedsAndMutations(const std::vector<std::vector<uint8_t>>& seeds, size_t mutations,
                            uint64_t rng_seed);

}  // namespace otaro::fuzz

#endif  // OTARO_TOOLS_FUZZ_FUZZ_DRIVER_H_
