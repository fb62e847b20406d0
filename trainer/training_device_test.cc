// Runs on every machine: `device` parsing, the FAILED_PRECONDITION that
// `--device cuda` gets where the build has no CUDA or the machine no GPU (from
// CheckTrainingDevice, ValidateTuneOptions and RunTuning, before anything is
// loaded or written), and the CPU backend computing exactly what the CPU
// TrainingModel computes.
#include "trainer/training_device.h"

#include <sys/stat.h>

#include <string>
#include <vector>

#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "trainer/model/training_model.h"
#include "trainer/tuner.h"

#ifndef OTARO_TRAINER_WITH_CUDA
#define OTARO_TRAINER_WITH_CUDA 0
#endif
#if OTARO_TRAINER_WITH_CUDA
#include "engine/cuda/device.h"
#endif

namespace otaro::trainer {
namespace {

using ::testing::HasSubstr;

// Whether this machine and build can train on CUDA, decided independently of
// CheckTrainingDevice: the build flag and the engine's device probe.
bool CudaUsableHere(std::string* why) {
#if OTARO_TRAINER_WITH_CUDA
  const engine::cuda::DeviceReport report = engine::cuda::ProbeDevices();
  if (report.devices.empty()) {
    *why = report.unavailable_reason;
    return false;
  }
  if (report.devices.front().compute_capability_major < 8) {
    *why = "GPU 0 is older than compute capability 8.0";
    return false;
  }
  return true;
#else
  *why = "built without CUDA";
  return false;
#endif
}

TEST(TrainingDeviceTest, ParsesCpuAndCudaOnly) {
  EXPECT_EQ(*ParseTrainingDevice("cpu"), TrainingDevice::kCpu);
  EXPECT_EQ(*ParseTrainingDevice("cuda"), TrainingDevice::kCuda);
  EXPECT_EQ(TrainingDeviceName(TrainingDevice::kCuda), "cuda");
  EXPECT_EQ(TrainingDeviceName(TrainingDevice::kCpu), "cpu");
  for (const char* bad : {"", "gpu", "CUDA", "cuda:0", "tpu"}) {
    auto device = ParseTrainingDevice(bad);
    ASSERT_FALSE(device.ok()) << bad;
    EXPECT_EQ(device.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(device.status().message()), HasSubstr("cpu or cuda"));
  }
}

TEST(TrainingDeviceTest, CpuIsAlwaysAvailable) {
  EXPECT_TRUE(CheckTrainingDevice(TrainingDevice::kCpu).ok());
}

TEST(TrainingDeviceTest, CudaIsAvailableExactlyWhenBuildAndMachineHaveIt) {
  EXPECT_EQ(CudaTrainingBuilt(), OTARO_TRAINER_WITH_CUDA != 0);
  std::string why;
  const bool usable = CudaUsableHere(&why);
  const absl::Status status = CheckTrainingDevice(TrainingDevice::kCuda);
  if (usable) {
    EXPECT_TRUE(status.ok()) << status;
    return;
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  const std::string message(status.message());
  EXPECT_THAT(message, HasSubstr("device cuda"));
  if (!CudaTrainingBuilt()) {
    EXPECT_THAT(message, HasSubstr("built without CUDA"));
  } else {
    EXPECT_THAT(message, ::testing::AnyOf(HasSubstr(why), HasSubstr("compute capability")));
  }
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

TEST(TrainingDeviceTest, TuningOnAMissingDeviceFailsBeforeAnythingHappens) {
  std::string why;
  if (CudaUsableHere(&why)) GTEST_SKIP() << "this machine can train on CUDA";
  const std::string out = testing::ScratchDir("no_cuda") + "/run";
  TuneOptions options;
  options.model_path = testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
  options.data_path = testing::SharedPath("data/corpora/wikitext-2-tokens/valid.txt");
  options.output_dir = out;
  options.device = "cuda";
  const absl::Status valid = ValidateTuneOptions(options);
  EXPECT_EQ(valid.code(), absl::StatusCode::kFailedPrecondition) << valid;
  EXPECT_THAT(std::string(valid.message()), HasSubstr("device cuda"));

  auto run = RunTuning(options, {}, nullptr);
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), absl::StatusCode::kFailedPrecondition) << run.status();
  EXPECT_FALSE(Exists(out)) << "nothing may be written before the device check";

  options.device = "tpu";
  EXPECT_EQ(ValidateTuneOptions(options).code(), absl::StatusCode::kInvalidArgument);
  options.device = "cpu";
  EXPECT_TRUE(ValidateTuneOptions(options).ok()) << ValidateTuneOptions(options);
}

TEST(TrainingDeviceTest, CpuBackendIsTheCpuTrainingModel) {
  engine::ModelConfig config;
  auto source = engine::OpenHfFolder(
      testing::SharedPath("data/models/stories260K-hf-converted"), &config);
  ASSERT_TRUE(source.ok()) << source.status();
  auto params = Parameters::FromSource(**source, config);
  ASSERT_TRUE(params.ok()) << params.status();

  Batch batch;
  batch.batch_size = 2;
  batch.seq_len = 16;
  for (int i = 0; i < 32; ++i) {
    batch.inputs.push_back((i * 37 + 5) % config.vocab_size);
    batch.targets.push_back(i % 7 == 3 ? kIgnoreTarget : (i * 11 + 2) % config.vocab_size);
  }
  const Precision precision{true, 4, sefp::Reconstruction::kMidpoint};

  auto backend = CreateTrainingBackend(TrainingDevice::kCpu, &*params, 2, 16, 2);
  ASSERT_TRUE(backend.ok()) << backend.status();
  TrainingModel model(&*params, 2, 16, 2);
  auto a = (*backend)->Forward(batch, precision);
  auto b = model.Forward(batch, precision);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  std::vector<float> ga(params->values().size()), gb(params->values().size());
  ASSERT_TRUE((*backend)->Backward(0.5f, absl::MakeSpan(ga)).ok());
  ASSERT_TRUE(model.Backward(0.5f, absl::MakeSpan(gb)).ok());
  EXPECT_EQ(ga, gb);
  EXPECT_EQ((*backend)->Memory().Total(), model.Memory().Total());
  EXPECT_EQ((*backend)->logits().size(), model.logits().size());

  std::string why;
  if (!CudaUsableHere(&why)) {
    auto cuda = CreateTrainingBackend(TrainingDevice::kCuda, &*params, 2, 16, 2);
    ASSERT_FALSE(cuda.ok());
    EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace otaro::trainer
