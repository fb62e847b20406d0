#include "tools/fuzz/fuzz_driver.h"

#include <cstring>
#include <memory>
#include <random>

namespace otaro::fuzz {
namespace {

void RunOne(const std::vector<uint8_t>& input) {
  // An exact-size heap copy (no slack after the last byte).
  std::unique_ptr<uint8_t[]> buf(new uint8_t[input.empty() ? 1 : input.size()]);
  if (!input.empty()) std::memcpy(buf.get(), input.data(), input.size());
  LLVMFuzzerTestOneInput(buf.get(), input.size());
}

std::vector<uint8_t> Mutate(const std::vector<std::vector<uint8_t>>& seeds, std::mt19937_64& rng) {
  std::vector<uint8_t> x = seeds[rng() % seeds.size()];
  const int steps = 1 + static_cast<int>(rng() % 4);
  for (int s = 0; s < steps; ++s) {
    const size_t n = x.size();
    switch (rng() % 7) {
      case 0:  // flip a bit
        if (n) x[rng() % n] ^= static_cast<uint8_t>(1u << (rng() % 8));
        break;
      case 1: {  // boundary byte
        static const uint8_t kBytes[] = {0x00, 0x01, 0x7F, 0x80, 0xFF, '"', '{', '[', '\\'};
        if (n) x[rng() % n] = kBytes[rng() % sizeof(kBytes)];
        break;
      }
      case 2: {  // huge little-endian 32/64-bit value
        static const uint64_t kValues[] = {0,          1,          0x7FFFFFFF, 0xFFFFFFFF,
                                           1ull << 32, 1ull << 62, ~0ull,      0x8000000000000000ull};
        uint64_t v = kValues[rng() % (sizeof(kValues) / sizeof(kValues[0]))];
        size_t w = (rng() % 2) ? 8 : 4;
        if (n >= w) std::memcpy(x.data() + rng() % (n - w + 1), &v, w);
        break;
      }
      case 3:  // truncate
        if (n) x.resize(rng() % n);
        break;
      case 4: {  // delete a chunk
        if (n > 1) {
          size_t a = rng() % n, len = 1 + rng() % std::min<size_t>(16, n - a);
          x.erase(x.begin() + a, x.begin() + a + len);
        }
        break;
      }
      case 5: {  // duplicate a chunk
        if (n > 1 && n < (1u << 20)) {
          size_t a = rng() % n, len = 1 + rng() % std::min<size_t>(16, n - a);
          std::vector<uint8_t> chunk(x.begin() + a, x.begin() + a + len);
          x.insert(x.begin() + rng() % n, chunk.begin(), chunk.end());
        }
        break;
      }
      case 6: {  // splice with another seed
        const std::vector<uint8_t>& o = seeds[rng() % seeds.size()];
        if (n && !o.empty()) {
          size_t cut = rng() % n, from = rng() % o.size();
          x.resize(cut);
          x.insert(x.end(), o.begin() + from, o.end());
        }
        break;
      }
    }
  }
  return x;
}

}  // namespace

size_t RunSeedsAndMutations(const std::vector<std::vector<uint8_t>>& seeds, size_t mutations,
                            uint64_t rng_seed) {
  size_t runs = 0;
  for (const auto& s : seeds) {
    RunOne(s);
    ++runs;
  }
  if (seeds.empty()) return runs;
  std::mt19937_64 rng(rng_seed);
  for (size_t k = 0; k < mutations; ++k) {
    RunOne(Mutate(seeds, rng));
    ++runs;
  }
  return runs;
}

}  // namespace otaro::fuzz
