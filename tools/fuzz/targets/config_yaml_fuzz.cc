// libFuzzer entry point for the server's YAML configuration (ParseConfig):
// arbitrary bytes as the config file; a parse error is fine, a crash is not.
// Built and run by tools/fuzz/run_all.sh.
#include <cstddef>
#include <cstdint>

#include "server/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 16)) return 0;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = otaro::server::ParseConfig(text, "fuzz.yaml");
  if (config.ok()) (void)config->DefaultMantissaBits();
  return 0;
}
