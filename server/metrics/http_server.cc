#include "server/metrics/http_server.h"

#include <civetweb.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/metrics/exposition.h"

namespace otaro::metrics {
namespace {

constexpr char kPlainText[] = "text/plain; charset=utf-8";

}  // namespace

MetricsHttpServer::MetricsHttpServer(const Registry* registry, MetricsHttpServerOptions options)
    : registry_(registry), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const Registry* registry, MetricsHttpServerOptions options) {
  if (registry == nullptr) return absl::InvalidArgumentError("metrics server: null registry");
  if (options.num_threads < 1 || options.num_threads > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics server: num_threads must be in [1, 64], got ", options.num_threads));
  }
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(registry, std::move(options)));
  http::HttpListenerOptions listen;
  listen.name = "metrics server";
  listen.listen_address = server->options_.listen_address;
  listen.num_threads = server->options_.num_threads;
  // Rendering every series (fmt, strings) came within a few KiB of civetweb's
  // 100 KiB worker stacks: a scrape a little larger would crash the server.
  // A thread start per scrape costs nothing beside that.
  listen.handler_on_own_thread = true;
  MetricsHttpServer* self = server.get();
  auto listener =
      http::HttpListener::Start(std::move(listen), [self](mg_connection* c) { return self->Handle(c); });
  if (!listener.ok()) return listener.status();
  server->listener_ = *std::move(listener);
  return server;
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (listener_) listener_->Stop();
}

int MetricsHttpServer::Handle(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  // local_uri is the decoded path without the query string.
  absl::string_view path = info->local_uri != nullptr ? info->local_uri : "";
  absl::string_view method = info->request_method != nullptr ? info->request_method : "";

  if (path != "/metrics" && path != "/healthz" && path != "/readyz") {
    http::SendResponse(conn, 404, kPlainText, "not found");
    return 404;
  }
  if (method != "GET") {
    http::SendResponse(conn, 405, kPlainText, "method not allowed", {{"Allow", "GET"}});
    return 405;
  }
  if (path == "/metrics") {
    http::SendResponse(conn, 200, kTextContentType, registry_->Serialize());
    return 200;
  }
  if (path == "/healthz") {
    http::SendResponse(conn, 200, kPlainText, "ok");
    return 200;
  }
  const bool ready = !options_.readiness || options_.readiness();
  const int status = ready ? 200 : 503;
  http::SendResponse(conn, status, kPlainText, ready ? "ready" : "not ready");
  return status;
}

}  // namespace otaro::metrics
