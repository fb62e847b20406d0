// Locates the project's shared, read-only test data (../shared: design/ with the
// SEFP golden vectors, data/ with real models and corpora). tools/test.sh passes
// its absolute path to every test as OTARO_SHARED_DIR.
#ifndef OTARO_COMMON_TESTING_SHARED_DATA_H_
#define OTARO_COMMON_TESTING_SHARED_DATA_H_

#include <string>

namespace otaro::testing {

// Absolute path of `relative` inside the shared folder, e.g.
// SharedPath("design/sefp_golden.json"). Aborts the test binary with a clear
// message when OTARO_SHARED_DIR is unset or the file does not exist: a test that
// silently skips its real data would prove nothing.
std::string SharedPath(const std::string& relative);

// A fresh, empty scratch directory for this test (under TEST_TMPDIR).
std::string ScratchDir(const std::string& name);

}  // namespace otaro::testing

#endif  // OTARO_COMMON_TESTING_SHARED_DATA_H_
