// Which backend runs the model (engine.device), decided once at start-up:
//   cpu   the CPU backend.
//   auto  CUDA only when a CUDA inference backend is linked into this build, a
//         device is present and the backend's start-up self-test passed;
//         otherwise the CPU, with the reason. Never fails.
//   cuda  as auto, but anything missing is a start-up error naming it.
// No CUDA inference backend exists yet (README: Status), so auto always picks
// the CPU and says so, and cuda is refused: a GPU deployment started with
// `auto` comes up on the CPU instead of crash-looping.
#ifndef OTARO_SERVER_MODEL_DEVICE_CHOICE_H_
#define OTARO_SERVER_MODEL_DEVICE_CHOICE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace otaro::server {

struct DeviceChoice {
  std::string requested;  // engine.device as configured
  std::string device;     // "cpu" or "cuda"
  std::string reason;     // why, for the log line and otaro_engine_device_info
};

// InvalidArgument for a value other than auto|cpu|cuda; FailedPrecondition for
// cuda when it cannot run.
absl::StatusOr<DeviceChoice> ChooseDevice(absl::string_view requested);

}  // namespace otaro::server

#endif  // OTARO_SERVER_MODEL_DEVICE_CHOICE_H_
