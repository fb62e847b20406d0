#include "server/service/call_gate.h"

namespace otaro::server {

std::optional<CallGate::Pass> CallGate::TryEnter() {
  MutexLock lock(&mu_);
  if (closed_) return std::nullopt;
  ++in_flight_;
  return std::optional<Pass>(std::in_place, this);
}

void CallGate::Leave() {
  MutexLock lock(&mu_);
  if (--in_flight_ == 0) idle_.SignalAll();
}

void CallGate::Close() {
  MutexLock lock(&mu_);
  closed_ = true;
}

bool CallGate::closed() const {
  MutexLock lock(&mu_);
  return closed_;
}

int CallGate::in_flight() const {
  MutexLock lock(&mu_);
  return in_flight_;
}

bool CallGate::WaitIdle(absl::Duration timeout) {
  MutexLock lock(&mu_);
  return idle_.WaitFor(&mu_, timeout,
                       [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; });
}

}  // namespace otaro::server
