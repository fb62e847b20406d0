// The README's configuration table is generated from the schema; this test
// fails when they drift. Fix: bash tools/update_readme_config.sh
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "server/config/config.h"

namespace otaro::server {
namespace {

TEST(ReadmeReferenceTest, ReadmeTableMatchesSchema) {
  std::ifstream in(std::string(std::getenv("TEST_SRCDIR")) + "/otaro/README.md");
  ASSERT_TRUE(in) << "README.md not in runfiles";
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string readme = buffer.str();
  const std::string begin = "<!-- config-reference:begin -->\n";
  const std::string end = "<!-- config-reference:end -->";
  size_t from = readme.find(begin);
  size_t to = readme.find(end);
  ASSERT_NE(from, std::string::npos);
  ASSERT_NE(to, std::string::npos);
  EXPECT_EQ(readme.substr(from + begin.size(), to - from - begin.size()),
            ConfigReferenceMarkdown())
      << "README.md's config table is stale: run bash tools/update_readme_config.sh";
}

}  // namespace
}  // namespace otaro::server
