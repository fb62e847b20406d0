// Test helpers: the golden vectors of ../shared/design/sefp_golden.json, and random
// weight tensors of controlled scale.
#ifndef OTARO_SEFP_TEST_UTIL_H_
#define OTARO_SEFP_TEST_UTIL_H_

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace otaro::sefp::testing {

struct GoldenGroup {
  std::vector<float> input;
  int exponent = 0;
  std::vector<int> sign;
  std::vector<int> q8;
  // dequant[mode name][m] = float32 bit patterns
  std::map<std::string, std::map<int, std::vector<uint32_t>>> dequant;
};

struct GoldenGemv {
  int64_t rows = 0, cols = 0;
  std::vector<float> w;  // [rows, cols]
  std::vector<float> x;
  std::map<int, std::vector<double>> y_midpoint;  // by m
};

struct Golden {
  int group_size = 0;
  int master_bits = 0;
  int min_exponent = 0, max_exponent = 0;
  int zero_group_exponent = 0;
  std::vector<GoldenGroup> groups;
  GoldenGemv gemv;
};

// Loads design/sefp_golden.json from the shared folder (aborts the test if absent).
Golden LoadGolden();

float FloatFromBits(uint32_t bits);
uint32_t BitsOf(float f);

// rows x cols weights: normal(0, scale) with some outliers, exact zeros, -0.0 and
// all-zero groups sprinkled in, so every path of the format is exercised.
std::vector<float> RandomWeights(int64_t rows, int64_t cols, float scale, std::mt19937* rng);

// rows x cols weights where each group of 64 gets its own scale, from subnormal to
// the top of float32, so one tensor exercises every exponent regime (and
// saturation); some groups are all zero (with -0.0), some mix zeros, subnormals and
// exact powers of two into ordinary weights. All finite.
std::vector<float> MixedScaleWeights(int64_t rows, int64_t cols, std::mt19937* rng);

}  // namespace otaro::sefp::testing

#endif  // OTARO_SEFP_TEST_UTIL_H_
