#include "client/connection.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace otaro::client {

namespace {

absl::Status ReadPemFile(const char* flag, const std::string& path, std::string* contents) {
  if (path.empty()) return absl::OkStatus();
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return absl::NotFoundError(absl::StrCat(flag, " ", path, ": cannot open it"));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": not a PEM file"));
  }
  *contents = text.str();
  return absl::OkStatus();
}

}  // namespace

absl::Status LoadTlsFiles(const std::string& ca_file, const std::string& cert_file,
                          const std::string& key_file, ConnectionOptions* options) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (absl::Status s = ReadPemFile("--tls_ca", ca_file, &options->tls_root_certs); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadPemFile("--tls_cert", cert_file, &options->tls_cert_chain); !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadPemFile("--tls_key", key_file, &options->tls_private_key); !s.ok()) {
    return s;
  }
  options->tls = options->tls || !ca_file.empty() || !cert_file.empty();
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> Connect(const ConnectionOptions& options) {
  if (!options.tls) {
    return grpc::CreateChannel(options.address, grpc::InsecureChannelCredentials());
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls_root_certs;
  ssl.pem_cert_chain = options.tls_cert_chain;
  ssl.pem_private_key = options.tls_private_key;
  grpc::ChannelArguments args;
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(options.address, grpc::SslCredentials(ssl), args);
}

std::unique_ptr<grpc::ClientContext> NewContext(const ConnectionOptions& options) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(
                            static_cast<int64_t>(options.timeout_seconds * 1e6)));
  // Plain metadata rather than call credentials: gRPC sends call credentials
  // only over TLS, and a loopback server may be plaintext.
  if (!options.token.empty()) context->AddMetadata("authorization", "Bearer " + options.token);
  return context;
}

std::string DescribeError(const ConnectionOptions& options, const char* what,
                          const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (status.error_message().find("shutting down") != std::string::npos) {
        return absl::StrCat(what, ": the server at ", options.address,
                            " is shutting down: ", status.error_message());
      }
      return absl::StrCat("cannot reach otaro_server at ", options.address, " (",
                          status.error_message(),
                          "). Is it running? Set the address with --server or OTARO_SERVER.");
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::StrCat(what, ": the server at ", options.address, " wants a valid token (",
                          status.error_message(), "). Pass --token or set OTARO_TOKEN.");
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::StrCat(what, ": not allowed with this token: ", status.error_message());
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::StrCat(what, ": no answer from ", options.address, " within ",
                          options.timeout_seconds, " s (--timeout_seconds)");
    default:
      return absl::StrCat(what, " failed: ", status.error_message(), " [code ",
                          static_cast<int>(status.error_code()), "]");
  }
}

}  // namespace otaro::client
