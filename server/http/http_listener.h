// One civetweb listener (Debian's libcivetweb, C API): binds "host:port", runs
// its own worker threads and hands every request to one handler, before any
// civetweb routing. The metrics endpoint and the OpenAI API each own one, so a
// slow scrape never takes a generation thread and a saturated API never hides
// the metrics.
#ifndef OTARO_SERVER_HTTP_HTTP_LISTENER_H_
#define OTARO_SERVER_HTTP_HTTP_LISTENER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/http/tls_terminator.h"

struct mg_connection;
struct mg_request_info;
struct mg_context;

namespace otaro::http {

struct HttpListenerOptions {
  // What the listener is for, in log lines and errors ("metrics server").
  std::string name = "http";
  // "host:port", e.g. "127.0.0.1:9464" or "0.0.0.0:9464". Port 0 asks the
  // kernel for a free port; port() reports the one bound.
  std::string listen_address;
  // Worker threads, 1..1024: each request holds one for its whole duration.
  int num_threads = 2;
  // Limit of each socket read or write; a client that connects and sends
  // nothing must not hold a worker for long.
  int request_timeout_ms = 10000;
  // Debian builds civetweb with 100 KiB worker stacks (USE_STACK_SIZE), too
  // small for a handler that makes gRPC calls and builds JSON (it overflowed
  // in vsnprintf). When set, each request runs on a thread of its own with the
  // default stack (8 MiB) while the civetweb worker waits; a thread start
  // costs tens of microseconds, nothing beside a generation.
  bool handler_on_own_thread = false;
  // Set: the listener speaks HTTPS on listen_address. civetweb then listens on
  // 127.0.0.1 (a free port) behind a TlsTerminator (tls_terminator.h says why);
  // requests, streams and disconnects behave as over plain HTTP.
  std::optional<TlsFiles> tls;
};

// Returns the HTTP status it answered with (for civetweb's access log).
using HttpHandler = std::function<int(mg_connection*)>;

class HttpListener {
 public:
  // Starts listening. Errors: InvalidArgument for a malformed address or
  // thread count, Unavailable when the socket cannot be bound (port in use,
  // address not local), with civetweb's reason.
  static absl::StatusOr<std::unique_ptr<HttpListener>> Start(HttpListenerOptions options,
                                                             HttpHandler handler);

  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  // Closes the listening socket and joins the workers, letting requests in
  // progress finish. Idempotent.
  void Stop();

  // The port actually bound (the kernel's choice when asked for port 0): with
  // TLS, the terminator's.
  int port() const { return tls_ ? tls_->port() : port_; }
  // civetweb's own port: with TLS, the plaintext loopback port behind the
  // terminator (which refuses anything but the relays); else port().
  int plaintext_port() const { return port_; }

 private:
  HttpListener(HttpListenerOptions options, HttpHandler handler);
  static int Dispatch(mg_connection* conn);
  // True (after answering 403) when a request reached civetweb behind TLS
  // without coming through a relay.
  bool RefuseIfNotRelayed(mg_connection* conn, const mg_request_info& info) const;

  const HttpListenerOptions options_;
  const HttpHandler handler_;
  std::atomic<mg_context*> context_{nullptr};
  int port_ = 0;
  std::unique_ptr<TlsTerminator> tls_;
  // tls_ for the civetweb threads (which may see a request before Start has
  // set tls_; they refuse it then).
  std::atomic<const TlsTerminator*> relay_check_{nullptr};
};

// Accepts exactly "host:port" with a decimal port in [0, 65535]; civetweb's own
// syntax (comma lists, "s"/"r" suffixes, bare ports) is refused so an option
// means one thing. `what` names the option in the error.
absl::Status CheckListenAddress(absl::string_view address, absl::string_view what);

// The request's body, read whole. ResourceExhausted when it is over `limit`
// bytes (refused from Content-Length before anything is read, when the client
// sends one; else as soon as a chunked body passes it); InvalidArgument when
// it cannot be read or ends before its Content-Length.
absl::StatusOr<std::string> ReadRequestBody(mg_connection* conn, int64_t limit);

// Sends a complete response with Content-Length and Cache-Control: no-store;
// `extra_headers` are name/value pairs.
void SendResponse(mg_connection* conn, int status, absl::string_view content_type,
                  absl::string_view body,
                  std::initializer_list<std::pair<const char*, std::string>> extra_headers = {});

}  // namespace otaro::http

#endif  // OTARO_SERVER_HTTP_HTTP_LISTENER_H_
