#include "trainer/cuda/device_context.h"

#include <cuda_runtime.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "trainer/cuda/cuda_status.h"

namespace otaro::trainer::cuda {

absl::Status CudaStatus(cudaError_t error, absl::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat(what, ": ", cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status CheckLaunch(absl::string_view what) {
  return CudaStatus(cudaGetLastError(), absl::StrCat("CUDA launch of ", what));
}

DeviceBuffer::~DeviceBuffer() { Release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(other.device_) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

void DeviceBuffer::Release() {
  if (data_ == nullptr) return;
  // cudaFree of another device's pointer works under unified addressing, but
  // making the owner current keeps this independent of the caller's device.
  int current = 0;
  const bool restore = cudaGetDevice(&current) == cudaSuccess && current != device_;
  if (restore) cudaSetDevice(device_);
  cudaFree(data_);  // nothing useful to do with an error in a destructor
  if (restore) cudaSetDevice(current);
  data_ = nullptr;
  bytes_ = 0;
}

absl::StatusOr<std::unique_ptr<DeviceContext>> DeviceContext::Create(int device) {
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    cudaGetLastError();  // clear it, so that later calls start clean
    return absl::FailedPreconditionError(
        absl::StrCat("no usable CUDA device: cudaGetDeviceCount: ", cudaGetErrorName(error), " (",
                     cudaGetErrorString(error), ")"));
  }
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", device, " does not exist (the driver reports ", count, " devices)"));
  }
  std::unique_ptr<DeviceContext> context(new DeviceContext());
  context->device_ = device;
  cudaDeviceProp prop;
  if (absl::Status s = CudaStatus(cudaGetDeviceProperties(&prop, device),
                                  absl::StrCat("cudaGetDeviceProperties(", device, ")"));
      !s.ok()) {
    return s;
  }
  context->name_ = prop.name;
  if (absl::Status s = context->Activate(); !s.ok()) return s;
  cudaStream_t stream = nullptr;
  if (absl::Status s = CudaStatus(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking),
                                  "cudaStreamCreate");
      !s.ok()) {
    return s;
  }
  context->stream_ = stream;
  return context;
}

DeviceContext::~DeviceContext() {
  if (stream_ != nullptr) {
    cudaSetDevice(device_);
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

absl::Status DeviceContext::Activate() const {
  return CudaStatus(cudaSetDevice(device_), absl::StrCat("cudaSetDevice(", device_, ")"));
}

absl::StatusOr<DeviceBuffer> DeviceContext::Allocate(size_t bytes, absl::string_view what) {
  DeviceBuffer buffer;
  buffer.device_ = device_;
  if (bytes == 0) return buffer;
  void* data = nullptr;
  const cudaError_t error = cudaMalloc(&data, bytes);
  if (error != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    std::string memory;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      memory = absl::StrCat("; the device has ", free_bytes >> 20, " MiB free of ",
                            total_bytes >> 20, " MiB");
    }
    return CudaStatus(error, absl::StrCat("allocating ", bytes >> 20, " MiB (", bytes,
                                          " bytes) of device memory for ", what, " on ", name_,
                                          memory));
  }
  buffer.data_ = data;
  buffer.bytes_ = bytes;
  allocated_bytes_ += static_cast<int64_t>(bytes);
  return buffer;
}

absl::Status DeviceContext::CopyToDevice(void* dst, const void* src, size_t bytes,
                                         absl::string_view what) {
  if (bytes == 0) return absl::OkStatus();
  return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_),
                    absl::StrCat("copying ", what, " to the device"));
}

absl::Status DeviceContext::CopyToHost(void* dst, const void* src, size_t bytes,
                                       absl::string_view what) {
  if (bytes == 0) return absl::OkStatus();
  const std::string context = absl::StrCat("copying ", what, " to the host");
  if (absl::Status s =
          CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), context);
      !s.ok()) {
    return s;
  }
  return CudaStatus(cudaStreamSynchronize(stream_), context);
}

absl::Status DeviceContext::CopyOnDevice(void* dst, const void* src, size_t bytes,
                                         absl::string_view what) {
  if (bytes == 0) return absl::OkStatus();
  return CudaStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_),
                    absl::StrCat("copying ", what, " on the device"));
}

absl::Status DeviceContext::Fill(void* dst, unsigned char byte, size_t bytes,
                                 absl::string_view what) {
  if (bytes == 0) return absl::OkStatus();
  return CudaStatus(cudaMemsetAsync(dst, byte, bytes, stream_), absl::StrCat("filling ", what));
}

absl::Status DeviceContext::Synchronize(absl::string_view what) {
  return CudaStatus(cudaStreamSynchronize(stream_), what);
}

absl::StatusOr<int64_t> DeviceContext::DeviceBytesInUse() const {
  size_t free_bytes = 0, total_bytes = 0;
  if (absl::Status s = CudaStatus(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
      !s.ok()) {
    return s;
  }
  return static_cast<int64_t>(total_bytes - free_bytes);
}

}  // namespace otaro::trainer::cuda
