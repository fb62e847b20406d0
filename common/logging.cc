#include "common/logging.h"

#include "absl/strings/str_cat.h"
#include "spdlog/sinks/stdout_color_sinks.h"

namespace otaro {

void InitLogging() {
  auto logger = spdlog::stderr_color_mt("otaro");
  spdlog::set_default_logger(logger);
  // 2026-11-23 19:16:02.123 I 12345 message
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %L %t %v");
  spdlog::flush_on(spdlog::level::warn);
}

absl::Status SetLogLevel(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  // from_str maps unknown names to "off"; only accept "off" when asked for.
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown log level '", level, "' (trace, debug, info, warn, error, critical, off)"));
  }
  spdlog::set_level(parsed);
  return absl::OkStatus();
}

}  // namespace otaro
