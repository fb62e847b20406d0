#include "server/service/call_gate.h"

namespace otaro::server {

std::optional<CallGate::Pass> CallGate::TryEnter() {
  absl::MutexLock lock(&mu_);
  if (closed_) return std::nullopt;
  ++in_flight_;
  return std::optional<Pass>(std::in_place, this);
}

void CallGate::Leave() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

void CallGate::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

bool CallGate::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

int CallGate::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

bool CallGate::WaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
  return mu_.AwaitWithTimeout(absl::Condition(&idle), timeout);
}

}  // namespace otaro::server
