#include "server/http/tls_terminator.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcntl.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "server/http/http_listener.h"

namespace otaro::http {
namespace {

// OpenSSL's queued errors as one line (and the queue emptied).
std::string OpenSslErrors() {
  std::string text;
  while (unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "no OpenSSL error queued" : text;
}

void NoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL, 0) | O_NONBLOCK); }

// Milliseconds from now to `deadline`, at least 0, for poll().
int MillisecondsUntil(absl::Time deadline) {
  return static_cast<int>(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
}

bool WouldBlock() { return errno == EAGAIN || errno == EWOULDBLOCK; }

void Wake(int eventfd_fd) {
  const uint64_t one = 1;
  (void)!::write(eventfd_fd, &one, sizeof(one));
}

// A connected, non-blocking socket to 127.0.0.1:port (-1 and errno on
// failure); *local_port is the port it connects from.
int ConnectLoopback(int port, int* local_port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Blocking: a loopback connect completes (or fails) at once.
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  sockaddr_in local{};
  socklen_t length = sizeof(local);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
  *local_port = ntohs(local.sin_port);
  NoDelay(fd);
  SetNonBlocking(fd);
  return fd;
}

// A key file with a passphrase must fail at start-up, not prompt on a tty.
int NoPassphrase(char*, int, int, void*) { return 0; }

// Offers HTTP/1.1 only (the backend speaks nothing else): a client that asks
// for h2 first falls back, one that offers no ALPN is served as before.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_length,
               const unsigned char* offered, unsigned int offered_length, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_length, kHttp11, sizeof(kHttp11), offered,
                            offered_length) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

absl::StatusOr<SSL_CTX*> MakeContext(const TlsTerminatorOptions& o) {
  SSL_CTX* context = SSL_CTX_new(TLS_server_method());
  if (context == nullptr) {
    return absl::InternalError(absl::StrCat(o.name, ": SSL_CTX_new: ", OpenSslErrors()));
  }
  auto fail = [&](absl::string_view what, const std::string& file) {
    const std::string reason = OpenSslErrors();
    SSL_CTX_free(context);
    return absl::InvalidArgumentError(
        absl::StrCat(o.name, ": ", what, " ", file, ": ", reason));
  };
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION);
  // Non-blocking relays: SSL_write may take part of a buffer, and a write
  // retried after WANT_WRITE may come from a buffer that has moved.
  SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_default_passwd_cb(context, &NoPassphrase);
  // Required once peers are verified: without it a TLS 1.2 client resuming a
  // session is refused with an internal error.
  static const unsigned char kSessionContext[] = "otaro";
  SSL_CTX_set_session_id_context(context, kSessionContext, sizeof(kSessionContext) - 1);
  if (SSL_CTX_use_certificate_chain_file(context, o.files.cert_file.c_str()) != 1) {
    return fail("cannot use the certificate chain", o.files.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(context, o.files.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return fail("cannot use the private key", o.files.key_file);
  }
  if (SSL_CTX_check_private_key(context) != 1) {
    return fail("the private key does not match the certificate: key", o.files.key_file);
  }
  if (!o.files.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(context, o.files.client_ca_file.c_str(), nullptr) != 1) {
      return fail("cannot load the client CA", o.files.client_ca_file);
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.files.client_ca_file.c_str());
    if (names == nullptr) return fail("cannot read the client CA names of", o.files.client_ca_file);
    SSL_CTX_set_client_CA_list(context, names);
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  SSL_CTX_set_alpn_select_cb(context, &SelectAlpn, nullptr);
  return context;
}

absl::StatusOr<int> Listen(const TlsTerminatorOptions& o, int* port) {
  const size_t colon = o.listen_address.rfind(':');
  std::string host = o.listen_address.substr(0, colon);
  const std::string service = o.listen_address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(o.name, ": cannot resolve ", o.listen_address,
                                                   ": ", gai_strerror(rc)));
  }
  std::string reason = "no address";
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      reason = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(found);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat(o.name, ": cannot listen on ", o.listen_address, ": ", reason));
  }
  sockaddr_storage bound{};
  socklen_t length = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
  *port = ntohs(bound.ss_family == AF_INET6
                    ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                    : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

}  // namespace

