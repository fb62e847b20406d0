#include "sefp/test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

#include "common/testing/shared_data.h"
#include "nlohmann/json.hpp"
#include "sefp/format.h"

namespace otaro::sefp::testing {

float FloatFromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint32_t BitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

namespace {
uint32_t Hex(const nlohmann::json& j) {
  return static_cast<uint32_t>(std::stoul(j.get<std::string>(), nullptr, 16));
}
}  // namespace

Golden LoadGolden() {
  std::ifstream in(otaro::testing::SharedPath("design/sefp_golden.json"));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(ss.str());
  Golden g;
  g.group_size = j.at("group_size");
  g.master_bits = j.at("master_bits");
  g.min_exponent = j.at("exponent_range")[0];
  g.max_exponent = j.at("exponent_range")[1];
  g.zero_group_exponent = j.at("zero_group_exponent");
  for (const auto& jg : j.at("groups")) {
    GoldenGroup gg;
    for (const auto& h : jg.at("input")) gg.input.push_back(FloatFromBits(Hex(h)));
    gg.exponent = jg.at("exponent");
    gg.sign = jg.at("sign").get<std::vector<int>>();
    gg.q8 = jg.at("q8").get<std::vector<int>>();
    for (const auto& [mode, by_m] : jg.at("dequant").items()) {
      for (const auto& [m, vals] : by_m.items()) {
        auto& out = gg.dequant[mode][std::stoi(m)];
        for (const auto& h : vals) out.push_back(Hex(h));
      }
    }
    g.groups.push_back(std::move(gg));
  }
  const auto& jv = j.at("gemv");
  g.gemv.rows = jv.at("rows");
  g.gemv.cols = jv.at("cols");
  for (const auto& row : jv.at("W")) {
    for (const auto& h : row) g.gemv.w.push_back(FloatFromBits(Hex(h)));
  }
  for (const auto& h : jv.at("x")) g.gemv.x.push_back(FloatFromBits(Hex(h)));
  for (const auto& [m, vals] : jv.at("y_midpoint_float64").items()) {
    g.gemv.y_midpoint[std::stoi(m)] = vals.get<std::vector<double>>();
  }
  return g;
}

std::vector<float> RandomWeights(int64_t rows, int64_t cols, float scale, std::mt19937* rng) {
  std::normal_distribution<float> normal(0.0f, scale);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (auto& v : w) {
    const float u = uni(*rng);
    if (u < 0.01f) {
      v = 0.0f;
    } else if (u < 0.02f) {
      v = -0.0f;
    } else if (u < 0.03f) {
      v = normal(*rng) * 20.0f;  // outlier: sets its group's exponent
    } else {
      v = normal(*rng);
    }
  }
  // A few all-zero groups (some with -0.0).
  for (int64_t r = 0; r < rows; r += 7) {
    for (int64_t c = 0; c < std::min<int64_t>(cols, 64); ++c) w[r * cols + c] = (c % 3 == 0) ? -0.0f : 0.0f;
  }
  return w;
}

std::vector<float> MixedScaleWeights(int64_t rows, int64_t cols, std::mt19937* rng) {
  static constexpr float kScales[] = {1e-44f, 1e-40f, 1e-38f, 1e-7f,  3e-5f, 2e-3f, 0.02f,
                                      1.0f,   300.0f, 6e4f,   1e6f,   1e20f, 1e37f, 3e38f};
  std::uniform_int_distribution<int> pick(0, static_cast<int>(std::size(kScales)) - 1);
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += kGroupSize) {
      const int64_t end = std::min<int64_t>(cols, c0 + kGroupSize);
      const float scale = kScales[pick(*rng)];
      const float kind = uni(*rng);
      for (int64_t c = c0; c < end; ++c) {
        float& v = w[r * cols + c];
        const float u = uni(*rng);
        if (kind < 0.08f) {
          v = u < 0.5f ? -0.0f : 0.0f;  // an all-zero group
        } else if (u < 0.04f) {
          v = u < 0.02f ? -0.0f : 0.0f;
        } else if (u < 0.06f) {
          v = (u < 0.05f ? 1 : -1) * std::numeric_limits<float>::denorm_min() * (1 + c % 5);
        } else if (u < 0.08f) {
          v = std::ldexp(1.0f, static_cast<int>(c % 40) - 20);  // exact powers of two
        } else {
          // Clamped so that "huge" groups stay finite at 3e38 * 3.
          v = std::clamp(normal(*rng) * scale, -std::numeric_limits<float>::max(),
                         std::numeric_limits<float>::max());
        }
      }
    }
  }
  return w;
}

}  // namespace otaro::sefp::testing
