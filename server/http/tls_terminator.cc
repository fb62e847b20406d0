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

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
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

void SetTimeouts(int fd, int receive_ms, int send_ms) {
  timeval receive{receive_ms / 1000, (receive_ms % 1000) * 1000};
  timeval send{send_ms / 1000, (send_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receive, sizeof(receive));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send, sizeof(send));
}

void NoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

bool SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool SslWriteAll(SSL* ssl, const char* data, size_t size) {
  while (size > 0) {
    size_t written = 0;
    if (SSL_write_ex(ssl, data, size, &written) != 1) return false;
    data += written;
    size -= written;
  }
  return true;
}

int ConnectLoopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  NoDelay(fd);
  return fd;
}

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
    if (names != nullptr) SSL_CTX_set_client_CA_list(context, names);
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
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
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
  std::unique_ptr<TlsTerminator> terminator(new TlsTerminator(std::move(options)));
  const TlsTerminatorOptions& o = terminator->options_;
  absl::StatusOr<SSL_CTX*> context = MakeContext(o);
  if (!context.ok()) return context.status();
  terminator->context_ = *context;
  absl::StatusOr<int> fd = Listen(o, &terminator->port_);
  if (!fd.ok()) return fd.status();
  terminator->listen_fd_ = *fd;
  terminator->wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  terminator->accept_wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (terminator->wake_fd_ < 0 || terminator->accept_wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat(o.name, ": eventfd: ", std::strerror(errno)));
  }
  TlsTerminator* self = terminator.get();
  terminator->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  OTARO_LOG_INFO("{}: TLS on {} (port {}){}", o.name, o.listen_address, terminator->port_,
                 o.files.client_ca_file.empty() ? "" : ", client certificates required");
  return terminator;
}

TlsTerminator::~TlsTerminator() {
  Stop();
  if (context_ != nullptr) SSL_CTX_free(context_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (accept_wake_fd_ >= 0) ::close(accept_wake_fd_);
}

void TlsTerminator::AcceptLoop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {accept_wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      OTARO_LOG_ERROR("{}: poll: {}; no more connections are accepted", options_.name,
                      std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;  // StopAccepting
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;  // the peer gave up already, or out of descriptors
    MutexLock lock(&mu_);
    ReapLocked();
    if (static_cast<int>(connections_.size()) >= options_.max_connections) {
      OTARO_LOG_WARN("{}: {} connections open already: one refused", options_.name,
                     connections_.size());
      ::close(client);
      continue;
    }
    Connection& connection = connections_.emplace_back();
    connection.client_fd = client;
    connection.thread = std::thread([this, &connection] { Relay(&connection); });
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

void TlsTerminator::Relay(Connection* connection) {
  const int client = connection->client_fd;
  NoDelay(client);
  // The handshake must not hold a thread for long; after it, poll() decides.
  SetTimeouts(client, options_.handshake_timeout_ms, options_.handshake_timeout_ms);
  SSL* ssl = SSL_new(context_);
  int backend = -1;
  if (ssl != nullptr && SSL_set_fd(ssl, client) == 1 && SSL_accept(ssl) == 1) {
    // A stalled reader must not hold the backend's worker forever either.
    SetTimeouts(client, 0, options_.idle_timeout_ms);
    backend = ConnectLoopback(options_.backend_port);
    if (backend < 0) {
      OTARO_LOG_ERROR("{}: cannot reach the HTTP listener on 127.0.0.1:{}: {}", options_.name,
                      options_.backend_port, std::strerror(errno));
    }
  } else {
    // Scanners, plain-HTTP clients and refused client certificates end here:
    // worth a line at debug level, not a warning per connection.
    OTARO_LOG_DEBUG("{}: TLS handshake failed: {}", options_.name, OpenSslErrors());
  }
  char buffer[16384];
  bool client_open = true;
  while (backend >= 0 && !stopping_.load()) {
    // Bytes OpenSSL decrypted already are not visible to poll().
    if (!client_open || SSL_pending(ssl) == 0) {
      pollfd fds[3] = {{client, static_cast<short>(client_open ? POLLIN : 0), 0},
                       {backend, POLLIN, 0},
                       {wake_fd_, POLLIN, 0}};
      const int ready = ::poll(fds, 3, options_.idle_timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0 || fds[2].revents != 0) break;  // idle, error or stopping
      if (fds[1].revents != 0) {
        const ssize_t n = ::recv(backend, buffer, sizeof(buffer), 0);
        if (n <= 0) break;  // the backend answered and closed
        if (!SslWriteAll(ssl, buffer, static_cast<size_t>(n))) break;  // the client left
        continue;
      }
      if (fds[0].revents == 0) continue;
    }
    size_t n = 0;
    if (SSL_read_ex(ssl, buffer, sizeof(buffer), &n) != 1) {
      // The client closed (or broke) its side: let the backend see the end
      // of the request and keep relaying what it still answers.
      client_open = false;
      ::shutdown(backend, SHUT_WR);
      continue;
    }
    if (!SendAll(backend, buffer, n)) break;
  }
  if (ssl != nullptr) {
    if (backend >= 0 && client_open) SSL_shutdown(ssl);  // close_notify, best effort
    SSL_free(ssl);
  }
  if (backend >= 0) ::close(backend);
  ERR_clear_error();
  // The descriptor closes here, under the lock, so Stop never shuts down a
  // number the kernel already gave to someone else.
  MutexLock lock(&mu_);
  ::close(client);
  connection->client_fd = -1;
  connection->done.store(true);
}

void TlsTerminator::StopAccepting() {
  const uint64_t one = 1;
  if (accept_wake_fd_ >= 0) (void)!::write(accept_wake_fd_, &one, sizeof(one));
  if (acceptor_.joinable()) acceptor_.join();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
}

void TlsTerminator::Stop() {
  StopAccepting();
  stopping_.store(true);
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof(one));
  std::list<Connection> connections;
  {
    MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    // A relay blocked inside OpenSSL (a handshake, a write to a slow client)
    // does not poll the wake descriptor: end its socket under it.
    for (Connection& c : connections_) {
      if (c.client_fd >= 0) ::shutdown(c.client_fd, SHUT_RDWR);
    }
    connections.splice(connections.begin(), connections_);
  }
  for (Connection& c : connections) c.thread.join();
}

}  // namespace otaro::http