TlsTerminator::TlsTerminator(TlsTerminatorOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<TlsTerminator>> TlsTerminator::Start(
    TlsTerminatorOptions options) {
  if (absl::Status s = CheckListenAddress(options.listen_address,
                                          absl::StrCat(options.name, " listen address"));
      !s.ok()) {
    return s;
  }
  if (options.files.cert_file.empty() || options.files.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(options.name, ": TLS needs a certificate "
                                                   "and its key"));
  }
  if (options.backend_port <= 0 || options.backend_port > 65535 || options.max_connections < 1 ||
      options.handshake_timeout_ms < 1 || options.idle_timeout_ms < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.name, ": backend_port, max_connections and the timeouts must be positive"));
  }
  // OpenSSL writes to sockets with write(), not send(MSG_NOSIGNAL): a client
  // that resets mid-answer must not kill the server with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<TlsTerminator> terminator(new TlsTerminator(std::move(options)));
  const TlsTerminatorOptions& o = terminator->options_;
  absl::StatusOr<SSL_CTX*> context = MakeContext(o);
  if (!context.ok()) return context.status();
  terminator->context_ = *context;
  terminator->accept_wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  terminator->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (terminator->accept_wake_fd_ < 0 || terminator->stop_fd_ < 0) {
    return absl::InternalError(absl::StrCat(o.name, ": eventfd: ", std::strerror(errno)));
  }
  absl::StatusOr<int> fd = Listen(o, &terminator->port_);
  if (!fd.ok()) return fd.status();
  terminator->listen_fd_ = *fd;
  TlsTerminator* self = terminator.get();
  terminator->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  OTARO_LOG_INFO("{}: TLS on {} (port {}){}", o.name, o.listen_address, terminator->port_,
                 o.files.client_ca_file.empty() ? "" : ", client certificates required");
  return terminator;
}

