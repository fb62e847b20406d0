#include "engine/serving/step_gate.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace otaro::engine {
namespace {

// Spins (with short sleeps) until the gate has `n` turns waiting or running.
void WaitQueued(const StepGate& gate, int64_t n) {
  while (gate.queued() != n) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

TEST(StepGateTest, OneTurnAtATime) {
  StepGate gate;
  std::atomic<int> inside{0};
  std::atomic<int> most{0};
  std::atomic<int> turns{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        StepGate::Turn turn(&gate);
        const int now = inside.fetch_add(1) + 1;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::yield();
        inside.fetch_sub(1);
        turns.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(most.load(), 1);
  EXPECT_EQ(turns.load(), 2000);
  EXPECT_EQ(gate.queued(), 0);
}

TEST(StepGateTest, TurnsAreTakenInTheOrderAsked) {
  StepGate gate;
  std::mutex order_mu;
  std::vector<int> order;
  auto first = std::make_unique<StepGate::Turn>(&gate);  // holds the gate
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      StepGate::Turn turn(&gate);
      std::lock_guard<std::mutex> lock(order_mu);
      order.push_back(t);
    });
    WaitQueued(gate, 2 + t);  // thread t has its ticket before t + 1 asks
  }
  first.reset();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

TEST(StepGateTest, AThreadThatJustSteppedQueuesBehindOneWaiting) {
  // The alternation two schedulers rely on: A steps, B waits; A's next turn
  // comes after B's.
  StepGate gate;
  std::mutex order_mu;
  std::vector<char> order;
  auto record = [&](char c) {
    std::lock_guard<std::mutex> lock(order_mu);
    order.push_back(c);
  };
  std::atomic<bool> b_waiting{false};
  std::thread a([&] {
    {
      StepGate::Turn turn(&gate);
      record('A');
      while (!b_waiting.load()) std::this_thread::yield();
      WaitQueued(gate, 2);
    }
    StepGate::Turn turn(&gate);
    record('A');
  });
  std::thread b([&] {
    while (gate.queued() != 1) std::this_thread::yield();
    b_waiting = true;
    StepGate::Turn turn(&gate);
    record('B');
  });
  a.join();
  b.join();
  EXPECT_EQ(order, (std::vector<char>{'A', 'B', 'A'}));
}

}  // namespace
}  // namespace otaro::engine
