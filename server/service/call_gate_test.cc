#include "server/service/call_gate.h"

#include <thread>

#include "gtest/gtest.h"

namespace otaro::server {
namespace {

TEST(CallGateTest, CountsPassesAndRefusesAfterClose) {
  CallGate gate;
  {
    auto a = gate.TryEnter();
    auto b = gate.TryEnter();
    ASSERT_TRUE(a && b);
    EXPECT_EQ(gate.in_flight(), 2);
    gate.Close();
    EXPECT_FALSE(gate.TryEnter().has_value());
    EXPECT_EQ(gate.in_flight(), 2);
  }
  EXPECT_EQ(gate.in_flight(), 0);
  EXPECT_TRUE(gate.WaitIdle(absl::ZeroDuration()));
}

TEST(CallGateTest, WaitIdleTimesOutWhileACallRuns) {
  CallGate gate;
  auto pass = gate.TryEnter();
  gate.Close();
  EXPECT_FALSE(gate.WaitIdle(absl::Milliseconds(20)));
}

TEST(CallGateTest, WaitIdleReturnsWhenLastCallLeaves) {
  CallGate gate;
  std::optional<CallGate::Pass> pass = gate.TryEnter();
  std::thread finisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    pass.reset();
  });
  EXPECT_TRUE(gate.WaitIdle(absl::Seconds(10)));
  finisher.join();
}

TEST(CallGateTest, ShuttingDownIsUnavailable) {
  EXPECT_EQ(CallGate::ShuttingDown().error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace otaro::server
