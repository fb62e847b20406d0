// One Generate / GenerateStream call on the served model's scheduler. The
// scheduler's callbacks run on its engine thread and only append to this
// call's state; the gRPC handler thread waits on that state, writes what is
// new, and watches the client: a cancelled call or a passed deadline cancels
// the request, which frees its KV blocks at the next step boundary.
#ifndef OTARO_SERVER_SERVICE_GENERATION_CALL_H_
#define OTARO_SERVER_SERVICE_GENERATION_CALL_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "engine/runtime/generator.h"
#include "engine/serving/scheduler.h"
#include "grpcpp/server_context.h"

namespace otaro::server {

// Tokens generated since the last delta.
struct GenerationDelta {
  std::vector<engine::Token> tokens;
  std::string text;
  std::vector<float> logprobs;
};

struct GenerationOutcome {
  absl::Status status;
  engine::GenerationResult result;
  engine::RequestTimings timings;
  // Time between consecutive generated tokens, as the scheduler produced them.
  std::vector<absl::Duration> inter_token_gaps;
  // The end of result.text that no delta carried: what was held back (a
  // possible stop string, a character cut off by the end) and released when
  // the request ended. A stream sends it in its last chunk.
  std::string final_text;
};

// Runs `request` to the end. `emit` (may be empty) gets each delta and returns
// false when the client can no longer be written to (which cancels).
GenerationOutcome RunGeneration(engine::Scheduler& scheduler, engine::GenerationRequest request,
                                grpc::ServerContext* context,
                                const std::function<bool(const GenerationDelta&)>& emit);

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_GENERATION_CALL_H_
