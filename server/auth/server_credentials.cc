#include "server/auth/server_credentials.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "grpc/grpc_security.h"
#include "openssl/err.h"
#include "openssl/pem.h"
#include "openssl/x509.h"
#include "server/auth/access_control.h"

namespace otaro::server::auth {
namespace {

// --- TLS files ------------------------------------------------------------

struct TlsMaterial {
  std::string cert_chain;
  std::string private_key;
  std::string client_ca;  // empty: client certificates are not requested
};

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

BioPtr MemoryBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
}

// The reason of OpenSSL's last error, for messages; clears its queue.
std::string OpenSslError() {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "not PEM";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

// An encrypted key must fail to load, not prompt on the terminal.
int NoPassphrase(char*, int, int, void*) { return 0; }

absl::StatusOr<std::string> ReadConfiguredFile(absl::string_view key, const std::string& path) {
  std::string text;
  absl::Status read = ReadFileToString(path, &text);
  if (!read.ok()) return absl::Status(read.code(), absl::StrCat(key, ": ", read.message()));
  return text;
}

std::string AsnTimeText(const ASN1_TIME* time) {
  BioPtr bio(BIO_new(BIO_s_mem()), &BIO_free);
  ASN1_TIME_print(bio.get(), time);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// Reads the files and checks what gRPC would only report as a failed bind (or
// as failed handshakes later): PEM that does not parse, a key that does not
// match the certificate, an expired certificate.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsSection& tls) {
  TlsMaterial material;
  OTARO_ASSIGN_OR_RETURN(material.cert_chain, ReadConfiguredFile("tls.cert_file", tls.cert_file));
  OTARO_ASSIGN_OR_RETURN(material.private_key, ReadConfiguredFile("tls.key_file", tls.key_file));
  ERR_clear_error();
  BioPtr cert_bio = MemoryBio(material.cert_chain);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr), &X509_free);
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls.cert_file ", tls.cert_file, ": no PEM certificate in it (", OpenSslError(), ")"));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    return absl::InvalidArgumentError(absl::StrCat("tls.cert_file ", tls.cert_file,
                                                   ": the certificate expired on ",
                                                   AsnTimeText(X509_get0_notAfter(cert.get()))));
  }
  BioPtr key_bio = MemoryBio(material.private_key);
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, &NoPassphrase, nullptr),
             &EVP_PKEY_free);
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls.key_file ", tls.key_file,
                     ": no unencrypted PEM private key in it (", OpenSslError(), ")"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat("tls.key_file ", tls.key_file,
                                                   " is not the key of the certificate in "
                                                   "tls.cert_file ",
                                                   tls.cert_file));
  }
  struct stat info;
  if (::stat(tls.key_file.c_str(), &info) == 0 && (info.st_mode & S_IROTH) != 0) {
    OTARO_LOG_WARN("tls.key_file {} is readable by every user of this machine; chmod 600 it",
                   tls.key_file);
  }
  if (!tls.client_ca_file.empty()) {
    OTARO_ASSIGN_OR_RETURN(material.client_ca,
                           ReadConfiguredFile("tls.client_ca_file", tls.client_ca_file));
    BioPtr ca_bio = MemoryBio(material.client_ca);
    X509Ptr ca(PEM_read_bio_X509(ca_bio.get(), nullptr, nullptr, nullptr), &X509_free);
    if (ca == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("tls.client_ca_file ", tls.client_ca_file,
                                                     ": no PEM certificate in it (",
                                                     OpenSslError(), ")"));
    }
  }
  return material;
}

// --- Access control in gRPC core ------------------------------------------

absl::string_view SliceView(const grpc_slice& slice) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(slice)),
                           GRPC_SLICE_LENGTH(slice));
}

// gRPC core calls this for every call, before any service sees it. It answers
// at once (no I/O), which core allows from within the call.
void ProcessAuthMetadata(void* state, grpc_auth_context* context, const grpc_metadata* md,
                         size_t num_md, grpc_process_auth_metadata_done_cb done,
                         void* user_data) {
  const auto& control = *static_cast<std::shared_ptr<const AccessControl>*>(state);
  absl::string_view method;
  std::vector<absl::string_view> authorization;
  std::vector<grpc_metadata> consumed;
  for (size_t i = 0; i < num_md; ++i) {
    const absl::string_view key = SliceView(md[i].key);
    if (key == ":path") {
      method = SliceView(md[i].value);
    } else if (key == "authorization") {
      authorization.push_back(SliceView(md[i].value));
      consumed.push_back(md[i]);
    }
  }
  const AccessControl::Verdict verdict = control->Check(method, authorization);
  if (!verdict.status.ok()) {
    const std::string message(verdict.status.message());
    done(user_data, nullptr, 0, nullptr, 0,
         static_cast<grpc_status_code>(verdict.status.code()), message.c_str());
    return;
  }
  if (verdict.token != nullptr) {
    grpc_auth_context_add_cstring_property(context, kTokenNameProperty,
                                           verdict.token->name.c_str());
    grpc_auth_context_add_cstring_property(context, kTokenRoleProperty,
                                           std::string(RoleName(verdict.token->role)).c_str());
  }
  // Consumed: handlers (and anything that logs metadata) never see the token.
  done(user_data, consumed.data(), consumed.size(), nullptr, 0, GRPC_STATUS_OK, nullptr);
}

