// Counts the calls in flight and, once closed, turns new calls away. The
// shutdown sequence closes the gate (new calls get UNAVAILABLE), then waits for
// the calls already inside to finish, up to the configured timeout.
#ifndef OTARO_SERVER_SERVICE_CALL_GATE_H_
#define OTARO_SERVER_SERVICE_CALL_GATE_H_

#include <optional>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"
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
  std::optional<Pass> TryEnter() ABSL_LOCKS_EXCLUDED(mu_);

  // The status a refused call returns.
  static grpc::Status ShuttingDown() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the server is shutting down; retry on another replica");
  }

  void Close() ABSL_LOCKS_EXCLUDED(mu_);
  bool closed() const ABSL_LOCKS_EXCLUDED(mu_);
  int in_flight() const ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until no call is in flight; false if `timeout` passed first.
  bool WaitIdle(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Leave() ABSL_LOCKS_EXCLUDED(mu_);

  mutable Mutex mu_;  // common/mutex.h: visible to TSan, checked by clang
  CondVar idle_;      // in_flight_ reached 0
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_CALL_GATE_H_
