// SweepPrecisions on the real stories260K model: the order and the model each
// precision is scored on, at most one model of each kind, and errors stop it.
#include "eval/precision_sweep.h"

#include <string>
#include <vector>

#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"
#include "sefp/format.h"

namespace otaro::eval {
namespace {

struct Built {
  std::vector<bool> quantized;  // every build_model call, in order
};

PrecisionSweep StoriesSweep(Built* built) {
  PrecisionSweep sweep;
  sweep.backend.num_threads = 1;
  sweep.build_model = [built](bool quantized) {
    built->quantized.push_back(quantized);
    engine::LoadOptions options;
    options.quantize = quantized;
    return engine::LoadModel(
        otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), options);
  };
  return sweep;
}

TEST(PrecisionSweepTest, QuantizedPrecisionsShareOneSefpModelThenFloat32) {
  Built built;
  std::vector<std::pair<int, int>> scored;  // (bits, precision)
  std::vector<bool> model_quantized;
  absl::Status status = SweepPrecisions(
      StoriesSweep(&built), {0, 8, 3, 5}, [&](const SweepPoint& at) {
        scored.push_back({at.bits, at.precision});
        model_quantized.push_back(at.model.quantized);
        return absl::OkStatus();
      });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(built.quantized, (std::vector<bool>{true, false}));
  EXPECT_EQ(scored, (std::vector<std::pair<int, int>>{
                        {8, 8}, {3, 3}, {5, 5}, {0, sefp::kMasterBits}}));
  EXPECT_EQ(model_quantized, (std::vector<bool>{true, true, true, false}));
}

TEST(PrecisionSweepTest, BuildsOnlyWhatIsAskedFor) {
  Built built;
  int calls = 0;
  ASSERT_TRUE(SweepPrecisions(StoriesSweep(&built), {0}, [&](const SweepPoint&) {
                ++calls;
                return absl::OkStatus();
              }).ok());
  EXPECT_EQ(built.quantized, (std::vector<bool>{false}));
  EXPECT_EQ(calls, 1);
  built.quantized.clear();
  ASSERT_TRUE(SweepPrecisions(StoriesSweep(&built), {}, [](const SweepPoint&) {
                return absl::OkStatus();
              }).ok());
  EXPECT_TRUE(built.quantized.empty());
}

TEST(PrecisionSweepTest, TheFirstErrorStopsTheSweep) {
  Built built;
  std::vector<int> scored;
  absl::Status status = SweepPrecisions(StoriesSweep(&built), {8, 4, 0}, [&](const SweepPoint& at) {
    scored.push_back(at.bits);
    return at.bits == 4 ? absl::InternalError("E5M4 failed") : absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(scored, (std::vector<int>{8, 4}));
  EXPECT_EQ(built.quantized, (std::vector<bool>{true}));  // float32 never built

  PrecisionSweep broken;
  broken.build_model = [](bool) -> absl::StatusOr<std::unique_ptr<engine::LlamaModel>> {
    return absl::NotFoundError("no such model");
  };
  EXPECT_EQ(SweepPrecisions(broken, {8}, [](const SweepPoint&) { return absl::OkStatus(); })
                .code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace otaro::eval
