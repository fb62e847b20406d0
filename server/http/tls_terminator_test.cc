// HttpListener with TLS (its TlsTerminator in front of civetweb), against a
// real OpenSSL client over loopback with throw-away certificates: HTTPS
// requests and streamed answers arrive intact, plain HTTP and clients without
// the required certificate get nothing, a client's disconnect reaches the
// handler as a failed write (so a stream can cancel its call), bad certificate
// files are clear errors, and Stop ends promptly with clients still connected.
#include "server/http/http_listener.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"
#include "server/auth/testing/test_certs.h"

namespace otaro::http {
namespace {

using server::auth::testing::MakeTestCerts;
using server::auth::testing::TestCerts;

int ConnectTcp(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return -1;
  }
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  return fd;
}

// A TLS client that trusts only the test CA and checks the server's name.
class TlsClient {
 public:
  TlsClient(const TestCerts& certs, bool with_client_certificate) {
    context_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(context_, certs.ca_cert.c_str(), nullptr);
    SSL_CTX_set_verify(context_, SSL_VERIFY_PEER, nullptr);
    if (with_client_certificate) {
      SSL_CTX_use_certificate_file(context_, certs.client_cert.c_str(), SSL_FILETYPE_PEM);
      SSL_CTX_use_PrivateKey_file(context_, certs.client_key.c_str(), SSL_FILETYPE_PEM);
    }
  }
  ~TlsClient() {
    Close();
    SSL_CTX_free(context_);
  }

  // True when the handshake completed and the server's certificate verified.
  bool Connect(int port) {
    fd_ = ConnectTcp(port);
    if (fd_ < 0) return false;
    ssl_ = SSL_new(context_);
    SSL_set_fd(ssl_, fd_);
    SSL_set_tlsext_host_name(ssl_, "localhost");
    SSL_set1_host(ssl_, "localhost");
    return SSL_connect(ssl_) == 1;
  }
  bool Send(const std::string& data) {
    size_t written = 0;
    return SSL_write_ex(ssl_, data.data(), data.size(), &written) == 1 &&
           written == data.size();
  }
  // Reads until `until` appears (or the connection ends, empty `until`).
  std::string Read(const std::string& until = "") {
    std::string got;
    char buffer[4096];
    size_t n = 0;
    while ((until.empty() || !absl::StrContains(got, until)) &&
           SSL_read_ex(ssl_, buffer, sizeof(buffer), &n) == 1) {
      got.append(buffer, n);
    }
    ERR_clear_error();
    return got;
  }
  void Close() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    ssl_ = nullptr;
    fd_ = -1;
  }

 private:
  SSL_CTX* context_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
};

// Sends `request` over plain TCP and returns everything read until the
// server closes; nullopt when nothing accepts the connection.
std::optional<std::string> PlaintextExchange(int port, const std::string& request) {
  const int fd = ConnectTcp(port);
  if (fd < 0) return std::nullopt;
  std::string got;
  if (::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buffer[1024];
    ssize_t n;
    while ((n = ::recv(fd, buffer, sizeof(buffer), 0)) > 0) got.append(buffer, n);
  }
  ::close(fd);
  return got;
}

