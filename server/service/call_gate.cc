#include "server/service/call_gate.h"

#include "absl/time/clock.h"

namespace otaro::server {

std::optional<CallGate::Pass> CallGate::TryEnter() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return std::nullopt;
  ++in_flight_;
  return std::optional<Pass>(std::in_place, this);
}

void CallGate::Leave() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_.notify_all();
}

void CallGate::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
}

bool CallGate::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

int CallGate::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

bool CallGate::WaitIdle(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  return idle_.wait_until(lock, absl::ToChronoTime(absl::Now() + timeout),
                          [this] { return in_flight_ == 0; });
}

}  // namespace otaro::server
