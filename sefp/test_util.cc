#include "sefp/test_util.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/testing/shared_data.h"
#include "nlohmann/json.hpp"

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

}  // namespace otaro::sefp::testing
