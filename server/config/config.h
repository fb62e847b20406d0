// otaro_server's configuration: one YAML file (yaml-cpp) plus command-line
// overrides of any key (`--set server.grpc_address=0.0.0.0:50051`).
//
// Every key is declared once in config.cc's schema table, with its type, its
// bounds, its default and a one-line doc. The same table parses, validates,
// prints the effective config and generates the README's config reference, so
// they cannot drift apart. Unknown keys and bad values are errors naming the key.
#ifndef OTARO_SERVER_CONFIG_CONFIG_H_
#define OTARO_SERVER_CONFIG_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace otaro::server {

struct ServerSection {
  std::string grpc_address = "127.0.0.1:50051";
  // Empty disables the metrics endpoint.
  std::string metrics_address = "127.0.0.1:9464";
  int metrics_threads = 2;
  // The OpenAI-compatible HTTP API (server/openai). Empty disables it.
  std::string http_address = "127.0.0.1:8000";
  int http_threads = 32;
  // The model's id in the OpenAI API; empty: model.path's file name without
  // its extension ("otaro" without a model.path).
  std::string http_model_name;
  // After SIGTERM: time between turning health NOT_SERVING (new calls get
  // UNAVAILABLE) and waiting for in-flight calls, so load balancers notice.
  double drain_delay_seconds = 0;
  // After SIGTERM: how long in-flight calls may take to finish before they are
  // cancelled.
  double shutdown_timeout_seconds = 30;
  int64_t max_receive_message_bytes = 4 << 20;
};

struct LoggingSection {
  std::string level = "info";
};

struct ModelSection {
  // SEFP checkpoint, Hugging Face folder or GGUF file. Empty: no model.
  std::string path;
  // Mantissa bit-planes kept in memory (2..8); requests above are refused.
  int resident_max_bits = 8;
  // engine::LmHeadPrecision: "E5M2".."E5M8", "request" or "float32".
  std::string lm_head_precision = "E5M8";
};

struct EngineSection {
  std::string device = "auto";  // auto | cpu | cuda
  int threads = 0;              // 0 = all cores
  int64_t kv_cache_mb = 512;
  int max_batch_sequences = 16;
  // SEFP kernel ISA (sefp::ParseIsa): auto | scalar | avx2 | avx512.
  std::string isa = "auto";
};

struct GenerationSection {
  // 0 = model.resident_max_bits (the most precise the server holds).
  int default_mantissa_bits = 0;
  int default_max_tokens = 256;
  int max_tokens_cap = 4096;
  int max_waiting_requests = 64;
  double max_queue_time_seconds = 30;
};

// Access control (server/auth): without a token file the server only listens
// on loopback addresses.
struct AuthSection {
  // Bearer tokens with their roles, one `<token> <role> [<name>]` per line.
  std::string token_file;
};

// Empty cert_file: plaintext gRPC.
struct TlsSection {
  std::string cert_file;
  std::string key_file;
  // Set: clients must present a certificate signed by one of these CAs.
  std::string client_ca_file;
};

// The persistent store (server/store): model versions, the serving history and
// tuning jobs. Empty dir: nothing persists, the model is served as version 1
// and the ModelVersions service answers FAILED_PRECONDITION.
struct StoreSection {
  std::string dir;
};

// Tuning jobs (server/tuning); they need store.dir.
struct TuningSection {
  std::string data_dir;
  std::string zero_shot_dir;  // empty: <data_dir>/eval
  std::string base_model_path;
  int threads = 1;
  int max_queued_jobs = 16;
  int64_t max_upload_mb = 64;
  int64_t max_memory_mb = 0;
};

struct Config {
  ServerSection server;
  AuthSection auth;
  TlsSection tls;
  LoggingSection logging;
  ModelSection model;
  EngineSection engine;
  GenerationSection generation;
  StoreSection store;
  TuningSection tuning;

  // Precision of requests that do not ask for one.
  int DefaultMantissaBits() const {
    return generation.default_mantissa_bits != 0 ? generation.default_mantissa_bits
                                                 : model.resident_max_bits;
  }
};

// Parses YAML text (may be empty: all defaults), then applies overrides of the
// form "key.path=value" in order. `source` names the text in error messages.
absl::StatusOr<Config> ParseConfig(absl::string_view yaml_text, absl::string_view source,
                                   const std::vector<std::string>& overrides = {});

// Reads and parses a YAML file (path "" = defaults only).
absl::StatusOr<Config> LoadConfig(const std::string& path,
                                  const std::vector<std::string>& overrides = {});

// True for 127.0.0.0/8, [::1] and localhost, as "host:port".
bool IsLoopbackAddress(absl::string_view host_port);

// Without auth.token_file anyone who reaches a listener may call every RPC,
// so server.grpc_address and server.http_address must then be loopback
// addresses: InvalidArgument naming the keys otherwise. ParseConfig applies it (a bad configuration, exit
// code 2); server credentials check it again for configs built in code.
absl::Status CheckOpenListener(const Config& config);

// The effective configuration as YAML, every key, for the start-up log.
std::string FormatConfig(const Config& config);

// A Markdown table of every key: type, default, meaning.
std::string ConfigReferenceMarkdown();

}  // namespace otaro::server

#endif  // OTARO_SERVER_CONFIG_CONFIG_H_
