#include "engine/serving/step_gate.h"

namespace otaro::engine {

StepGate::Turn::Turn(StepGate* gate) : gate_(gate) {
  if (gate_ == nullptr) return;
  MutexLock lock(&gate_->mu_);
  const uint64_t ticket = gate_->next_ticket_++;
  gate_->turn_changed_.Wait(&gate_->mu_, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(gate_->mu_) {
    return gate_->serving_ == ticket;
  });
}

StepGate::Turn::~Turn() {
  if (gate_ == nullptr) return;
  {
    MutexLock lock(&gate_->mu_);
    ++gate_->serving_;
  }
  gate_->turn_changed_.SignalAll();
}

int64_t StepGate::queued() const {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(next_ticket_ - serving_);
}

}  // namespace otaro::engine
