#include "server/metrics/http_server.h"

#include <civetweb.h>

#include <cstring>
#include <mutex>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/logging.h"
#include "server/metrics/exposition.h"

namespace otaro::metrics {
namespace {

constexpr char kPlainText[] = "text/plain; charset=utf-8";

// civetweb keeps process-wide state (e.g. its SSL setup) that must be
// initialized once, before the first context; it is never torn down because
// other contexts (or a later server) may still use it.
void InitCivetwebOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mg_init_library(0); });
}

// While mg_start2 runs on this thread, civetweb's messages are collected here:
// its error_data text for a failed bind is only "Failed to setup server ports",
// and the reason ("cannot bind to ...: Address already in use") comes through
// the log callback, on the starting thread.
thread_local std::string* start_messages = nullptr;

// Route civetweb's own diagnostics (bad requests, socket errors) into our log
// instead of its default stderr print.
int LogMessage(const mg_connection*, const char* message) {
  if (start_messages != nullptr) {
    // Reported once, in Start's status, rather than logged here as well.
    if (!start_messages->empty()) start_messages->append("; ");
    start_messages->append(message);
    return 1;
  }
  OTARO_LOG_WARN("metrics http: {}", message);
  return 1;
}

// Accepts exactly "host:port" with a decimal port in [0, 65535]; civetweb's own
// syntax (comma lists, "s"/"r" suffixes, bare ports) is refused so the option
// means one thing.
absl::Status CheckListenAddress(const std::string& address) {
  size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 || address.find(',') != std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(address).substr(colon + 1), &port) || port < 0 ||
      port > 65535 ||
      address.substr(colon + 1).find_first_not_of("0123456789") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics listen address \"", address,
        "\" is not host:port (e.g. 127.0.0.1:9464, 0.0.0.0:9464; port 0 picks a free one)"));
  }
  return absl::OkStatus();
}

void Respond(mg_connection* conn, int status, const char* content_type, absl::string_view body,
             bool allow_get = false) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  std::string length = absl::StrCat(body.size());
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  // Probes and scrapes must see the live value, never a cached one.
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  if (allow_get) mg_response_header_add(conn, "Allow", "GET", -1);
  mg_response_header_send(conn);
  if (!body.empty()) mg_write(conn, body.data(), body.size());
}

}  // namespace

MetricsHttpServer::MetricsHttpServer(const Registry* registry, MetricsHttpServerOptions options)
    : registry_(registry), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const Registry* registry, MetricsHttpServerOptions options) {
  if (registry == nullptr) return absl::InvalidArgumentError("metrics server: null registry");
  if (absl::Status s = CheckListenAddress(options.listen_address); !s.ok()) return s;
  if (options.num_threads < 1 || options.num_threads > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server: num_threads must be in [1, 64], got ", options.num_threads));
  }
  InitCivetwebOnce();
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(registry, std::move(options)));

  std::string threads = absl::StrCat(server->options_.num_threads);
  // clang-format off
  const char* config[] = {
      "listening_ports", server->options_.listen_address.c_str(),
      "num_threads", threads.c_str(),
      // With few workers, a client that connects and sends nothing must not
      // hold one for long.
      "request_timeout_ms", "10000",
      nullptr,
  };
  // clang-format on
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  // begin_request sees every request before civetweb's own routing, and is in
  // place before the socket listens: no window where civetweb answers alone,
  // and no prefix matching ("/metrics" taking "/metrics/x") to undo.
  callbacks.begin_request = &MetricsHttpServer::HandleRequest;
  callbacks.log_message = &LogMessage;
  mg_init_data init;
  init.callbacks = &callbacks;
  init.user_data = server.get();
  init.configuration_options = config;
  unsigned error_code = 0;
  char error_text[256] = "";
  mg_error_data error;
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);

  std::string messages;
  start_messages = &messages;
  mg_context* context = mg_start2(&init, &error);
  start_messages = nullptr;
  if (context == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "metrics server: cannot listen on ", server->options_.listen_address, ": ",
        !messages.empty() ? messages : (error_text[0] ? error_text : "civetweb failed")));
  }
  server->context_.store(context);

  mg_server_port ports[4];
  int n = mg_get_server_ports(context, 4, ports);
  if (n < 1 || ports[0].port <= 0) {
    server->Stop();
    return absl::InternalError(absl::StrCat("metrics server: listening on ",
                                            server->options_.listen_address,
                                            " but civetweb reports no bound port"));
  }
  server->port_ = ports[0].port;
  OTARO_LOG_INFO("metrics server listening on {} (port {}, {} threads)",
                 server->options_.listen_address, server->port_, server->options_.num_threads);
  return server;
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  // exchange makes a second Stop (or the destructor after Stop) a no-op.
  if (mg_context* context = context_.exchange(nullptr)) mg_stop(context);
}

int MetricsHttpServer::HandleRequest(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  return static_cast<MetricsHttpServer*>(info->user_data)->Handle(conn);
}

int MetricsHttpServer::Handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  // local_uri is the decoded path without the query string.
  absl::string_view path = info->local_uri != nullptr ? info->local_uri : "";
  absl::string_view method = info->request_method != nullptr ? info->request_method : "";

  if (path != "/metrics" && path != "/healthz" && path != "/readyz") {
    Respond(conn, 404, kPlainText, "not found");
    return 404;
  }
  if (method != "GET") {
    Respond(conn, 405, kPlainText, "method not allowed", /*allow_get=*/true);
    return 405;
  }
  if (path == "/metrics") {
    Respond(conn, 200, kTextContentType, registry_->Serialize());
    return 200;
  }
  if (path == "/healthz") {
    Respond(conn, 200, kPlainText, "ok");
    return 200;
  }
  bool ready = !options_.readiness || options_.readiness();
  int status = ready ? 200 : 503;
  Respond(conn, status, kPlainText, ready ? "ready" : "not ready");
  return status;
}

}  // namespace otaro::metrics
