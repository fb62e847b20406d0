// Process-wide logging: spdlog with levels and timestamps (Debian 12's Abseil
// has no absl/log). Use the OTARO_LOG_* macros; they format with fmt syntax:
//   OTARO_LOG_INFO("listening on {}", address);
#ifndef OTARO_COMMON_LOGGING_H_
#define OTARO_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

namespace otaro {

// Sets the level from "trace", "debug", "info", "warn", "error", "critical" or
// "off"; anything else is an InvalidArgument error naming the value.
absl::Status SetLogLevel(const std::string& level);

// Installs the default stderr logger with the project's line format.
void InitLogging();

}  // namespace otaro

#define OTARO_LOG_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define OTARO_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define OTARO_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define OTARO_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define OTARO_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)

#endif  // OTARO_COMMON_LOGGING_H_
