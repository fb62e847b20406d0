// TLS in front of a plain HTTP listener on loopback: accepts TLS connections
// on the public address, completes the handshake with OpenSSL (client
// certificates when a CA is set), and relays the decrypted bytes to
// 127.0.0.1:backend_port and back, one thread per connection.
//
// Why not civetweb's own TLS: Debian's civetweb 1.15 loads libssl at run time
// by the OpenSSL 1.1 symbol names and fails on OpenSSL 3 ("cannot find
// SSL_get_peer_certificate"), so it cannot serve TLS on Debian 12 at all.
// The relay is byte-transparent: HTTP parsing, streaming (server-sent events)
// and a client's disconnect all reach the backend as if the client had
// connected to it directly.
//
// Contract: Start binds before it returns (errors are InvalidArgument for bad
// options or certificate files, Unavailable for a socket that cannot be
// bound). StopAccepting closes the listening socket only; connections in
// progress go on. Stop ends every relay and joins its thread; it is
// idempotent and the destructor calls it.
#ifndef OTARO_SERVER_HTTP_TLS_TERMINATOR_H_
#define OTARO_SERVER_HTTP_TLS_TERMINATOR_H_

#include <atomic>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/mutex.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace otaro::http {

// PEM files, as in the server's tls.* configuration.
struct TlsFiles {
  std::string cert_file;       // certificate chain, leaf first
  std::string key_file;        // its private key
  std::string client_ca_file;  // set: clients must present a certificate it signed
};

struct TlsTerminatorOptions {
  std::string name = "https";     // in log lines and errors
  std::string listen_address;     // "host:port"; port 0 picks a free one
  TlsFiles files;
  int backend_port = 0;           // the plain listener on 127.0.0.1
  int max_connections = 64;       // open relays; one more is closed at once
  int handshake_timeout_ms = 10000;  // a client that connects and stays silent
  int idle_timeout_ms = 600000;      // no byte either way for this long ends a relay
};

class TlsTerminator {
 public:
  static absl::StatusOr<std::unique_ptr<TlsTerminator>> Start(TlsTerminatorOptions options);
  ~TlsTerminator();
  TlsTerminator(const TlsTerminator&) = delete;
  TlsTerminator& operator=(const TlsTerminator&) = delete;

  void StopAccepting();
  void Stop();

  int port() const { return port_; }

 private:
  struct Connection {
    int client_fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  explicit TlsTerminator(TlsTerminatorOptions options);
  void AcceptLoop();
  void Relay(Connection* connection);
  // Joins and forgets the relays that have ended.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsTerminatorOptions options_;
  SSL_CTX* context_ = nullptr;
  int listen_fd_ = -1;       // owned by the acceptor thread until StopAccepting joins it
  int accept_wake_fd_ = -1;  // eventfd: readable once StopAccepting, wakes the acceptor
  int wake_fd_ = -1;         // eventfd: readable once Stop, wakes every relay's poll()
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  Mutex mu_;
  std::list<Connection> connections_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace otaro::http

#endif  // OTARO_SERVER_HTTP_TLS_TERMINATOR_H_
