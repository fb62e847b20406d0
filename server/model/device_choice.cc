#include "server/model/device_choice.h"

#include "absl/strings/str_cat.h"

namespace otaro::server {
namespace {

// Why CUDA cannot serve in this build. When engine/cuda has an inference
// backend, this becomes: linked? device present? self-test passed?
constexpr char kNoCudaBackend[] =
    "this build has no CUDA inference backend (only the CUDA trainer is written; README: Status)";

}  // namespace

absl::StatusOr<DeviceChoice> ChooseDevice(absl::string_view requested) {
  DeviceChoice choice;
  choice.requested = std::string(requested);
  if (requested == "cpu") {
    choice.device = "cpu";
    choice.reason = "engine.device is cpu";
    return choice;
  }
  if (requested == "auto") {
    choice.device = "cpu";
    choice.reason = kNoCudaBackend;
    return choice;
  }
  if (requested == "cuda") {
    return absl::FailedPreconditionError(absl::StrCat(
        "engine.device is cuda, but ", kNoCudaBackend,
        ": set engine.device to auto to run on the CPU where CUDA cannot"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("engine.device: '", requested, "' is not one of auto, cpu, cuda"));
}

}  // namespace otaro::server
