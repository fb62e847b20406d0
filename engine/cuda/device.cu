#include "engine/cuda/device.h"

#include <cuda_runtime.h>

#include <cmath>
#include <string>
#include <vector>

namespace otaro::engine::cuda {
namespace {

std::string Describe(const char* what, cudaError_t error) {
  return std::string(what) + ": " + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) +
         ")";
}

__global__ void Saxpy(int n, float a, const float* x, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

}  // namespace

DeviceReport ProbeDevices() {
  DeviceReport report;
  cudaRuntimeGetVersion(&report.runtime_version);
  int count = 0;
  cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    report.unavailable_reason = Describe("cudaGetDeviceCount", error);
    cudaGetLastError();  // Clear the sticky error so later probes start clean.
    return report;
  }
  if (count == 0) {
    report.unavailable_reason = "the CUDA driver reports no devices";
    return report;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    report.devices.push_back({i, prop.name, prop.major, prop.minor, prop.totalGlobalMem});
  }
  return report;
}

std::string RunSaxpySmokeTest(int device, int n) {
  cudaError_t error = cudaSetDevice(device);
  if (error != cudaSuccess) return Describe("cudaSetDevice", error);
  std::vector<float> x(n), y(n);
  for (int i = 0; i < n; ++i) {
    x[i] = 0.5f * i;
    y[i] = 1.0f - i;
  }
  float *dx = nullptr, *dy = nullptr;
  std::string failure;
  const size_t bytes = sizeof(float) * n;
  if ((error = cudaMalloc(&dx, bytes)) != cudaSuccess ||
      (error = cudaMalloc(&dy, bytes)) != cudaSuccess) {
    failure = Describe("cudaMalloc", error);
  } else if ((error = cudaMemcpy(dx, x.data(), bytes, cudaMemcpyHostToDevice)) != cudaSuccess ||
             (error = cudaMemcpy(dy, y.data(), bytes, cudaMemcpyHostToDevice)) != cudaSuccess) {
    failure = Describe("cudaMemcpy to device", error);
  } else {
    Saxpy<<<(n + 255) / 256, 256>>>(n, 2.0f, dx, dy);
    if ((error = cudaGetLastError()) != cudaSuccess) {
      failure = Describe("Saxpy launch", error);
    } else if ((error = cudaMemcpy(y.data(), dy, bytes, cudaMemcpyDeviceToHost)) != cudaSuccess) {
      failure = Describe("cudaMemcpy to host", error);
    } else {
      for (int i = 0; i < n && failure.empty(); ++i) {
        float want = 2.0f * (0.5f * i) + (1.0f - i);
        if (std::fabs(y[i] - want) > 1e-5f * std::fabs(want) + 1e-6f) {
          failure = "Saxpy result mismatch at " + std::to_string(i) + ": got " +
                    std::to_string(y[i]) + ", want " + std::to_string(want);
        }
      }
    }
  }
  cudaFree(dx);
  cudaFree(dy);
  return failure;
}

}  // namespace otaro::engine::cuda
