#include "common/recipe/recipe.h"

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "yaml-cpp/yaml.h"

namespace otaro::recipe {
namespace {

enum class Type { kText, kInteger, kNumber, kList };

struct Field {
  const char* name;  // within its section
  const char* key;   // the otaro tune create key
  Type type;
};

struct Section {
  const char* name;  // "" = the top level
  std::vector<Field> fields;
};

const std::vector<Section>& Schema() {
  static const auto* schema = new std::vector<Section>{
      {"", {{"recipe", "name", Type::kText}, {"checkpoint_every", "checkpoint_every", Type::kInteger}}},
      {"data", {{"path", "data", Type::kText}, {"format", "format", Type::kText}}},
      {"training",
       {{"strategy", "strategy", Type::kText},
        {"bits", "bits", Type::kList},
        {"steps", "steps", Type::kInteger},
        {"epochs", "epochs", Type::kNumber},
        {"batch", "batch", Type::kInteger},
        {"seq_len", "seq_len", Type::kInteger},
        {"grad_accum", "grad_accum", Type::kInteger},
        {"seed", "seed", Type::kInteger},
        {"reconstruction", "reconstruction", Type::kText}}},
      {"optimizer",
       {{"name", "optimizer", Type::kText},
        {"lr", "lr", Type::kNumber},
        {"schedule", "schedule", Type::kText},
        {"warmup", "warmup", Type::kInteger},
        {"min_lr", "min_lr", Type::kNumber},
        {"weight_decay", "weight_decay", Type::kNumber},
        {"clip", "clip", Type::kNumber}}},
      {"bps", {{"lambda", "lambda", Type::kNumber}, {"loss", "bps_loss", Type::kText}}},
      {"laa",
       {{"n", "laa_n", Type::kInteger},
        {"ultra_low", "laa_ultra_low", Type::kInteger},
        {"reduce", "laa_reduce", Type::kText}}},
      {"eval",
       {{"heldout", "heldout", Type::kText},
        {"items", "eval_items", Type::kInteger},
        {"every", "eval_every", Type::kInteger},
        {"settle", "eval_settle", Type::kInteger},
        {"zero_shot", "zero_shot", Type::kList},
        {"bits", "eval_bits", Type::kList}}},
  };
  return *schema;
}

absl::Status Error(absl::string_view path, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

std::string Names(const Section& section) {
  std::vector<std::string> names;
  for (const Field& f : section.fields) names.push_back(f.name);
  if (section.name[0] == '\0') {
    for (const Section& s : Schema()) {
      if (s.name[0] != '\0') names.push_back(s.name);
    }
  }
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<std::string> Value(const YAML::Node& node, const std::string& path, Type type) {
  if (type == Type::kList && node.IsSequence()) {
    std::vector<std::string> items;
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) return Error(path, "expected a list of plain values");
      items.push_back(item.Scalar());
    }
    if (items.empty()) return Error(path, "is an empty list");
    return absl::StrJoin(items, ",");
  }
  if (!node.IsScalar()) {
    return Error(path, type == Type::kList ? "expected a value or a list of values"
                                           : "expected a single value, not a list or mapping");
  }
  const std::string text = node.Scalar();
  if (text.empty()) return Error(path, "is empty");
  int64_t integer;
  double number;
  if (type == Type::kInteger && (!absl::SimpleAtoi(text, &integer) || integer < 0)) {
    return Error(path, absl::StrCat("expected a whole number >= 0, got '", text, "'"));
  }
  if (type == Type::kNumber && !absl::SimpleAtod(text, &number)) {
    return Error(path, absl::StrCat("expected a number, got '", text, "'"));
  }
  return text;
}

}  // namespace

absl::StatusOr<std::vector<Setting>> ParseRecipe(absl::string_view yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("not valid YAML: ", e.what()));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError("a recipe is a YAML mapping of settings");
  const Section& top = Schema().front();
  std::vector<Setting> settings;
  auto field_of = [](const Section& section, const std::string& name) -> const Field* {
    for (const Field& f : section.fields) {
      if (name == f.name) return &f;
    }
    return nullptr;
  };
  for (const auto& entry : root) {
    const std::string name = entry.first.as<std::string>("");
    if (const Field* f = field_of(top, name)) {
      absl::StatusOr<std::string> value = Value(entry.second, name, f->type);
      if (!value.ok()) return value.status();
      settings.push_back({name, f->key, *value});
      continue;
    }
    const Section* section = nullptr;
    for (const Section& s : Schema()) {
      if (s.name[0] != '\0' && name == s.name) section = &s;
    }
    if (section == nullptr) {
      return Error(name, absl::StrCat("unknown key (a recipe has: ", Names(top), ")"));
    }
    if (!entry.second.IsMap()) return Error(name, "expected a mapping of settings");
    for (const auto& item : entry.second) {
      const std::string field = item.first.as<std::string>("");
      const std::string path = absl::StrCat(name, ".", field);
      const Field* f = field_of(*section, field);
      if (f == nullptr) {
        return Error(path, absl::StrCat("unknown key (", name, " has: ", Names(*section), ")"));
      }
      absl::StatusOr<std::string> value = Value(item.second, path, f->type);
      if (!value.ok()) return value.status();
      settings.push_back({path, f->key, *value});
    }
  }
  return settings;
}

absl::StatusOr<std::vector<Setting>> ReadRecipe(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("recipe ", path, ": cannot read the file"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::vector<Setting>> settings = ParseRecipe(text.str());
  if (!settings.ok()) {
    return absl::Status(settings.status().code(),
                        absl::StrCat("recipe ", path, ": ", settings.status().message()));
  }
  return settings;
}

}  // namespace otaro::recipe
