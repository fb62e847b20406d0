// One CUDA device as the CUDA training model uses it: a stream on the device,
// allocations that free themselves, copies and errors as absl::Status. Plain C++
// (no CUDA headers leak out), so that the model's orchestration
// (cuda_training_model.cc) is ordinary host code; only device_context.cu,
// kernels.cu, fake_quant_kernel.cu and matmul.cu see the CUDA runtime.
//
// Everything runs on the context's one stream, in order; copies to the host
// wait for the stream, so a value read back is the value after every launch
// issued before. Errors name what was being done and the CUDA error; running
// out of device memory is RESOURCE_EXHAUSTED, a missing device or driver
// FAILED_PRECONDITION.
#ifndef OTARO_TRAINER_CUDA_DEVICE_CONTEXT_H_
#define OTARO_TRAINER_CUDA_DEVICE_CONTEXT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// cudaStream_t is CUstream_st*; declaring the struct keeps CUDA headers out.
struct CUstream_st;

namespace otaro::trainer::cuda {

using Stream = CUstream_st*;

// One device allocation, freed by its destructor. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  size_t bytes() const { return bytes_; }
  bool empty() const { return data_ == nullptr; }

 private:
  friend class DeviceContext;
  void Release();
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = 0;
};

class DeviceContext {
 public:
  // Makes `device` current on the calling thread and creates a stream on it.
  // FAILED_PRECONDITION when there is no driver, no device or no such index.
  static absl::StatusOr<std::unique_ptr<DeviceContext>> Create(int device);
  ~DeviceContext();
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  int device() const { return device_; }
  const std::string& name() const { return name_; }  // e.g. "NVIDIA H100 80GB HBM3"
  Stream stream() const { return stream_; }

  // Makes the device current on the calling thread (CUDA's current device is
  // per thread; a model may be driven from another thread than its creator's).
  absl::Status Activate() const;

  // `bytes` of device memory; `what` names the buffer in errors.
  absl::StatusOr<DeviceBuffer> Allocate(size_t bytes, absl::string_view what);

  // Stream-ordered copies and fills. CopyToHost returns once `dst` holds the data.
  absl::Status CopyToDevice(void* dst, const void* src, size_t bytes, absl::string_view what);
  absl::Status CopyToHost(void* dst, const void* src, size_t bytes, absl::string_view what);
  absl::Status CopyOnDevice(void* dst, const void* src, size_t bytes, absl::string_view what);
  absl::Status Fill(void* dst, unsigned char byte, size_t bytes, absl::string_view what);

  // Waits for the stream; reports any error of the work queued on it.
  absl::Status Synchronize(absl::string_view what);

  // Bytes allocated through Allocate so far (the training model allocates
  // once and holds its buffers for its lifetime, so this is also its peak).
  int64_t allocated_bytes() const { return allocated_bytes_; }
  // The device's used memory as the driver reports it (total - free): every
  // process and the CUDA context included.
  absl::StatusOr<int64_t> DeviceBytesInUse() const;

 private:
  DeviceContext() = default;
  int device_ = 0;
  std::string name_;
  Stream stream_ = nullptr;
  int64_t allocated_bytes_ = 0;
};

// OK, or an INTERNAL error naming `what` with the error of the last kernel
// launch on this thread (cudaGetLastError: bad launch configuration, no
// kernel image for this GPU, ...). Launches are asynchronous: faults inside
// a kernel surface at the next Synchronize or CopyToHost.
absl::Status CheckLaunch(absl::string_view what);

}  // namespace otaro::trainer::cuda

#endif  // OTARO_TRAINER_CUDA_DEVICE_CONTEXT_H_
