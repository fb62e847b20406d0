// `otaro tune create|list|get|cancel|events|resume`: the server's tuning jobs.
// (`otaro tune --model ...` without one of these words is the offline run,
// tools/tune/otaro-tune; main.cc dispatches.)
#ifndef OTARO_CLIENT_TUNE_COMMAND_H_
#define OTARO_CLIENT_TUNE_COMMAND_H_

#include <cstdint>
#include <string>
#include <vector>

#include "client/connection.h"

namespace otaro::client {

// "2026-11-23 21:49:00Z" (UTC), or "-" for 0 (not yet).
std::string FormatUnixTime(int64_t unix_seconds);

// True for the words that make `otaro tune WORD` a server command.
bool IsTuneServerCommand(const std::string& word);

// Runs `otaro tune <words...>`; returns the exit code (2 for usage errors).
int TuneCommand(const ConnectionOptions& options, const std::vector<std::string>& words,
                bool json);

}  // namespace otaro::client

#endif  // OTARO_CLIENT_TUNE_COMMAND_H_
