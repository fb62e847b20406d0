// CheckpointFolder on the real stories260K masters: what is written comes back
// whole, LATEST names the newest complete checkpoint, and what is not a
// checkpoint is refused with the right code.
#include "trainer/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/testing/shared_data.h"
#include "gtest/gtest.h"

namespace otaro::trainer {
namespace {

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = otaro::testing::ScratchDir("checkpoint_test");
    auto source = engine::OpenModelSource(
        otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf"), &config_);
    ASSERT_TRUE(source.ok()) << source.status();
    source_ = std::move(*source);
    auto params = Parameters::FromSource(*source_, config_);
    ASSERT_TRUE(params.ok()) << params.status();
    params_ = std::move(*params);
  }

  // A checkpoint of `step` whose optimizer buffer and accumulator hold `fill`.
  absl::StatusOr<std::string> WriteStep(const CheckpointFolder& folder, int64_t step, float fill,
                                        bool with_accumulator) {
    moments_.assign(params_.values().size(), fill);
    accumulator_.assign(params_.values().size(), -fill);
    TrainerState state;
    state.state = {{"step", step}, {"strategy", "otaro"}};
    state.optimizer.buffers.push_back({"exp_avg", moments_});
    state.optimizer.counters["step"] = step;
    if (with_accumulator) state.laa_accumulator = accumulator_;
    return folder.Write(step, *source_, config_, /*tokenizer=*/nullptr,
                        engine::CheckpointProvenance{"stories260K", "{}"}, state);
  }

  std::string dir_;
  engine::ModelConfig config_;
  std::unique_ptr<engine::TensorSource> source_;
  Parameters params_;
  std::vector<float> moments_, accumulator_;
};

TEST_F(CheckpointTest, WhatIsWrittenComesBackAndLatestIsTheNewest) {
  CheckpointFolder folder(dir_);
  auto first = WriteStep(folder, 5, 0.25f, /*with_accumulator=*/false);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = WriteStep(folder, 10, 0.5f, /*with_accumulator=*/true);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*second, folder.root() + "/step-00000010");
  EXPECT_TRUE(std::filesystem::exists(*first));  // older ones stay until removed

  auto loaded = folder.ReadLatest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->dir, *second);
  EXPECT_EQ(loaded->state["step"], 10);
  EXPECT_EQ(loaded->state["strategy"], "otaro");
  EXPECT_EQ(loaded->state["format"], "otaro-trainer-state");
  ASSERT_EQ(loaded->masters.values().size(), params_.values().size());
  EXPECT_TRUE(std::equal(loaded->masters.values().begin(), loaded->masters.values().end(),
                         params_.values().begin()));
  ASSERT_EQ(loaded->optimizer_buffers.size(), 1u);
  EXPECT_EQ(loaded->optimizer_buffers[0].first, "exp_avg");
  EXPECT_EQ(loaded->optimizer_buffers[0].second, moments_);
  EXPECT_EQ(loaded->laa_accumulator, accumulator_);

  // The same step again replaces it; no accumulator this time.
  ASSERT_TRUE(WriteStep(folder, 10, 0.75f, /*with_accumulator=*/false).ok());
  loaded = folder.ReadLatest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->optimizer_buffers[0].second, moments_);
  EXPECT_TRUE(loaded->laa_accumulator.empty());

  CheckpointFolder::Remove(*first);
  EXPECT_FALSE(std::filesystem::exists(*first));
}

TEST_F(CheckpointTest, AnUnfinishedWriteLeavesTheLastCompleteOneLatest) {
  CheckpointFolder folder(dir_);
  ASSERT_TRUE(WriteStep(folder, 5, 0.25f, false).ok());
  // What a crash mid-write leaves: a partial folder that LATEST never named.
  std::filesystem::create_directories(folder.root() + "/step-00000010.partial");
  std::ofstream(folder.root() + "/step-00000010.partial/state.json") << "{";
  auto loaded = folder.ReadLatest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->state["step"], 5);
}

TEST_F(CheckpointTest, RefusesWhatIsNotACheckpoint) {
  CheckpointFolder folder(dir_);
  EXPECT_EQ(folder.ReadLatest().status().code(), absl::StatusCode::kNotFound);
  auto written = WriteStep(folder, 5, 0.25f, false);
  ASSERT_TRUE(written.ok());
  std::ofstream(*written + "/state.json") << "{\"format\": \"something else\"}";
  EXPECT_EQ(folder.ReadLatest().status().code(), absl::StatusCode::kDataLoss);
  std::ofstream(*written + "/state.json") << "not json";
  EXPECT_EQ(folder.ReadLatest().status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace otaro::trainer
