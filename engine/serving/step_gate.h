// One engine step at a time across schedulers, in the order they asked.
//
// Every model version the server holds has its own scheduler and engine
// thread (scheduler.h), and during a publish or rollback two of them have
// work: the old version finishes the streams it started while the new one
// takes new requests. Stepping both at once puts two engines' worth of threads
// on the cores the server sized for one, and every other thread (gRPC, the
// clients' streams) waits behind them: the soak test saw inter-token gaps of
// 7x the median during swaps. Schedulers that share a StepGate instead take
// turns, one Forward each, first come first served (a ticket lock: a thread
// that just stepped queues behind one already waiting), so a stream's gap is
// at most its own step plus the other version's.
#ifndef OTARO_ENGINE_SERVING_STEP_GATE_H_
#define OTARO_ENGINE_SERVING_STEP_GATE_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"

namespace otaro::engine {

class StepGate {
 public:
  StepGate() = default;
  StepGate(const StepGate&) = delete;
  StepGate& operator=(const StepGate&) = delete;

  // Holds the gate for its scope: blocks until every earlier Turn has ended.
  class Turn {
   public:
    explicit Turn(StepGate* gate);  // null: no gate, no wait
    ~Turn();
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;

   private:
    StepGate* const gate_;
  };

  // Turns waiting or running now (tests, metrics).
  int64_t queued() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable Mutex mu_;
  CondVar turn_changed_;
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t serving_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace otaro::engine

#endif  // OTARO_ENGINE_SERVING_STEP_GATE_H_
