// Runs everywhere: without a GPU it checks that the probe explains why and
// nothing crashes; with one it runs a real kernel and checks every element.
#include "engine/cuda/device.h"

#include "gtest/gtest.h"

namespace otaro::engine::cuda {
namespace {

TEST(CudaDeviceTest, ProbeEitherFindsDevicesOrSaysWhy) {
  DeviceReport report = ProbeDevices();
  EXPECT_GT(report.runtime_version, 0);
  if (report.devices.empty()) {
    EXPECT_FALSE(report.unavailable_reason.empty());
  } else {
    EXPECT_TRUE(report.unavailable_reason.empty());
    for (const auto& device : report.devices) {
      EXPECT_FALSE(device.name.empty());
      EXPECT_GE(device.compute_capability_major, 7);
      EXPECT_GT(device.total_memory_bytes, 0u);
    }
  }
}

TEST(CudaDeviceTest, SaxpyKernelOnEveryDevice) {
  DeviceReport report = ProbeDevices();
  if (report.devices.empty()) {
    // Not a pass: recorded as skipped, with the reason in the log.
    GTEST_SKIP() << "no CUDA device: " << report.unavailable_reason;
  }
  for (const auto& device : report.devices) {
    EXPECT_EQ(RunSaxpySmokeTest(device.index, 1 << 20 | 3), "") << device.name;
  }
}

TEST(CudaDeviceTest, SmokeTestOnMissingDeviceIsAnErrorNotACrash) {
  DeviceReport report = ProbeDevices();
  std::string result = RunSaxpySmokeTest(static_cast<int>(report.devices.size()) + 7, 16);
  EXPECT_NE(result, "");
}

}  // namespace
}  // namespace otaro::engine::cuda
