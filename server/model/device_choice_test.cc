#include "server/model/device_choice.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::server {
namespace {

using ::testing::HasSubstr;

TEST(DeviceChoiceTest, AutoFallsBackToTheCpuAndSaysWhy) {
  absl::StatusOr<DeviceChoice> choice = ChooseDevice("auto");
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_EQ(choice->device, "cpu");
  EXPECT_EQ(choice->requested, "auto");
  EXPECT_THAT(choice->reason, HasSubstr("no CUDA inference backend"));
}

TEST(DeviceChoiceTest, CpuIsTheCpu) {
  absl::StatusOr<DeviceChoice> choice = ChooseDevice("cpu");
  ASSERT_TRUE(choice.ok());
  EXPECT_EQ(choice->device, "cpu");
}

TEST(DeviceChoiceTest, CudaThatCannotRunIsAStartUpErrorNamingTheCause) {
  absl::StatusOr<DeviceChoice> choice = ChooseDevice("cuda");
  EXPECT_EQ(choice.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(choice.status().message(), HasSubstr("no CUDA inference backend"));
  EXPECT_THAT(choice.status().message(), HasSubstr("engine.device to auto"));
  EXPECT_EQ(ChooseDevice("tpu").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace otaro::server
