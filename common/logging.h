// Process-wide logging: spdlog with levels and timestamps (Debian 12's Abseil
// has no absl/log). Use the OTARO_LOG_* macros; they format with fmt syntax:
//   OTARO_LOG_INFO("listening on {}", address);
#ifndef OTARO_COMMON_LOGGING_H_
#define OTARO_COMMON_LOGGING_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "spdlog/spdlog.h"

// Debian 12's Abseil keeps absl::string_view distinct from std::string_view, so
// fmt needs to be told how to print it (and absl::Status) in log lines.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(absl::string_view s, FormatContext& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};

template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  template <typename FormatContext>
  auto format(const absl::Status& status, FormatContext& ctx) const {
    const std::string text = status.ToString();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
  }
};

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
