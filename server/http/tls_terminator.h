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
// Every socket is non-blocking and every wait is a poll() that also watches
// the stop signal, so no client can hold a relay by sending part of a record,
// dripping a handshake or not reading: the handshake has an absolute deadline,
// and a relay with no progress either way for idle_timeout ends.
//
// The backend port is plain HTTP on loopback: IsRelayConnection lets the
// listener refuse a local process that connects to it directly instead of
// through TLS (and its client certificate check).
//
// Contract: Start binds before it returns (errors are InvalidArgument for bad
// options or certificate files, Unavailable for a socket that cannot be
// bound). StopAccepting closes the listening socket and refuses handshakes
// that finish later; relays in progress go on. Stop gives relays up to
// `drain` to finish the answers the backend has already written, then ends
// the rest and joins every thread. Both are idempotent and thread-safe; the
// destructor calls Stop.
#ifndef OTARO_SERVER_HTTP_TLS_TERMINATOR_H_
#define OTARO_SERVER_HTTP_TLS_TERMINATOR_H_

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace otaro::http {

// PEM files, as in the server's tls.* configuration.
struct TlsFiles {
  std::string cert_file;       // certificate chain, leaf first
  std::string key_file;        // its private key (unencrypted)
  std::string client_ca_file;  // set: clients must present a certificate it signed
};

struct TlsTerminatorOptions {
  std::string name = "https";        // in log lines and errors
  std::string listen_address;        // "host:port"; port 0 picks a free one
  TlsFiles files;
  int backend_port = 0;              // the plain listener on 127.0.0.1
  // Relays open at once (handshakes included). While full, new connections
  // wait in the kernel's backlog, as they would in front of civetweb.
  int max_connections = 64;
  int handshake_timeout_ms = 10000;  // from accept to a finished handshake
  int idle_timeout_ms = 600000;      // no byte either way for this long ends a relay
};

class TlsTerminator {
 public:
  static absl::StatusOr<std::unique_ptr<TlsTerminator>> Start(TlsTerminatorOptions options);
  ~TlsTerminator();
  TlsTerminator(const TlsTerminator&) = delete;
  TlsTerminator& operator=(const TlsTerminator&) = delete;

  void StopAccepting() ABSL_LOCKS_EXCLUDED(mu_);
  void Stop(absl::Duration drain = absl::Seconds(2)) ABSL_LOCKS_EXCLUDED(mu_);

  // True when a connection to the backend from 127.0.0.1:`port` is one of
  // this terminator's relays.
  bool IsRelayConnection(int port) const ABSL_LOCKS_EXCLUDED(mu_);

  int port() const { return port_; }

 private:
  struct Connection {
    // Closed (and set to -1) only under mu_, so Stop never shuts down a
    // descriptor number the kernel has handed to someone else.
    int client_fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  enum class RelayEnd { kClean, kAborted };

  explicit TlsTerminator(TlsTerminatorOptions options);
  void AcceptLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void Serve(Connection* connection) ABSL_LOCKS_EXCLUDED(mu_);
  bool Handshake(SSL* ssl, int client);
  RelayEnd Relay(SSL* ssl, int client, int backend);
  void LingeringClose(SSL* ssl, int client);
  // Joins and forgets the relays that have ended.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsTerminatorOptions options_;
  SSL_CTX* context_ = nullptr;
  int listen_fd_ = -1;        // owned by the acceptor until StopAccepting joins it
  int accept_wake_fd_ = -1;   // eventfd: StopAccepting, or a relay slot freed
  int stop_fd_ = -1;          // eventfd: readable once Stop ends the relays
  int port_ = 0;
  std::atomic<bool> accepting_{true};
  std::thread acceptor_;
  std::mutex stop_mu_;        // one Stop / StopAccepting at a time, the rest wait

  mutable Mutex mu_;
  CondVar relay_ended_;
  std::list<Connection> connections_ ABSL_GUARDED_BY(mu_);
  std::set<int> relay_ports_ ABSL_GUARDED_BY(mu_);  // local ports of backend sockets
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace otaro::http

#endif  // OTARO_SERVER_HTTP_TLS_TERMINATOR_H_
