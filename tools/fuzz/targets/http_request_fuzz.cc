// libFuzzer entry point for the HTTP layer of the OpenAI API: each input is
// sent as raw bytes over loopback to a real HttpListener (civetweb's request
// parser, our dispatch, ReadRequestBody, SendResponse), whose handler does what
// the API's does before any gRPC call: reads the Authorization header and the
// body under a limit, and parses a completions or chat body
// (server/openai/openai_api.h). A crash anywhere in that path, civetweb's
// parser included (it runs in this process), fails the run; a request that
// hangs the listener shows as libFuzzer's timeout.
// Built and run by tools/fuzz/run_all.sh.
#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "server/http/http_listener.h"
#include "server/openai/openai_api.h"

namespace {

using otaro::server::openai::Endpoint;

int Handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  const std::string uri = info->local_uri != nullptr ? info->local_uri : "";
  const char* authorization = mg_get_header(conn, "Authorization");
  (void)authorization;
  absl::StatusOr<std::string> body = otaro::http::ReadRequestBody(conn, 1 << 16);
  if (!body.ok()) {
    otaro::http::SendResponse(conn, absl::IsResourceExhausted(body.status()) ? 413 : 400,
                              "application/json", body.status().message());
    return 400;
  }
  const Endpoint endpoint =
      uri == "/v1/chat/completions" ? Endpoint::kChatCompletions : Endpoint::kCompletions;
  absl::StatusOr<otaro::server::openai::CompletionRequest> request =
      otaro::server::openai::ParseCompletionRequest(endpoint, *body);
  const std::string answer =
      request.ok() ? request->generate.text()
                   : otaro::server::openai::JsonText(
                         otaro::server::openai::ErrorFromStatus(request.status(), endpoint)
                             .ToJson());
  otaro::http::SendResponse(conn, request.ok() ? 200 : 400, "application/json", answer);
  return 200;
}

int ListenerPort() {
  static const int port = [] {
    otaro::http::HttpListenerOptions options;
    options.name = "fuzz http";
    options.listen_address = "127.0.0.1:0";
    options.num_threads = 2;
    options.request_timeout_ms = 2000;
    options.handler_on_own_thread = true;  // as the OpenAI API runs it
    auto listener = otaro::http::HttpListener::Start(options, &Handle);
    if (!listener.ok()) std::abort();
    return (*listener.value().release()).port();  // lives for the whole run
  }();
  return port;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 16)) return 0;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(ListenerPort()));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) std::abort();
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  (void)::send(fd, data, size, MSG_NOSIGNAL);
  // The end of the input is the end of the request: civetweb answers what it
  // has (or closes) instead of waiting out its timeout.
  ::shutdown(fd, SHUT_WR);
  char buffer[4096];
  while (::recv(fd, buffer, sizeof(buffer), 0) > 0) {
  }
  ::close(fd);
  return 0;
}
