// Splits a fuzz input into fields at NUL bytes, for targets whose parser takes
// several texts (the missing fields are empty).
#ifndef OTARO_TOOLS_FUZZ_TARGETS_FUZZ_SPLIT_H_
#define OTARO_TOOLS_FUZZ_TARGETS_FUZZ_SPLIT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace otaro::fuzz {

inline std::vector<std::string> SplitFields(const uint8_t* data, size_t size, size_t n) {
  std::vector<std::string> fields(n);
  size_t k = 0;
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == 0 && k + 1 < n) {
      ++k;
    } else {
      fields[k].push_back(static_cast<char>(data[i]));
    }
  }
  return fields;
}

}  // namespace otaro::fuzz

#endif  // OTARO_TOOLS_FUZZ_TARGETS_FUZZ_SPLIT_H_
