#include "trainer/training_device.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/model/training_model.h"

// trainer/BUILD sets OTARO_TRAINER_WITH_CUDA=1 with --define=otaro_cuda_trainer=on.
#ifndef OTARO_TRAINER_WITH_CUDA
#define OTARO_TRAINER_WITH_CUDA 0
#endif
#if OTARO_TRAINER_WITH_CUDA
#include "engine/cuda/device.h"
#include "trainer/cuda/cuda_training_model.h"
#endif

namespace otaro::trainer {
namespace {

// The kernels' oldest target (tools/bazel/cuda.bzl builds sm_80 and up).
constexpr int kMinComputeCapabilityMajor = 8;

}  // namespace

absl::StatusOr<TrainingDevice> ParseTrainingDevice(absl::string_view name) {
  if (name == "cpu") return TrainingDevice::kCpu;
  if (name == "cuda") return TrainingDevice::kCuda;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown training device '", name, "' (cpu or cuda)"));
}

absl::string_view TrainingDeviceName(TrainingDevice device) {
  return device == TrainingDevice::kCuda ? "cuda" : "cpu";
}

bool CudaTrainingBuilt() { return OTARO_TRAINER_WITH_CUDA != 0; }

absl::Status CheckTrainingDevice(TrainingDevice device) {
  if (device == TrainingDevice::kCpu) return absl::OkStatus();
#if OTARO_TRAINER_WITH_CUDA
  const engine::cuda::DeviceReport report = engine::cuda::ProbeDevices();
  if (report.devices.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device cuda: no usable CUDA device (", report.unavailable_reason, "); use --device cpu"));
  }
  const engine::cuda::DeviceInfo& gpu = report.devices.front();
  if (gpu.compute_capability_major < kMinComputeCapabilityMajor) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device cuda: GPU 0 (", gpu.name, ") has compute capability ",
        gpu.compute_capability_major, ".", gpu.compute_capability_minor,
        "; the CUDA trainer is built for ", kMinComputeCapabilityMajor, ".0 and newer"));
  }
  return absl::OkStatus();
#else
  return absl::FailedPreconditionError(
      "device cuda: this binary was built without CUDA training; rebuild with "
      "--define=otaro_cuda_trainer=on (and without --config=cpu) on a machine with the CUDA "
      "toolkit, or use --device cpu");
#endif
}

absl::StatusOr<std::unique_ptr<TrainingBackend>> CreateTrainingBackend(TrainingDevice device,
                                                                       const Parameters* params,
                                                                       int64_t max_batch,
                                                                       int64_t max_seq,
                                                                       int threads) {
  OTARO_RETURN_IF_ERROR(CheckTrainingDevice(device));
  if (device == TrainingDevice::kCpu) {
    return std::unique_ptr<TrainingBackend>(
        std::make_unique<TrainingModel>(params, max_batch, max_seq, threads));
  }
#if OTARO_TRAINER_WITH_CUDA
  OTARO_ASSIGN_OR_RETURN(std::unique_ptr<CudaTrainingModel> model,
                         CudaTrainingModel::Create(params, max_batch, max_seq, /*device=*/0));
  return std::unique_ptr<TrainingBackend>(std::move(model));
#else
  return absl::FailedPreconditionError("device cuda: this binary was built without CUDA");
#endif
}

}  // namespace otaro::trainer
