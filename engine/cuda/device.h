// CUDA device discovery, callable from plain C++ (no CUDA headers leak out).
// `engine.device: auto` uses it to choose between the CUDA and CPU backends;
// on a machine without a GPU or driver it reports why instead of failing.
#ifndef OTARO_ENGINE_CUDA_DEVICE_H_
#define OTARO_ENGINE_CUDA_DEVICE_H_

#include <cstddef>
#include <string>
#include <vector>

namespace otaro::engine::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  size_t total_memory_bytes = 0;
};

struct DeviceReport {
  std::vector<DeviceInfo> devices;
  // Why no device is usable (e.g. "no CUDA driver"); empty when devices exist.
  std::string unavailable_reason;
  // The cudart version this binary was built against, e.g. 13000.
  int runtime_version = 0;
};

DeviceReport ProbeDevices();

// Runs y = a*x + y over n elements on `device` and checks every element on the
// host. Returns "" on success, else what failed (a CUDA error or a mismatch).
// Proves the whole path: context, allocation, copies, a kernel launch.
std::string RunSaxpySmokeTest(int device, int n);

}  // namespace otaro::engine::cuda

#endif  // OTARO_ENGINE_CUDA_DEVICE_H_
