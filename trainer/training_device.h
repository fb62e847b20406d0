// Which device trains: `otaro tune --device cpu|cuda` (TuneOptions::device).
// The CPU TrainingModel is always there; the CUDA one only in a build with the
// CUDA toolkit and --define=otaro_cuda_trainer=on, on a machine with a GPU, and asking
// for it otherwise is a FAILED_PRECONDITION that says which of the two is
// missing, before any training starts.
#ifndef OTARO_TRAINER_TRAINING_DEVICE_H_
#define OTARO_TRAINER_TRAINING_DEVICE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/model/training_backend.h"
#include "trainer/model/parameters.h"

namespace otaro::trainer {

enum class TrainingDevice { kCpu, kCuda };

// "cpu" | "cuda"; anything else is INVALID_ARGUMENT.
absl::StatusOr<TrainingDevice> ParseTrainingDevice(absl::string_view name);
absl::string_view TrainingDeviceName(TrainingDevice device);

// Whether this binary was built with the CUDA trainer
// (--define=otaro_cuda_trainer=on; off by default, see tools/bazel/BUILD).
bool CudaTrainingBuilt();

// OK when `device` can train here: always for the CPU; for CUDA, when the
// build has it and a GPU of compute capability 8.0 or newer answers (the
// kernels are built for sm_80 and up). Otherwise FAILED_PRECONDITION naming
// what is missing.
absl::Status CheckTrainingDevice(TrainingDevice device);

// The training model for `device` (after CheckTrainingDevice's checks).
// `threads` drives the CPU model (OpenBLAS and its pool); the CUDA model runs
// on GPU 0 and ignores it.
absl::StatusOr<std::unique_ptr<TrainingBackend>> CreateTrainingBackend(TrainingDevice device,
                                                                       const Parameters* params,
                                                                       int64_t max_batch,
                                                                       int64_t max_seq,
                                                                       int threads);

}  // namespace otaro::trainer

#endif  // OTARO_TRAINER_TRAINING_DEVICE_H_
