// Recipes: the repository's own parse into `otaro tune create` settings; an
// unknown key or a value of the wrong type is INVALID_ARGUMENT naming the
// field path.
#include "common/recipe/recipe.h"

#include <map>

#include "absl/strings/numbers.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::recipe {
namespace {

using ::testing::HasSubstr;

std::map<std::string, std::string> ByKey(const std::vector<Setting>& settings) {
  std::map<std::string, std::string> out;
  for (const Setting& s : settings) out[s.key] = s.value;
  return out;
}

TEST(RecipeTest, TheSmolLm2RecipeParses) {
  auto settings = ReadRecipe("deploy/recipes/smollm2-otaro.yaml");
  ASSERT_TRUE(settings.ok()) << settings.status();
  const auto keys = ByKey(*settings);
  EXPECT_EQ(keys.at("name"), "smollm2-otaro");
  EXPECT_EQ(keys.at("strategy"), "uniform");
  EXPECT_EQ(keys.at("optimizer"), "adamw");
  EXPECT_EQ(keys.at("bits"), "3,4,8");
  EXPECT_EQ(keys.at("schedule"), "cosine");
  EXPECT_EQ(keys.at("seq_len"), "128");
  EXPECT_EQ(keys.at("batch"), "4");
  EXPECT_EQ(keys.at("laa_n"), "10");
  EXPECT_EQ(keys.at("laa_ultra_low"), "4");
  EXPECT_EQ(keys.at("bps_loss"), "latest");
  EXPECT_EQ(keys.at("data"), "wikitext-2-tokens/valid.txt");
  EXPECT_EQ(keys.at("heldout"), "wikitext-2-tokens/test.txt");
  EXPECT_EQ(keys.at("eval_settle"), "20");
  EXPECT_EQ(keys.at("eval_bits"), "8,7,6,5,4,3,2");
  double lr = 0;
  ASSERT_TRUE(absl::SimpleAtod(keys.at("lr"), &lr));
  EXPECT_DOUBLE_EQ(lr, 2e-4);
  // Paths say where each setting is in the file.
  EXPECT_EQ(settings->front().path, "recipe");
  bool found = false;
  for (const Setting& s : *settings) found |= s.path == "optimizer.lr" && s.key == "lr";
  EXPECT_TRUE(found);
}

TEST(RecipeTest, UnknownKeysAndBadValuesNameTheField) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {"optimizer:\n  lrr: 1e-5\n", "optimizer.lrr: unknown key (optimizer has: name, lr,"},
           {"optimiser:\n  lr: 1e-5\n", "optimiser: unknown key (a recipe has: recipe,"},
           {"training:\n  steps: many\n", "training.steps: expected a whole number >= 0, got 'many'"},
           {"training:\n  steps: -3\n", "training.steps: expected a whole number"},
           {"optimizer:\n  lr: fast\n", "optimizer.lr: expected a number, got 'fast'"},
           {"optimizer:\n  lr: [1, 2]\n", "optimizer.lr: expected a single value"},
           {"laa: 10\n", "laa: expected a mapping of settings"},
           {"eval:\n  zero_shot: []\n", "eval.zero_shot: is an empty list"},
           {"eval:\n  zero_shot: [[a]]\n", "eval.zero_shot: expected a list of plain values"},
           {"- a\n- b\n", "a recipe is a YAML mapping"},
           {"training: {steps: 1\n", "not valid YAML"},
       }) {
    SCOPED_TRACE(c.yaml);
    auto settings = ParseRecipe(c.yaml);
    ASSERT_FALSE(settings.ok());
    EXPECT_EQ(settings.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(settings.status().message(), HasSubstr(c.error));
  }
  auto missing = ReadRecipe("/no/such/recipe.yaml");
  EXPECT_THAT(missing.status().message(), HasSubstr("recipe /no/such/recipe.yaml"));
}

TEST(RecipeTest, ListsAndScalarsBothWork) {
  auto settings = ParseRecipe("training:\n  bits: 3-8\neval:\n  zero_shot: [arc_easy, piqa]\n");
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_EQ(ByKey(*settings).at("bits"), "3-8");
  EXPECT_EQ(ByKey(*settings).at("zero_shot"), "arc_easy,piqa");
}

}  // namespace
}  // namespace otaro::recipe
