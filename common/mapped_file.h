// A read-only memory-mapped file. Model files are mapped, not read, so loading a
// multi-gigabyte checkpoint costs page faults for what is used, not a copy.
#ifndef OTARO_COMMON_MAPPED_FILE_H_
#define OTARO_COMMON_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace otaro {

class MappedFile {
 public:
  // Maps `path` read-only. Errors name the path and the OS reason.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  absl::Span<const uint8_t> bytes() const { return {data_, size_}; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;  // nullptr for an empty file.
  size_t size_;
};

}  // namespace otaro

#endif  // OTARO_COMMON_MAPPED_FILE_H_
