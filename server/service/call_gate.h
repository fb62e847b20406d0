// Counts the calls in flight and, once closed, turns new calls away. The
// shutdown sequence closes the gate (new calls get UNAVAILABLE), then waits for
// the calls already inside to finish, up to the configured timeout.
#ifndef OTARO_SERVER_SERVICE_CALL_GATE_H_
#define OTARO_SERVER_SERVICE_CALL_GATE_H_

#include <condition_variable>
#include <mutex>
#include <optional>

#include "absl/time/time.h"
#include "grpcpp/support/status.h"

namespace otaro::server {

class CallGate {
 public:
  // A pass through the gate; leaving the scope ends the call.
  class Pass {
   public:
    explicit Pass(CallGate* gate) : gate_(gate) {}
    Pass(Pass&& other) noexcept : gate_(other.gate_) { other.gate_ = nullptr; }
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;
    ~Pass() {
      if (gate_ != nullptr) gate_->Leave();
    }

   private:
    CallGate* gate_;
  };

  // A pass, or nullopt once the gate is closed.
  std::optional<Pass> TryEnter();

  // The status a refused call returns.
  static grpc::Status ShuttingDown() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down; retry on another replica");
  }

  void Close();
  bool closed() const;
  int in_flight() const;

  // Waits until no call is in flight; false if `timeout` passed first.
  bool WaitIdle(absl::Duration timeout);

 private:
  void Leave();

  // std::mutex rather than absl::Mutex: Debian's Abseil is not built with
  // ThreadSanitizer, so only pthread-based locks are visible to --config=tsan
  // (the CI's TSan step runs this class's test).
  mutable std::mutex mu_;
  std::condition_variable idle_;  // in_flight_ reached 0
  // Guarded by mu_.
  bool closed_ = false;
  int in_flight_ = 0;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_CALL_GATE_H_
