#include "server/config/config.h"

#include <arpa/inet.h>

#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace otaro::server {
namespace {

// One configuration key: how to set it from text, print it, and document it.
struct Key {
  std::string path;  // "section.name"
  std::string type;  // shown in the reference
  std::string doc;
  std::function<absl::Status(absl::string_view text, Config& config)> set;
  std::function<std::string(const Config& config)> get;
};

absl::Status BadValue(absl::string_view path, absl::string_view text, absl::string_view want) {
  return absl::InvalidArgumentError(
      absl::StrCat("config key '", path, "': invalid value '", text, "' (", want, ")"));
}

template <typename Accessor>
Key IntKey(std::string path, std::string doc, Accessor field, int64_t lo, int64_t hi) {
  using T = std::remove_reference_t<decltype(field(std::declval<Config&>()))>;
  Key key{path, absl::StrCat("integer ", lo, "..", hi), std::move(doc), nullptr, nullptr};
  key.set = [=](absl::string_view text, Config& config) -> absl::Status {
    int64_t value;
    if (!absl::SimpleAtoi(text, &value) || value < lo || value > hi) {
      return BadValue(path, text, absl::StrCat("an integer in ", lo, "..", hi));
    }
    field(config) = static_cast<T>(value);
    return absl::OkStatus();
  };
  key.get = [=](const Config& config) {
    return absl::StrCat(field(const_cast<Config&>(config)));
  };
  return key;
}

template <typename Accessor>
Key NumberKey(std::string path, std::string doc, Accessor field, double lo, double hi) {
  Key key{path, absl::StrCat("number ", lo, "..", hi), std::move(doc), nullptr, nullptr};
  key.set = [=](absl::string_view text, Config& config) -> absl::Status {
    double value;
    if (!absl::SimpleAtod(text, &value) || !(value >= lo && value <= hi)) {
      return BadValue(path, text, absl::StrCat("a number in ", lo, "..", hi));
    }
    field(config) = value;
    return absl::OkStatus();
  };
  key.get = [=](const Config& config) { return absl::StrCat(field(const_cast<Config&>(config))); };
  return key;
}

template <typename Accessor>
Key BoolKey(std::string path, std::string doc, Accessor field) {
  Key key{path, "true|false", std::move(doc), nullptr, nullptr};
  key.set = [=](absl::string_view text, Config& config) -> absl::Status {
    if (text == "true") {
      field(config) = true;
    } else if (text == "false") {
      field(config) = false;
    } else {
      return BadValue(path, text, "true or false");
    }
    return absl::OkStatus();
  };
  key.get = [=](const Config& config) {
    return std::string(field(const_cast<Config&>(config)) ? "true" : "false");
  };
  return key;
}

using StringCheck = std::function<absl::Status(absl::string_view path, absl::string_view text)>;

template <typename Accessor>
Key StringKey(std::string path, std::string type, std::string doc, Accessor field,
              StringCheck check = nullptr) {
  Key key{path, std::move(type), std::move(doc), nullptr, nullptr};
  key.set = [=](absl::string_view text, Config& config) -> absl::Status {
    if (check) OTARO_RETURN_IF_ERROR(check(path, text));
    field(config) = std::string(text);
    return absl::OkStatus();
  };
  key.get = [=](const Config& config) {
    const std::string& value = field(const_cast<Config&>(config));
    return value.empty() ? std::string("\"\"") : value;
  };
  return key;
}

StringCheck OneOf(std::vector<std::string> allowed) {
  return [allowed](absl::string_view path, absl::string_view text) -> absl::Status {
    for (const auto& a : allowed) {
      if (text == a) return absl::OkStatus();
    }
    return BadValue(path, text, absl::StrCat("one of ", absl::StrJoin(allowed, ", ")));
  };
}

// "host:port" or "[v6]:port" with a port in 0..65535 (0 = pick a free port).
absl::Status CheckAddress(absl::string_view path, absl::string_view text, bool allow_empty) {
  if (text.empty() && allow_empty) return absl::OkStatus();
  size_t colon = text.rfind(':');
  int port;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(text.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return BadValue(path, text, "host:port, e.g. 127.0.0.1:50051 or [::]:50051");
  }
  return absl::OkStatus();
}

const std::vector<Key>& Schema() {
  static const auto* keys = new std::vector<Key>{
      StringKey("server.grpc_address", "host:port",
                "gRPC listen address. Port 0 picks a free port (reported in the log and "
                "--ready_file).",
                [](Config& c) -> std::string& { return c.server.grpc_address; },
                [](absl::string_view p, absl::string_view t) { return CheckAddress(p, t, false); }),
      StringKey("server.metrics_address", "host:port or empty",
                "Prometheus /metrics, /healthz and /readyz over HTTP. Empty disables it.",
                [](Config& c) -> std::string& { return c.server.metrics_address; },
                [](absl::string_view p, absl::string_view t) { return CheckAddress(p, t, true); }),
      IntKey("server.metrics_threads", "HTTP worker threads of the metrics endpoint.",
             [](Config& c) -> int& { return c.server.metrics_threads; }, 1, 64),
      StringKey("server.http_address", "host:port or empty",
                "The OpenAI-compatible HTTP API (/v1/models, /v1/completions, "
                "/v1/chat/completions). Empty disables it. HTTPS with the tls.* files when "
                "they are set (client certificates too), else plaintext.",
                [](Config& c) -> std::string& { return c.server.http_address; },
                [](absl::string_view p, absl::string_view t) { return CheckAddress(p, t, true); }),
      IntKey("server.http_threads",
             "Worker threads of the OpenAI API; each request in progress (a stream included) "
             "holds one.",
             [](Config& c) -> int& { return c.server.http_threads; }, 1, 1024),
      StringKey("server.http_model_name", "string",
                "The model's id in the OpenAI API. Empty: model.path's file name without its "
                "extension.",
                [](Config& c) -> std::string& { return c.server.http_model_name; }),
      NumberKey("server.drain_delay_seconds",
                "After SIGTERM: health turns NOT_SERVING and new calls get UNAVAILABLE for "
                "this long before the server waits for in-flight calls (lets load balancers "
                "notice).",
                [](Config& c) -> double& { return c.server.drain_delay_seconds; }, 0, 3600),
      NumberKey("server.shutdown_timeout_seconds",
                "After SIGTERM: how long in-flight calls may run before they are cancelled.",
                [](Config& c) -> double& { return c.server.shutdown_timeout_seconds; }, 0, 3600),
      IntKey("server.max_receive_message_bytes", "Largest request message accepted.",
             [](Config& c) -> int64_t& { return c.server.max_receive_message_bytes; }, 1024,
             int64_t{1} << 30),
      StringKey("auth.token_file", "path or empty",
                "Bearer tokens and their roles (generate, admin), one `<token> <role> [<name>]` "
                "per line; must not be readable by every user. Empty: no access control, and "
                "server.grpc_address must be a loopback address.",
                [](Config& c) -> std::string& { return c.auth.token_file; }),
      StringKey("tls.cert_file", "path or empty",
                "PEM certificate chain of the gRPC listener and the OpenAI API. Empty: plaintext.",
                [](Config& c) -> std::string& { return c.tls.cert_file; }),
      StringKey("tls.key_file", "path or empty", "PEM private key of tls.cert_file.",
                [](Config& c) -> std::string& { return c.tls.key_file; }),
      StringKey("tls.client_ca_file", "path or empty",
                "PEM CA certificates; set: every client must present a certificate they "
                "signed (mutual TLS).",
                [](Config& c) -> std::string& { return c.tls.client_ca_file; }),
      StringKey("logging.level", "trace|debug|info|warn|error|critical|off", "Log level.",
                [](Config& c) -> std::string& { return c.logging.level; },
                OneOf({"trace", "debug", "info", "warn", "error", "critical", "off"})),
      StringKey("model.path", "path", "Model to serve: SEFP checkpoint, Hugging Face folder "
                "or GGUF file. Empty: no model (GetModelInfo says so).",
                [](Config& c) -> std::string& { return c.model.path; }),
      IntKey("model.resident_max_bits",
             "Mantissa bit-planes kept in memory; requests above are refused.",
             [](Config& c) -> int& { return c.model.resident_max_bits; }, 2, 8),
      StringKey("model.lm_head_precision", "E5M2..E5M8|request|float32",
                "How the lm_head (every token reads all of it) is held and read: SEFP "
                "planes at a fixed precision (E5M8: near-lossless, and the tied embedding "
                "is decoded from the same planes, so no float32 table stays resident), "
                "SEFP at each request's precision, or float32 as stored.",
                [](Config& c) -> std::string& { return c.model.lm_head_precision; },
                OneOf({"E5M8", "E5M7", "E5M6", "E5M5", "E5M4", "E5M3", "E5M2", "request",
                       "float32"})),
      StringKey("engine.device", "auto|cpu|cuda",
                "Where the model runs. auto: CUDA when a CUDA inference backend is linked, a GPU "
                "is present and its self-test passes, else the CPU (the start-up log and "
                "otaro_engine_device_info say which and why); cuda: the same, but a start-up "
                "error when CUDA cannot run. No CUDA inference backend exists yet, so auto runs "
                "on the CPU and cuda is refused.",
                [](Config& c) -> std::string& { return c.engine.device; },
                OneOf({"auto", "cpu", "cuda"})),
      IntKey("engine.threads", "CPU threads for inference (0 = all cores).",
             [](Config& c) -> int& { return c.engine.threads; }, 0, 1024),
      IntKey("engine.kv_cache_mb", "Memory budget of the KV cache, MiB.",
             [](Config& c) -> int64_t& { return c.engine.kv_cache_mb; }, 1, int64_t{1} << 24),
      IntKey("engine.max_batch_sequences",
             "Sequences decoded together in one step (continuous batching).",
             [](Config& c) -> int& { return c.engine.max_batch_sequences; }, 1, 1024),
      StringKey("engine.isa", "auto|scalar|avx2|avx512",
                "SEFP kernel instruction set: auto = the best this CPU has (logged at start-up "
                "and shown by GetModelInfo); avx512 needs AVX-512 F/BW/VL/VNNI/VBMI/BITALG and "
                "GFNI (Ice Lake, Sapphire Rapids, Zen 4; older AVX-512 parts get avx2); naming "
                "one the CPU lacks is a start-up error.",
                [](Config& c) -> std::string& { return c.engine.isa; },
                OneOf({"auto", "scalar", "avx2", "avx512"})),
      IntKey("generation.default_mantissa_bits",
             "Precision (mantissa bits 2..8) of requests that do not set one; 0 = "
             "model.resident_max_bits.",
             [](Config& c) -> int& { return c.generation.default_mantissa_bits; }, 0, 8),
      IntKey("generation.default_max_tokens", "max_tokens of requests that do not set it.",
             [](Config& c) -> int& { return c.generation.default_max_tokens; }, 1, 1 << 20),
      IntKey("generation.max_tokens_cap", "Largest max_tokens a request may ask for.",
             [](Config& c) -> int& { return c.generation.max_tokens_cap; }, 1, 1 << 20),
      IntKey("generation.max_waiting_requests",
             "Requests waiting for a batch slot beyond this are refused (RESOURCE_EXHAUSTED).",
             [](Config& c) -> int& { return c.generation.max_waiting_requests; }, 0, 1 << 20),
      NumberKey("generation.max_queue_time_seconds",
                "A request that waited this long without starting is refused "
                "(RESOURCE_EXHAUSTED).",
                [](Config& c) -> double& { return c.generation.max_queue_time_seconds; }, 0,
                86400),
      StringKey("store.dir", "path or empty",
                "Folder of the persistent store: otaro.db (model versions, serving history, "
                "tuning jobs) and models/<N>/model.sefp. A restart serves the version last "
                "published. Empty: nothing persists and model versions cannot be published.",
                [](Config& c) -> std::string& { return c.store.dir; }),
      StringKey("tuning.data_dir", "path or empty",
                "Folder tuning jobs may read datasets from (dataset.path is relative to it; "
                "absolute paths, '..' and symlinks out are refused). Empty: only data sent "
                "inline. Tuning jobs need store.dir.",
                [](Config& c) -> std::string& { return c.tuning.data_dir; }),
      StringKey("tuning.zero_shot_dir", "path or empty",
                "Folder of the zero-shot sets a tuning job may name in "
                "evaluation.zero_shot_tasks (the shared data's eval/ folder: "
                "arc-easy/arc_easy.jsonl, piqa/piqa_mosaic.jsonl, ...); jobs name sets, never "
                "paths. Empty: <tuning.data_dir>/eval.",
                [](Config& c) -> std::string& { return c.tuning.zero_shot_dir; }),
      StringKey("tuning.base_model_path", "path or empty",
                "Float32 weights of version 1 to tune from (HF folder, GGUF, llama2.c): needed "
                "when model.path is a SEFP checkpoint. Empty: model.path.",
                [](Config& c) -> std::string& { return c.tuning.base_model_path; }),
      IntKey("tuning.threads", "CPU threads of the tuning worker (its budget beside "
             "engine.threads).",
             [](Config& c) -> int& { return c.tuning.threads; }, 1, 1024),
      IntKey("tuning.max_queued_jobs", "Queued tuning jobs beyond this are refused "
             "(RESOURCE_EXHAUSTED).",
             [](Config& c) -> int& { return c.tuning.max_queued_jobs; }, 1, 10000),
      IntKey("tuning.max_upload_mb", "Largest dataset a client may send inline, MiB.",
             [](Config& c) -> int64_t& { return c.tuning.max_upload_mb; }, 1, 4096),
      IntKey("tuning.max_memory_mb",
             "Memory a tuning job may use (masters, gradients, optimizer, activations), MiB; "
             "a job over it fails before training. 0 = no limit.",
             [](Config& c) -> int64_t& { return c.tuning.max_memory_mb; }, 0, int64_t{1} << 24),
  };
  return *keys;
}

const Key* FindKey(absl::string_view path) {
  for (const Key& key : Schema()) {
    if (key.path == path) return &key;
  }
  return nullptr;
}

std::set<std::string> Sections() {
  std::set<std::string> sections;
  for (const Key& key : Schema()) sections.insert(key.path.substr(0, key.path.find('.')));
  return sections;
}

absl::Status UnknownKey(absl::string_view source, absl::string_view path) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": unknown config key '", path, "'"));
}

