#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace otaro {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::Status WriteFileAtomically(const std::string& path,
                                 const std::function<absl::Status(std::FILE*)>& write) {
  std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  std::FILE* file = std::fopen(tmp.c_str(), "wb");
  if (file == nullptr) return ErrnoError("cannot create", tmp);

  absl::Status status = write(file);
  if (status.ok() && std::fflush(file) != 0) status = ErrnoError("cannot write", tmp);
  if (status.ok() && ::fsync(::fileno(file)) != 0) status = ErrnoError("cannot fsync", tmp);
  if (std::fclose(file) != 0 && status.ok()) status = ErrnoError("cannot close", tmp);
  if (status.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    status = ErrnoError(absl::StrCat("cannot rename ", tmp, " to"), path);
  }
  if (!status.ok()) {
    std::remove(tmp.c_str());
    return status;
  }
  // Make the rename itself durable (best effort: the file is complete either way).
  (void)SyncDirectory(DirectoryOf(path));
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& dir) {
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return ErrnoError("cannot open folder", dir);
  const int rc = ::fsync(dir_fd);
  ::close(dir_fd);
  if (rc != 0) return ErrnoError("cannot fsync folder", dir);
  return absl::OkStatus();
}

absl::Status CreateDirectories(const std::string& path) {
  std::string partial;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    partial = path.substr(0, slash);
    start = slash + 1;
    if (partial.empty() || partial == ".") continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("cannot create folder", partial);
    }
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents) {
  return WriteFileAtomically(path, [&](std::FILE* file) {
    if (!contents.empty() &&
        std::fwrite(contents.data(), 1, contents.size(), file) != contents.size()) {
      return ErrnoError("cannot write", path);
    }
    return absl::OkStatus();
  });
}

absl::Status ReadFileToString(const std::string& path, std::string* contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  *contents = std::move(buffer).str();
  return absl::OkStatus();
}

}  // namespace otaro