void DestroyProcessorState(void* state) {
  delete static_cast<std::shared_ptr<const AccessControl>*>(state);
}

// grpc::ServerCredentials over a core credentials object. gRPC 1.51's own
// wrappers either reject a processor (insecure) or run it through their own
// thread pool; core's processor hook is the one that works for plaintext too.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  explicit CoreServerCredentials(grpc_server_credentials* core) : core_(core) {}
  ~CoreServerCredentials() override { grpc_server_credentials_release(core_); }

  void InstallAccessControl(std::shared_ptr<const AccessControl> control) {
    grpc_auth_metadata_processor processor;
    processor.process = &ProcessAuthMetadata;
    processor.destroy = &DestroyProcessorState;
    processor.state = new std::shared_ptr<const AccessControl>(std::move(control));
    grpc_server_credentials_set_auth_metadata_processor(core_, processor);
  }

  // A second, C++ processor would silently replace the access control.
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {
    std::fputs("otaro: SetAuthMetadataProcessor on otaro's server credentials; use "
               "InstallAccessControl\n",
               stderr);
    std::abort();
  }

 private:
  int AddPortToServer(const std::string& address, grpc_server* server) override {
    return grpc_server_add_http2_port(server, address.c_str(), core_);
  }

  grpc_server_credentials* const core_;
};

grpc_server_credentials* CoreTlsCredentials(const TlsMaterial& material) {
  grpc_ssl_pem_key_cert_pair pair{material.private_key.c_str(), material.cert_chain.c_str()};
  // Core copies the PEM strings.
  return grpc_ssl_server_credentials_create_ex(
      material.client_ca.empty() ? nullptr : material.client_ca.c_str(), &pair, 1,
      material.client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                 : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
      nullptr);
}

}  // namespace

absl::StatusOr<ServerSecurity> MakeServerSecurity(const Config& config,
                                                  metrics::Registry* registry) {
  const std::string& address = config.server.grpc_address;
  std::shared_ptr<const AccessControl> control;
  if (config.auth.token_file.empty()) {
    OTARO_RETURN_IF_ERROR(CheckOpenListener(config));
    OTARO_LOG_WARN(
        "no auth.token_file: access control is off, so the server listens on loopback ({}) "
        "only and every local user may call every RPC",
        address);
  } else {
    OTARO_ASSIGN_OR_RETURN(TokenTable tokens, TokenTable::Load(config.auth.token_file));
    int admins = 0;
    for (const TokenEntry& entry : tokens.entries()) admins += entry.role == Role::kAdmin;
    const size_t count = tokens.entries().size();
    OTARO_ASSIGN_OR_RETURN(control, AccessControl::Create(std::move(tokens), registry));
    OTARO_LOG_INFO(
        "access control on: {} token(s) from {} ({} admin, {} generate); every RPC but "
        "grpc.health.v1.Health needs one",
        count, config.auth.token_file, admins, count - admins);
  }

  grpc_server_credentials* core = nullptr;
  if (config.tls.cert_file.empty()) {
    if (control != nullptr && !IsLoopbackAddress(address)) {
      OTARO_LOG_WARN(
          "gRPC on {} is plaintext: tokens cross the network readable; set tls.cert_file and "
          "tls.key_file unless TLS ends in front of the server",
          address);
    }
    core = grpc_insecure_server_credentials_create();
  } else {
    OTARO_ASSIGN_OR_RETURN(TlsMaterial material, LoadTlsMaterial(config.tls));
    core = CoreTlsCredentials(material);
    OTARO_LOG_INFO("TLS on ({}): client certificates {}", config.tls.cert_file,
                   material.client_ca.empty()
                       ? std::string("not requested")
                       : absl::StrCat("required, signed by ", config.tls.client_ca_file));
  }
  auto credentials = std::make_shared<CoreServerCredentials>(core);
  if (control != nullptr) credentials->InstallAccessControl(control);
  return ServerSecurity{std::move(credentials), std::move(control)};
}

}  // namespace otaro::server::auth