std::string Get(const std::string& path) {
  return absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

class TlsListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto certs = MakeTestCerts(otaro::testing::ScratchDir(
        std::string("tls_") + ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = *certs;
  }

  // /hello answers "hello"; /echo answers its body; /reject answers 401
  // without reading the body; /slow answers "done" after 1.5 s; /stream writes
  // "chunk N\n" every 20 ms until a write fails (the client left) or 500
  // chunks, and records how it ended.
  absl::StatusOr<std::unique_ptr<HttpListener>> StartListener(bool require_client_cert,
                                                              int num_threads = 4,
                                                              int request_timeout_ms = 10000) {
    HttpListenerOptions options;
    options.name = "test https";
    options.listen_address = "127.0.0.1:0";
    options.num_threads = num_threads;
    options.request_timeout_ms = request_timeout_ms;
    options.handler_on_own_thread = true;
    options.tls = TlsFiles{certs_.server_cert, certs_.server_key,
                           require_client_cert ? certs_.ca_cert : ""};
    return HttpListener::Start(std::move(options), [this](mg_connection* c) {
      const std::string uri = mg_get_request_info(c)->local_uri;
      if (uri == "/hello") {
        SendResponse(c, 200, "text/plain", "hello");
        return 200;
      }
      if (uri == "/echo") {
        absl::StatusOr<std::string> body = ReadRequestBody(c, 1 << 22);
        SendResponse(c, body.ok() ? 200 : 400, "application/octet-stream",
                     body.ok() ? *body : std::string(body.status().message()));
        return 200;
      }
      if (uri == "/reject") {
        SendResponse(c, 401, "text/plain", "who are you?");
        return 401;
      }
      if (uri == "/slow") {
        absl::SleepFor(absl::Milliseconds(1500));
        slow_answered_.store(mg_write(c, "x", 1) > 0 ? 1 : 2);
        return 200;
      }
      mg_response_header_start(c, 200);
      mg_response_header_add(c, "Content-Type", "text/event-stream", -1);
      mg_response_header_send(c);
      for (int i = 0; i < 500; ++i) {
        const std::string chunk = absl::StrCat("chunk ", i, "\n");
        if (mg_write(c, chunk.data(), chunk.size()) <= 0) {
          stream_write_failed_.store(true);
          return 200;
        }
        absl::SleepFor(absl::Milliseconds(20));
      }
      return 200;
    });
  }

  TestCerts certs_;
  std::atomic<bool> stream_write_failed_{false};
  std::atomic<int> slow_answered_{0};
};

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

TEST_F(TlsListenerTest, ServesHttpsWithTheConfiguredCertificate) {
  auto listener = StartListener(/*require_client_cert=*/false);
  ASSERT_TRUE(listener.ok()) << listener.status();
  TlsClient client(certs_, /*with_client_certificate=*/false);
  ASSERT_TRUE(client.Connect((*listener)->port())) << "handshake or verification failed";
  ASSERT_TRUE(client.Send(Get("/hello")));
  const std::string response = client.Read();
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response;
  EXPECT_TRUE(absl::EndsWith(response, "\r\n\r\nhello")) << response;

  // civetweb closes after each answer (keep-alive is off): the relay passes
  // that on, and the next connection is served the same way.
  TlsClient again(certs_, false);
  ASSERT_TRUE(again.Connect((*listener)->port()));
  ASSERT_TRUE(again.Send("GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  EXPECT_TRUE(absl::EndsWith(again.Read(), "hello"));
}

TEST_F(TlsListenerTest, AStreamArrivesAsItIsWrittenAndADisconnectFailsTheHandlersWrite) {
  auto listener = StartListener(false);
  ASSERT_TRUE(listener.ok()) << listener.status();
  TlsClient client(certs_, false);
  ASSERT_TRUE(client.Connect((*listener)->port()));
  ASSERT_TRUE(client.Send(Get("/stream")));
  // The first chunks arrive while the handler is still writing (no buffering
  // of the whole answer in the relay).
  EXPECT_TRUE(absl::StrContains(client.Read("chunk 2\n"), "chunk 2\n"));
  EXPECT_FALSE(stream_write_failed_.load());
  client.Close();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!stream_write_failed_.load() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(stream_write_failed_.load()) << "the handler never saw the client leave";
}

TEST_F(TlsListenerTest, LargeBodiesAndAnswersCrossManyRecordsIntact) {
  auto listener = StartListener(false);
  ASSERT_TRUE(listener.ok()) << listener.status();
  std::string body(300000, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i * 7 % 26);
  TlsClient client(certs_, false);
  ASSERT_TRUE(client.Connect((*listener)->port()));
  ASSERT_TRUE(client.Send(absl::StrCat("POST /echo HTTP/1.1\r\nHost: localhost\r\n"
                                       "Content-Length: ", body.size(), "\r\n\r\n", body)));
  const std::string response = client.Read();
  ASSERT_TRUE(absl::StartsWith(response, "HTTP/1.1 200")) << response.substr(0, 200);
  EXPECT_TRUE(absl::EndsWith(response, body));
}

TEST_F(TlsListenerTest, AnAnswerSentBeforeTheBodyWasReadStillArrives) {
  auto listener = StartListener(false);
  ASSERT_TRUE(listener.ok()) << listener.status();
  TlsClient client(certs_, false);
  ASSERT_TRUE(client.Connect((*listener)->port()));
  // The whole 2 MB upload is sent although the server answered after the
  // headers: the relay reads it away instead of resetting the connection.
  ASSERT_TRUE(client.Send(absl::StrCat("POST /reject HTTP/1.1\r\nHost: localhost\r\n"
                                       "Content-Length: 2000000\r\n\r\n",
                                       std::string(2000000, 'x'))));
  const std::string response = client.Read();
  EXPECT_TRUE(absl::StartsWith(response, "HTTP/1.1 401")) << response;
  EXPECT_TRUE(absl::EndsWith(response, "who are you?"));
}

TEST_F(TlsListenerTest, AClientThatLeftCostsNoCpuWhileTheAnswerIsMade) {
  auto listener = StartListener(false);
  ASSERT_TRUE(listener.ok()) << listener.status();
  TlsClient client(certs_, false);
  ASSERT_TRUE(client.Connect((*listener)->port()));
  ASSERT_TRUE(client.Send(Get("/slow")));
  absl::SleepFor(absl::Milliseconds(100));
  client.Close();
  const double cpu = ProcessCpuSeconds();
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (slow_answered_.load() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  // 1.4 s of waiting for the handler: a relay polling a closed client in a
  // loop would burn about that much CPU.
  EXPECT_LT(ProcessCpuSeconds() - cpu, 0.3);
}

TEST_F(TlsListenerTest, ADrippedHandshakeEndsAtItsDeadline) {
  // request_timeout_ms 1000 gives the handshake one second in all.
  auto listener = StartListener(false, 4, /*request_timeout_ms=*/1000);
  ASSERT_TRUE(listener.ok()) << listener.status();
  const int fd = ConnectTcp((*listener)->port());
  ASSERT_GE(fd, 0);
  const absl::Time start = absl::Now();
  // A TLS record header, then one byte every 100 ms: never a whole message.
  const char header[] = {0x16, 0x03, 0x01, 0x02, 0x00};
  ASSERT_EQ(::send(fd, header, sizeof(header), MSG_NOSIGNAL), 5);
  bool closed = false;
  while (!closed && absl::Now() - start < absl::Seconds(8)) {
    closed = ::send(fd, "\x01", 1, MSG_NOSIGNAL) != 1;
    char byte;
    timeval timeout{0, 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    const ssize_t n = ::recv(fd, &byte, 1, 0);
    closed = closed || n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }
  ::close(fd);
  EXPECT_TRUE(closed);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(TlsListenerTest, APlaintextRequestToTheLoopbackPortBehindTlsIsRefused) {
  auto listener = StartListener(/*require_client_cert=*/true);
  ASSERT_TRUE(listener.ok()) << listener.status();
  ASSERT_NE((*listener)->plaintext_port(), (*listener)->port());
  const std::optional<std::string> exchanged = PlaintextExchange((*listener)->plaintext_port(), Get("/hello"));
  ASSERT_TRUE(exchanged.has_value()) << "nothing accepted the connection";
  const std::string& got = *exchanged;
  EXPECT_TRUE(absl::StartsWith(got, "HTTP/1.1 403")) << got;
  EXPECT_FALSE(absl::StrContains(got, "hello"));
}

TEST_F(TlsListenerTest, BeyondMaxConnectionsNewClientsWaitForAFreeSlot) {
  // One worker: at most 4 relays (handshakes included).
  auto listener = StartListener(false, /*num_threads=*/1);
  ASSERT_TRUE(listener.ok()) << listener.status();
  std::vector<int> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(ConnectTcp((*listener)->port()));
  absl::SleepFor(absl::Milliseconds(200));
  {
    // The fifth waits in the backlog: its handshake gets no answer yet.
    const int fd = ConnectTcp((*listener)->port());
    ASSERT_GE(fd, 0);
    timeval timeout{0, 500000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    SSL_CTX* context = SSL_CTX_new(TLS_client_method());
    SSL* ssl = SSL_new(context);
    SSL_set_fd(ssl, fd);
    EXPECT_NE(SSL_connect(ssl), 1);
    SSL_free(ssl);
    SSL_CTX_free(context);
    ::close(fd);
  }
  for (int fd : silent) ::close(fd);
  absl::SleepFor(absl::Milliseconds(300));
  TlsClient client(certs_, false);
  ASSERT_TRUE(client.Connect((*listener)->port()));
  ASSERT_TRUE(client.Send(Get("/hello")));
  EXPECT_TRUE(absl::EndsWith(client.Read(), "hello"));
}

TEST_F(TlsListenerTest, PlainHttpOnTheTlsPortGetsNoHttpAnswer) {
  auto listener = StartListener(false);
  ASSERT_TRUE(listener.ok()) << listener.status();
  const std::optional<std::string> exchanged = PlaintextExchange((*listener)->port(), Get("/hello"));
  ASSERT_TRUE(exchanged.has_value()) << "nothing accepted the connection";
  const std::string& got = *exchanged;
  EXPECT_FALSE(absl::StrContains(got, "HTTP/1.1")) << got;
  EXPECT_FALSE(absl::StrContains(got, "hello"));
}

TEST_F(TlsListenerTest, ClientCertificatesAreRequiredWhenACaIsSet) {
  auto listener = StartListener(/*require_client_cert=*/true);
  ASSERT_TRUE(listener.ok()) << listener.status();
  {
    TlsClient without(certs_, /*with_client_certificate=*/false);
    // TLS 1.3 finishes the client's side of the handshake before the server
    // checks it: the refusal shows as a failed connect or no answer.
    if (without.Connect((*listener)->port())) {
      without.Send(Get("/hello"));
      EXPECT_EQ(without.Read(), "");
    }
  }
  TlsClient with(certs_, /*with_client_certificate=*/true);
  ASSERT_TRUE(with.Connect((*listener)->port()));
  ASSERT_TRUE(with.Send(Get("/hello")));
  EXPECT_TRUE(absl::EndsWith(with.Read(), "hello"));
}

TEST_F(TlsListenerTest, BadCertificateFilesAreClearErrors) {
  HttpListenerOptions options;
  options.name = "test https";
  options.listen_address = "127.0.0.1:0";
  options.tls = TlsFiles{certs_.server_cert + ".missing", certs_.server_key, ""};
  auto handler = [](mg_connection*) { return 200; };
  auto missing = HttpListener::Start(options, handler);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), certs_.server_cert + ".missing"))
      << missing.status();

  options.tls = TlsFiles{certs_.server_cert, certs_.unrelated_key, ""};
  auto mismatched = HttpListener::Start(options, handler);
  EXPECT_EQ(mismatched.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(mismatched.status().message(), certs_.unrelated_key))
      << mismatched.status();
}

TEST_F(TlsListenerTest, StopEndsPromptlyWithClientsConnected) {
  auto listener = StartListener(false);
  ASSERT_TRUE(listener.ok()) << listener.status();
  // One client mid-handshake (connected, silent), one connected over TLS
  // with half a request sent.
  const int silent = ConnectTcp((*listener)->port());
  ASSERT_GE(silent, 0);
  TlsClient idle(certs_, false);
  ASSERT_TRUE(idle.Connect((*listener)->port()));
  ASSERT_TRUE(idle.Send("GET /hello HTTP/1.1\r\n"));
  const absl::Time start = absl::Now();
  (*listener)->Stop();
  // Bounded by the 2 s drain, not by the clients (the silent one alone would
  // hold its relay 10 s, the handshake's deadline).
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  ::close(silent);
  // Nothing listens any more.
  EXPECT_LT(ConnectTcp((*listener)->port()), 0);
}

}  // namespace
}  // namespace otaro::http
