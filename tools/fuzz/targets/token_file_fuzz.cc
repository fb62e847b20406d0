// libFuzzer entry point for the bearer token file (auth.token_file,
// TokenTable::Parse). Built and run by tools/fuzz/run_all.sh.
#include <cstddef>
#include <cstdint>

#include "server/auth/token_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1u << 16)) return 0;
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  (void)otaro::server::auth::TokenTable::Parse(text, "fuzz-tokens");
  return 0;
}
