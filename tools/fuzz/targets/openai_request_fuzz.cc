// libFuzzer entry point for the OpenAI API's request body reader
// (server/openai/openai_api.h): the first byte picks the endpoint, the rest is
// the body. Every outcome is serialized as the server would send it, so a
// throw (e.g. nlohmann on invalid UTF-8) is a crash here, not a dead server.
// Built and run by tools/fuzz/run_all.sh.
#include <cstddef>
#include <cstdint>

#include "server/openai/openai_api.h"

using otaro::server::openai::Endpoint;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (1u << 16)) return 0;
  const Endpoint endpoint = data[0] & 1 ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  absl::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  absl::StatusOr<otaro::server::openai::CompletionRequest> request =
      otaro::server::openai::ParseCompletionRequest(endpoint, body);
  if (!request.ok()) {
    (void)otaro::server::openai::JsonText(
        otaro::server::openai::ErrorFromStatus(request.status(), endpoint).ToJson());
    return 0;
  }
  // A response echoing what the request asked for (the service would answer
  // with its own text; the prompt stands in for any text here).
  otaro::v1::GenerateResponse response;
  response.set_text(request->generate.text());
  response.mutable_decode_precision()->set_mantissa_bits(
      request->generate.decode_precision().mantissa_bits());
  otaro::server::openai::ResponseHeader header{"id", 0, request->model};
  (void)otaro::server::openai::JsonText(
      otaro::server::openai::CompletionResponse(*request, header, response, {}));
  return 0;
}