// Rules between keys, checked after everything is set.
absl::Status CheckConsistency(const Config& config) {
  OTARO_RETURN_IF_ERROR(CheckOpenListener(config));
  if (config.generation.default_mantissa_bits == 1) {
    return absl::InvalidArgumentError(
        "config key 'generation.default_mantissa_bits': invalid value '1' (0 or 2..8)");
  }
  if (config.generation.default_mantissa_bits > config.model.resident_max_bits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key 'generation.default_mantissa_bits' (", config.generation.default_mantissa_bits,
        ") exceeds 'model.resident_max_bits' (", config.model.resident_max_bits, ")"));
  }
  if (config.generation.default_max_tokens > config.generation.max_tokens_cap) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config key 'generation.default_max_tokens' (", config.generation.default_max_tokens,
        ") exceeds 'generation.max_tokens_cap' (", config.generation.max_tokens_cap, ")"));
  }
  if (config.tls.cert_file.empty() != config.tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "config keys 'tls.cert_file' and 'tls.key_file' must be set together");
  }
  if (!config.tls.client_ca_file.empty() && config.tls.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "config key 'tls.client_ca_file' needs 'tls.cert_file' and 'tls.key_file'");
  }
  // Port 0 means "any free port", so two of them never collide.
  const std::pair<const char*, const std::string*> listeners[] = {
      {"server.grpc_address", &config.server.grpc_address},
      {"server.metrics_address", &config.server.metrics_address},
      {"server.http_address", &config.server.http_address}};
  for (size_t i = 0; i < std::size(listeners); ++i) {
    for (size_t j = i + 1; j < std::size(listeners); ++j) {
      const std::string& a = *listeners[i].second;
      if (!a.empty() && a == *listeners[j].second && !absl::EndsWith(a, ":0")) {
        return absl::InvalidArgumentError(absl::StrCat("config keys '", listeners[i].first,
                                                       "' and '", listeners[j].first,
                                                       "' are the same address"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsLoopbackAddress(absl::string_view host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host = host_port.substr(0, colon);
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") return true;
  const std::string text(host);
  in_addr v4;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    static const in6_addr kLoopback = IN6ADDR_LOOPBACK_INIT;
    return std::memcmp(&v6, &kLoopback, sizeof(v6)) == 0;
  }
  return false;
}

absl::Status CheckOpenListener(const Config& config) {
  if (!config.auth.token_file.empty()) return absl::OkStatus();
  for (const auto& [key, address] :
       {std::pair<const char*, const std::string*>{"server.grpc_address",
                                                   &config.server.grpc_address},
        {"server.http_address", &config.server.http_address}}) {
    if (address->empty() || IsLoopbackAddress(*address)) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        key, " ", *address,
        " is not a loopback address, and without auth.token_file anyone who can reach it "
        "could call every RPC: set auth.token_file (README: Access control), or listen on "
        "127.0.0.1"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Config> ParseConfig(absl::string_view yaml_text, absl::string_view source,
                                   const std::vector<std::string>& overrides) {
  Config config;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid YAML: ", e.what()));
  }
  if (root.IsDefined() && !root.IsNull()) {
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": the top level must be a map of sections (",
                       absl::StrJoin(Sections(), ", "), ")"));
    }
    const std::set<std::string> sections = Sections();
    for (const auto& section : root) {
      // A complex key ("? [a, b]: ...") is not a string: as<std::string>()
      // would throw, so refuse it here.
      if (!section.first.IsScalar()) {
        return absl::InvalidArgumentError(absl::StrCat(source, ": a section name must be a string"));
      }
      const std::string name = section.first.Scalar();
      if (!sections.count(name)) return UnknownKey(source, name);
      if (section.second.IsNull()) continue;
      if (!section.second.IsMap()) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ": config key '", name, "' must be a map"));
      }
      for (const auto& entry : section.second) {
        if (!entry.first.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": a key in section '", name, "' must be a string"));
        }
        const std::string path = absl::StrCat(name, ".", entry.first.Scalar());
        const Key* key = FindKey(path);
        if (key == nullptr) return UnknownKey(source, path);
        if (!entry.second.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat(source, ": config key '", path, "' must be a single value"));
        }
        absl::Status status = key->set(entry.second.Scalar(), config);
        if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat(source, ": ", status.message()));
      }
    }
  }
  for (const std::string& override_text : overrides) {
    std::pair<std::string, std::string> kv = absl::StrSplit(override_text, absl::MaxSplits('=', 1));
    if (override_text.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", override_text, ": expected key.path=value"));
    }
    const Key* key = FindKey(kv.first);
    if (key == nullptr) return UnknownKey("--set", kv.first);
    absl::Status status = key->set(kv.second, config);
    if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("--set: ", status.message()));
  }
  OTARO_RETURN_IF_ERROR(CheckConsistency(config));
  return config;
}

absl::StatusOr<Config> LoadConfig(const std::string& path,
                                  const std::vector<std::string>& overrides) {
  std::string text;
  if (!path.empty()) OTARO_RETURN_IF_ERROR(ReadFileToString(path, &text));
  return ParseConfig(text, path.empty() ? "defaults" : path, overrides);
}

std::string FormatConfig(const Config& config) {
  std::ostringstream out;
  std::string section;
  for (const Key& key : Schema()) {
    std::string this_section = key.path.substr(0, key.path.find('.'));
    if (this_section != section) {
      section = this_section;
      out << section << ":\n";
    }
    out << "  " << key.path.substr(section.size() + 1) << ": " << key.get(config) << "\n";
  }
  return out.str();
}

std::string ConfigReferenceMarkdown() {
  const Config defaults;
  std::ostringstream out;
  out << "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const Key& key : Schema()) {
    out << "| `" << key.path << "` | " << key.type << " | `" << key.get(defaults) << "` | "
        << key.doc << " |\n";
  }
  return out.str();
}

}  // namespace otaro::server
