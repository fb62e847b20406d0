// Turns an API GenerateRequest into the engine's GenerationRequest, checking
// every field against the served model and the server's limits. Each error is
// INVALID_ARGUMENT (or FAILED_PRECONDITION for what the model cannot do) with a
// message naming the field, as the API promises.
#ifndef OTARO_SERVER_SERVICE_GENERATE_REQUEST_H_
#define OTARO_SERVER_SERVICE_GENERATE_REQUEST_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "engine/model/llama_model.h"
#include "engine/runtime/generator.h"
#include "engine/tokenizer/chat_template.h"
#include "otaro/v1/inference.pb.h"

namespace otaro::server {

struct GenerateLimits {
  int default_mantissa_bits = 8;
  int default_max_tokens = 256;
  int max_tokens_cap = 4096;
  size_t max_stop_strings = 8;
  size_t max_stop_bytes = 256;
};

struct PreparedRequest {
  engine::GenerationRequest request;
  // The effective values, reported back in the response.
  int prefill_bits = 0;
  int decode_bits = 0;
  uint64_t seed = 0;
};

// `random_seed` is used when the request sets none (the response reports it).
absl::StatusOr<PreparedRequest> PrepareGenerateRequest(
    const otaro::v1::GenerateRequest& api, const engine::LlamaModel& model,
    const std::optional<engine::tokenizer::ChatFormat>& chat_format,
    const GenerateLimits& limits, uint64_t random_seed);

}  // namespace otaro::server

#endif  // OTARO_SERVER_SERVICE_GENERATE_REQUEST_H_
