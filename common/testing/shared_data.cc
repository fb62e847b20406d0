#include "common/testing/shared_data.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace otaro::testing {

std::string SharedPath(const std::string& relative) {
  const char* root = std::getenv("OTARO_SHARED_DIR");
  if (root == nullptr || root[0] == '\0') {
    std::fprintf(stderr,
                 "OTARO_SHARED_DIR is not set: run tests with tools/test.sh, or pass "
                 "--test_env=OTARO_SHARED_DIR=/abs/path/to/shared to bazel test\n");
    std::abort();
  }
  std::string path = std::string(root) + "/" + relative;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "shared test data missing: %s\n", path.c_str());
    std::abort();
  }
  return path;
}

std::string ScratchDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::filesystem::path dir = std::filesystem::path(tmp ? tmp : "/tmp") / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace otaro::testing
