// A bounded, deterministic fuzz run that needs no libFuzzer (so it runs under gcc
// in CI, and under --config=asan): the seed files, then thousands of structured
// mutations of them, through the same entry point as the libFuzzer target.
// The test fails by crashing (or by a sanitizer report): the reader must turn every
// input into an error or a valid checkpoint.
#include <cstdint>
#include <cstring>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "sefp/checkpoint.h"
#include "sefp/fuzz/fuzz_seeds.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace otaro::sefp::fuzz {
namespace {

constexpr int kMutations = 30000;

int RunInput(const std::string& s) {
  // A copy of exactly s.size() bytes: a sanitizer build then catches any overread.
  std::vector<uint8_t> buf(s.begin(), s.end());
  return LLVMFuzzerTestOneInput(buf.data(), buf.size());
}

std::string Mutate(std::string s, std::mt19937_64* rng) {
  static const char* kTokens[] = {"\"", "{", "}", "[", "]", ",", ":", "0", "-1", "1e30", "18446744073709551615",
                                  "\"U8\"", "\"I8\"", "\"F32\"", "null", "\\u0000", "9999999999"};
  auto pick = [&](uint64_t n) { return n == 0 ? 0 : static_cast<size_t>((*rng)() % n); };
  const int ops = 1 + static_cast<int>(pick(4));
  for (int i = 0; i < ops; ++i) {
    switch (pick(8)) {
      case 0:  // flip a bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1 << pick(8));
        break;
      case 1:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      case 2: {  // insert a JSON token into the header region
        const size_t at = pick(std::min<size_t>(s.size(), 2048) + 1);
        s.insert(at, kTokens[pick(std::size(kTokens))]);
        break;
      }
      case 3:  // erase a span
        if (!s.empty()) {
          const size_t at = pick(s.size());
          s.erase(at, 1 + pick(16));
        }
        break;
      case 4:  // tamper with the header length
        if (s.size() >= 8) {
          uint64_t n;
          std::memcpy(&n, s.data(), 8);
          const uint64_t choices[] = {0, 1, n - 1, n + 1, n * 2, s.size(), s.size() - 8, ~0ull, 1ull << 40};
          n = choices[pick(std::size(choices))];
          std::memcpy(s.data(), &n, 8);
        }
        break;
      case 5:  // change a digit in the header (offsets, shapes)
        for (int tries = 0; tries < 32 && !s.empty(); ++tries) {
          const size_t at = pick(std::min<size_t>(s.size(), 2048));
          if (s[at] >= '0' && s[at] <= '9') {
            s[at] = static_cast<char>('0' + pick(10));
            break;
          }
        }
        break;
      case 6:  // random byte in the data section
        if (s.size() > 16) s[s.size() - 1 - pick(s.size() / 2)] = static_cast<char>(pick(256));
        break;
      default:  // duplicate a chunk
        if (!s.empty()) {
          const size_t at = pick(s.size());
          s.insert(pick(s.size()), s.substr(at, 1 + pick(64)));
        }
        break;
    }
  }
  return s;
}

TEST(CheckpointFuzzTest, SeedsAreValid) {
  const auto seeds = SeedFiles();
  ASSERT_GE(seeds.size(), 4u);
  for (size_t i = 0; i + 1 < seeds.size(); ++i) {
    auto r = CheckpointReader::FromBuffer(
        {reinterpret_cast<const uint8_t*>(seeds[i].data()), seeds[i].size()});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE((*r)->LoadAll().ok());
    EXPECT_EQ(RunInput(seeds[i]), 0);
  }
}

TEST(CheckpointFuzzTest, BoundedDeterministicMutations) {
  const auto seeds = SeedFiles();
  std::mt19937_64 rng(20261123);
  int accepted = 0;
  for (int i = 0; i < kMutations; ++i) {
    const std::string input = Mutate(seeds[i % seeds.size()], &rng);
    RunInput(input);
    auto r = CheckpointReader::FromBuffer({reinterpret_cast<const uint8_t*>(input.data()), input.size()});
    if (r.ok() && (*r)->LoadAll().ok()) ++accepted;
  }
  // Some mutations (data-section bytes) keep the file valid; most must be refused.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, kMutations / 2);
}

}  // namespace
}  // namespace otaro::sefp::fuzz