TlsTerminator::~TlsTerminator() {
  Stop(absl::ZeroDuration());
  if (context_ != nullptr) SSL_CTX_free(context_);
  if (accept_wake_fd_ >= 0) ::close(accept_wake_fd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

bool TlsTerminator::IsRelayConnection(int port) const {
  MutexLock lock(&mu_);
  return relay_ports_.count(port) != 0;
}

void TlsTerminator::AcceptLoop() {
  absl::Time last_accept_error = absl::InfinitePast();
  while (true) {
    bool full;
    {
      MutexLock lock(&mu_);
      ReapLocked();
      full = static_cast<int>(connections_.size()) >= options_.max_connections;
    }
    // While full, the listening socket is not watched: new connections wait
    // in the kernel's backlog until a relay ends and wakes this loop.
    pollfd fds[2] = {{full ? -1 : listen_fd_, POLLIN, 0}, {accept_wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      OTARO_LOG_ERROR("{}: poll: {}; no more connections are accepted", options_.name,
                      std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) {
      uint64_t count;
      (void)!::read(accept_wake_fd_, &count, sizeof(count));
      if (!accepting_.load()) return;
      continue;
    }
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (client < 0) {
      if (WouldBlock() || errno == EINTR || errno == ECONNABORTED) continue;
      // Out of descriptors or memory: the socket stays readable, so wait
      // instead of spinning, and say so at most once a minute.
      if (absl::Now() - last_accept_error > absl::Minutes(1)) {
        OTARO_LOG_ERROR("{}: accept: {}", options_.name, std::strerror(errno));
        last_accept_error = absl::Now();
      }
      absl::SleepFor(absl::Milliseconds(100));
      continue;
    }
    MutexLock lock(&mu_);
    Connection& connection = connections_.emplace_back();
    connection.client_fd = client;
    try {
      connection.thread = std::thread([this, &connection] { Serve(&connection); });
    } catch (const std::system_error& e) {
      OTARO_LOG_ERROR("{}: cannot start a relay thread ({}): connection closed", options_.name,
                      e.what());
      ::close(client);
      connections_.pop_back();
    }
  }
}

void TlsTerminator::ReapLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->done.load()) {
      it->thread.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

bool TlsTerminator::Handshake(SSL* ssl, int client) {
  const absl::Time deadline = absl::Now() + absl::Milliseconds(options_.handshake_timeout_ms);
  while (true) {
    const int result = SSL_accept(ssl);
    if (result == 1) return true;
    const int error = SSL_get_error(ssl, result);
    const short events =
        error == SSL_ERROR_WANT_READ ? POLLIN : error == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    if (events == 0) {
      // Scanners, plain-HTTP clients and refused client certificates end
      // here: worth a line at debug level, not a warning per connection.
      OTARO_LOG_DEBUG("{}: TLS handshake failed: {}", options_.name, OpenSslErrors());
      return false;
    }
    const int left = MillisecondsUntil(deadline);
    if (left == 0) {
      OTARO_LOG_DEBUG("{}: TLS handshake not finished in {} ms", options_.name,
                      options_.handshake_timeout_ms);
      return false;
    }
    pollfd fds[2] = {{client, events, 0}, {stop_fd_, POLLIN, 0}};
    const int ready = ::poll(fds, 2, left);
    if (ready < 0 && errno != EINTR) return false;
    if (fds[1].revents != 0) return false;
  }
}

TlsTerminator::RelayEnd TlsTerminator::Relay(SSL* ssl, int client, int backend) {
  std::string to_backend;  // decrypted from the client, not yet sent
  size_t to_backend_sent = 0;
  char to_client[16384];   // from the backend, not yet taken by SSL_write
  size_t to_client_size = 0;
  bool client_reading = true;   // the client may still send
  bool backend_reading = true;  // the backend may still answer
  bool backend_write_shut = false;
  absl::Time last_progress = absl::Now();
  while (true) {
    bool progress = false;
    short client_events = 0;
    short backend_events = 0;
    if (client_reading && to_backend_sent == to_backend.size()) {
      char buffer[16384];
      size_t n = 0;
      const int result = SSL_read_ex(ssl, buffer, sizeof(buffer), &n);
      if (result == 1) {
        to_backend.assign(buffer, n);
        to_backend_sent = 0;
        progress = true;
      } else {
        const int error = SSL_get_error(ssl, result);
        if (error == SSL_ERROR_WANT_READ) {
          client_events |= POLLIN;
        } else if (error == SSL_ERROR_WANT_WRITE) {
          client_events |= POLLOUT;
        } else {
          // close_notify, a bare FIN or a reset: the request side is over;
          // what the backend still answers is written if the client reads.
          client_reading = false;
          ERR_clear_error();
        }
      }
    }
    if (to_backend_sent < to_backend.size()) {
      const ssize_t n = ::send(backend, to_backend.data() + to_backend_sent,
                               to_backend.size() - to_backend_sent, MSG_NOSIGNAL);
      if (n > 0) {
        to_backend_sent += static_cast<size_t>(n);
        progress = true;
      } else if (n < 0 && WouldBlock()) {
        backend_events |= POLLOUT;
      } else if (!(n < 0 && errno == EINTR)) {
        return RelayEnd::kAborted;  // the backend is gone
      }
    }
    if (!client_reading && to_backend_sent == to_backend.size() && !backend_write_shut) {
      ::shutdown(backend, SHUT_WR);  // the backend sees the end of the request
      backend_write_shut = true;
    }
    if (backend_reading && to_client_size == 0) {
      const ssize_t n = ::recv(backend, to_client, sizeof(to_client), 0);
      if (n > 0) {
        to_client_size = static_cast<size_t>(n);
        progress = true;
      } else if (n == 0) {
        backend_reading = false;
      } else if (WouldBlock()) {
        backend_events |= POLLIN;
      } else if (errno != EINTR) {
        return RelayEnd::kAborted;
      }
    }
    if (to_client_size > 0) {
      size_t n = 0;
      const int result = SSL_write_ex(ssl, to_client, to_client_size, &n);
      if (result == 1) {
        std::memmove(to_client, to_client + n, to_client_size - n);
        to_client_size -= n;
        progress = true;
      } else {
        const int error = SSL_get_error(ssl, result);
        if (error == SSL_ERROR_WANT_WRITE) {
          client_events |= POLLOUT;
        } else if (error == SSL_ERROR_WANT_READ) {
          client_events |= POLLIN;
        } else {
          ERR_clear_error();
          return RelayEnd::kAborted;  // the client is gone: closing the backend tells it
        }
      }
    }
    if (!backend_reading && to_client_size == 0) return RelayEnd::kClean;
    if (progress) {
      last_progress = absl::Now();
      continue;
    }
    const int left =
        MillisecondsUntil(last_progress + absl::Milliseconds(options_.idle_timeout_ms));
    if (left == 0) return RelayEnd::kAborted;
    // A descriptor nothing is waited on is left out (-1): a closed client
    // would otherwise report POLLHUP forever.
    pollfd fds[3] = {{client_events != 0 ? client : -1, client_events, 0},
                     {backend_events != 0 ? backend : -1, backend_events, 0},
                     {stop_fd_, POLLIN, 0}};
    const int ready = ::poll(fds, 3, left);
    if (ready < 0 && errno != EINTR) return RelayEnd::kAborted;
    if (fds[2].revents != 0) return RelayEnd::kAborted;
  }
}

void TlsTerminator::LingeringClose(SSL* ssl, int client) {
  // close_notify tells the client the answer is complete (not truncated).
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  while (true) {
    const int result = SSL_shutdown(ssl);
    if (result >= 0) break;  // sent (0: the client's close_notify not yet seen; not needed)
    const int error = SSL_get_error(ssl, result);
    const short events =
        error == SSL_ERROR_WANT_WRITE ? POLLOUT : error == SSL_ERROR_WANT_READ ? POLLIN : 0;
    const int left = MillisecondsUntil(deadline);
    if (events == 0 || left == 0) {
      ERR_clear_error();
      return;
    }
    pollfd fds[2] = {{client, events, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, left) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
  }
  // An answer sent before the request was read whole (401 before the body,
  // 413 from Content-Length): closing with unread data would reset the
  // connection and the client could lose the answer. Read what is still
  // coming, for a little while, before closing.
  ::shutdown(client, SHUT_WR);
  char discard[16384];
  while (true) {
    const ssize_t n = ::recv(client, discard, sizeof(discard), 0);
    if (n == 0 || (n < 0 && !WouldBlock() && errno != EINTR)) return;
    if (n > 0) continue;
    const int left = MillisecondsUntil(deadline);
    if (left == 0) return;
    pollfd fds[2] = {{client, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, left) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
  }
}

void TlsTerminator::Serve(Connection* connection) {
  const int client = connection->client_fd;  // only this thread closes it
  NoDelay(client);
  SSL* ssl = SSL_new(context_);
  int backend = -1;
  int backend_port = 0;
  if (ssl != nullptr && SSL_set_fd(ssl, client) == 1 && Handshake(ssl, client) &&
      accepting_.load()) {  // once stopping, the backend may be gone or its port reused
    backend = ConnectLoopback(options_.backend_port, &backend_port);
    if (backend < 0) {
      OTARO_LOG_ERROR("{}: cannot reach the HTTP listener on 127.0.0.1:{}: {}", options_.name,
                      options_.backend_port, std::strerror(errno));
    } else {
      MutexLock lock(&mu_);
      relay_ports_.insert(backend_port);
    }
  }
  if (backend >= 0) {
    if (Relay(ssl, client, backend) == RelayEnd::kClean) LingeringClose(ssl, client);
    ::close(backend);
    MutexLock lock(&mu_);
    relay_ports_.erase(backend_port);
  }
  if (ssl != nullptr) SSL_free(ssl);
  ERR_clear_error();  // this thread's queue, for whoever runs on it next
  {
    MutexLock lock(&mu_);
    ::close(client);
    connection->client_fd = -1;
    connection->done.store(true);
  }
  relay_ended_.SignalAll();
  Wake(accept_wake_fd_);  // a slot is free
}

void TlsTerminator::StopAccepting() {
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  if (!accepting_.exchange(false)) return;
  Wake(accept_wake_fd_);
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  listen_fd_ = -1;
}

void TlsTerminator::Stop(absl::Duration drain) {
  StopAccepting();
  std::lock_guard<std::mutex> stop_lock(stop_mu_);
  std::list<Connection> connections;
  {
    MutexLock lock(&mu_);
    if (stopped_) return;
    // Relays whose backend has answered finish delivering it (and end by
    // themselves); the rest are ended after `drain`.
    relay_ended_.WaitFor(&mu_, drain, [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::all_of(connections_.begin(), connections_.end(),
                         [](const Connection& c) { return c.done.load(); });
    });
    stopped_ = true;
    connections.splice(connections.begin(), connections_);
  }
  Wake(stop_fd_);
  for (Connection& c : connections) c.thread.join();
}

}  // namespace otaro::http
