// Crash-safe file replacement: write a temporary file beside the target, fsync
// it, rename it over the target, fsync the directory. A crash at any point
// leaves either the old file or the complete new one, never a torn one.
#ifndef OTARO_COMMON_ATOMIC_FILE_H_
#define OTARO_COMMON_ATOMIC_FILE_H_

#include <cstdio>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace otaro {

// Calls `write(file)` on a temporary file, then publishes it at `path`.
// If `write` fails, the temporary file is removed and `path` is untouched.
absl::Status WriteFileAtomically(const std::string& path,
                                 const std::function<absl::Status(std::FILE*)>& write);

// Convenience form for small contents.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents);

// fsync of a directory: makes renames and creations in it durable.
absl::Status SyncDirectory(const std::string& dir);

// mkdir -p: creates `path` and its missing parents (0755); existing ones are fine.
absl::Status CreateDirectories(const std::string& path);

// Reads a whole (small) file.
absl::Status ReadFileToString(const std::string& path, std::string* contents);

}  // namespace otaro

#endif  // OTARO_COMMON_ATOMIC_FILE_H_
