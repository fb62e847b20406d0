// CUDA runtime errors as absl::Status, for the .cu files of trainer/cuda only
// (it includes the CUDA runtime header; plain C++ callers use device_context.h).
#ifndef OTARO_TRAINER_CUDA_CUDA_STATUS_H_
#define OTARO_TRAINER_CUDA_CUDA_STATUS_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace otaro::trainer::cuda {

// OK for cudaSuccess; otherwise "<what>: <error name> (<description>)" as
// RESOURCE_EXHAUSTED (out of memory), FAILED_PRECONDITION (no driver, device or
// kernel image for this GPU) or INTERNAL (anything else).
absl::Status CudaStatus(cudaError_t error, absl::string_view what);

}  // namespace otaro::trainer::cuda

#endif  // OTARO_TRAINER_CUDA_CUDA_STATUS_H_
