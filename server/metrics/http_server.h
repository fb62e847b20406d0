// A small HTTP endpoint for Prometheus scrapes and orchestrator probes, on its
// own HTTP listener (server/http):
//   GET /metrics  200, the registry in text format 0.0.4
//   GET /healthz  200 "ok" while the process serves at all (liveness)
//   GET /readyz   200 "ready" when the readiness callback says so, else 503
// Any other path is 404, any other method on these paths 405. The listener's
// small thread pool is apart from the gRPC server's, so a slow scrape never
// takes a request thread and a saturated request path never hides the metrics.
#ifndef OTARO_SERVER_METRICS_HTTP_SERVER_H_
#define OTARO_SERVER_METRICS_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/http/http_listener.h"
#include "server/metrics/registry.h"

namespace otaro::metrics {

struct MetricsHttpServerOptions {
  // "host:port", e.g. "127.0.0.1:9464" or "0.0.0.0:9464". Port 0 asks the
  // kernel for a free port; port() reports the one bound.
  std::string listen_address = "127.0.0.1:9464";
  // Worker threads, 1..64. Scrapes are rare and cheap; two lets a
  // probe through while a scrape is being served.
  int num_threads = 2;
  // Decides /readyz; called on a server thread for every probe, so it must be
  // thread-safe and quick (read an atomic). Unset means always ready.
  std::function<bool()> readiness;
};

class MetricsHttpServer {
 public:
  // Starts listening. `registry` must outlive the server. Errors:
  // InvalidArgument for a malformed address or thread count, Unavailable when
  // civetweb cannot listen (port in use, address not local), with its reason.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const Registry* registry,
                                                                  MetricsHttpServerOptions options);

  // Stops (see Stop).
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Closes the listening socket and joins the worker threads, letting requests
  // in progress finish. Idempotent.
  void Stop();

  // The port actually bound (the kernel's choice when asked for port 0).
  int port() const { return listener_->port(); }

 private:
  MetricsHttpServer(const Registry* registry, MetricsHttpServerOptions options);
  int Handle(mg_connection* conn);

  const Registry* const registry_;
  const MetricsHttpServerOptions options_;
  std::unique_ptr<http::HttpListener> listener_;
};

}  // namespace otaro::metrics

#endif  // OTARO_SERVER_METRICS_HTTP_SERVER_H_
