#include "server/http/http_listener.h"

#include <civetweb.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/base/attributes.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace otaro::http {
namespace {

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
  OTARO_LOG_WARN("http: {}", message);
  return 1;
}

}  // namespace

absl::Status CheckListenAddress(absl::string_view address, absl::string_view what) {
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == absl::string_view::npos || colon == 0 ||
      address.find(',') != absl::string_view::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535 ||
      address.substr(colon + 1).find_first_not_of("0123456789") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " \"", address,
        "\" is not host:port (e.g. 127.0.0.1:9464, 0.0.0.0:9464; port 0 picks a free one)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadRequestBody(mg_connection* conn, int64_t limit) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (info->content_length > limit) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the request body is ", info->content_length, " bytes; the limit is ", limit));
  }
  std::string body;
  char buffer[16384];
  while (true) {
    const int n = mg_read(conn, buffer, sizeof(buffer));
    if (n < 0) return absl::InvalidArgumentError("the request body could not be read");
    if (n == 0) break;
    body.append(buffer, static_cast<size_t>(n));
    if (static_cast<int64_t>(body.size()) > limit) {  // chunked, without a length
      return absl::ResourceExhaustedError(
          absl::StrCat("the request body is over the limit of ", limit, " bytes"));
    }
  }
  if (info->content_length >= 0 && static_cast<int64_t>(body.size()) != info->content_length) {
    return absl::InvalidArgumentError("the request body is shorter than its Content-Length");
  }
  return body;
}

void SendResponse(mg_connection* conn, int status, absl::string_view content_type,
                  absl::string_view body,
                  std::initializer_list<std::pair<const char*, std::string>> extra_headers) {
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type.data(),
                         static_cast<int>(content_type.size()));
  const std::string length = absl::StrCat(body.size());
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  // Probes, scrapes and API answers must be live, never a cached copy.
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  for (const auto& [name, value] : extra_headers) {
    mg_response_header_add(conn, name, value.c_str(), -1);
  }
  mg_response_header_send(conn);
  if (!body.empty()) mg_write(conn, body.data(), body.size());
}

HttpListener::HttpListener(HttpListenerOptions options, HttpHandler handler)
    : options_(std::move(options)), handler_(std::move(handler)) {}

absl::StatusOr<std::unique_ptr<HttpListener>> HttpListener::Start(HttpListenerOptions options,
                                                                  HttpHandler handler) {
  if (absl::Status s =
          CheckListenAddress(options.listen_address, absl::StrCat(options.name, " listen address"));
      !s.ok()) {
    return s;
  }
  if (options.num_threads < 1 || options.num_threads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.name, ": num_threads must be in [1, 1024], got ", options.num_threads));
  }
  if (!handler) return absl::InvalidArgumentError(absl::StrCat(options.name, ": no handler"));
  InitCivetwebOnce();
  std::unique_ptr<HttpListener> listener(new HttpListener(std::move(options), std::move(handler)));
  const HttpListenerOptions& o = listener->options_;

  // Behind TLS, civetweb serves the terminator only.
  const std::string civetweb_address = o.tls ? "127.0.0.1:0" : o.listen_address;
  const std::string threads = absl::StrCat(o.num_threads);
  const std::string timeout = absl::StrCat(o.request_timeout_ms);
  // clang-format off
  const char* config[] = {
      "listening_ports", civetweb_address.c_str(),
      "num_threads", threads.c_str(),
      "request_timeout_ms", timeout.c_str(),
      nullptr,
  };
  // clang-format on
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  // begin_request sees every request before civetweb's own routing, and is in
  // place before the socket listens: no window where civetweb answers alone,
  // and no prefix matching ("/metrics" taking "/metrics/x") to undo.
  callbacks.begin_request = &HttpListener::Dispatch;
  callbacks.log_message = &LogMessage;
  mg_init_data init;
  init.callbacks = &callbacks;
  init.user_data = listener.get();
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
        o.name, ": cannot listen on ", o.listen_address, ": ",
        !messages.empty() ? messages : (error_text[0] ? error_text : "civetweb failed")));
  }
  listener->context_.store(context);

  mg_server_port ports[4];
  const int n = mg_get_server_ports(context, 4, ports);
  if (n < 1 || ports[0].port <= 0) {
    listener->Stop();
    return absl::InternalError(absl::StrCat(o.name, ": listening on ", o.listen_address,
                                            " but civetweb reports no bound port"));
  }
  listener->port_ = ports[0].port;
  if (o.tls) {
    TlsTerminatorOptions tls;
    tls.name = o.name;
    tls.listen_address = o.listen_address;
    tls.files = *o.tls;
    tls.backend_port = listener->port_;
    // civetweb queues connections beyond its workers; the relays allow a
    // queue of the same order before refusing outright.
    tls.max_connections = 4 * o.num_threads;
    tls.handshake_timeout_ms = std::min(o.request_timeout_ms, 10000);
    tls.idle_timeout_ms = o.request_timeout_ms;
    absl::StatusOr<std::unique_ptr<TlsTerminator>> terminator = TlsTerminator::Start(tls);
    if (!terminator.ok()) {
      listener->Stop();
      return terminator.status();
    }
    listener->tls_ = *std::move(terminator);
    listener->relay_check_.store(listener->tls_.get());
    return listener;
  }
  OTARO_LOG_INFO("{} listening on {} (port {}, {} threads)", o.name, o.listen_address,
                 listener->port_, o.num_threads);
  return listener;
}

HttpListener::~HttpListener() { Stop(); }

void HttpListener::Stop() {
  // No new connections; those in progress keep their relay while civetweb
  // lets their requests finish; then the relays end.
  if (tls_) tls_->StopAccepting();
  // exchange makes a second Stop (or the destructor after Stop) a no-op.
  if (mg_context* context = context_.exchange(nullptr)) mg_stop(context);
  if (tls_) tls_->Stop(absl::Seconds(2));
}

// Behind TLS only the relays may talk to civetweb: a local process that
// connects to its loopback port directly would skip TLS and the client
// certificate check. (Null until the terminator runs: refused too.) Out of
// line: Dispatch runs on civetweb's 100 KiB stacks and must stay small.
ABSL_ATTRIBUTE_NOINLINE bool HttpListener::RefuseIfNotRelayed(mg_connection* conn,
                                                             const mg_request_info& info) const {
  const TlsTerminator* tls = relay_check_.load();
  if (tls != nullptr && std::strcmp(info.remote_addr, "127.0.0.1") == 0 &&
      tls->IsRelayConnection(info.remote_port)) {
    return false;
  }
  OTARO_LOG_WARN("{}: refused a plaintext request from {}:{} that did not come through TLS",
                 options_.name, info.remote_addr, info.remote_port);
  SendResponse(conn, 403, "text/plain", "this listener speaks HTTPS only\n");
  return true;
}

int HttpListener::Dispatch(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  const HttpListener* self = static_cast<const HttpListener*>(info->user_data);
  if (self->options_.tls && self->RefuseIfNotRelayed(conn, *info)) return 403;
  if (!self->options_.handler_on_own_thread) return self->handler_(conn);
  // The connection is used by one thread at a time: this one waits.
  int status = 500;
  std::thread worker([&] { status = self->handler_(conn); });
  worker.join();
  return status;
}

}  // namespace otaro::http
