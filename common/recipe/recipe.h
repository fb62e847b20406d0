// Tuning recipes: a named YAML file of tuning settings (deploy/recipes/), run
// offline with `otaro tune --recipe FILE` and through the server with
// `otaro tune create recipe=FILE`. Settings given on the command line override
// the recipe's.
//
// Design: the recipe is read where the command runs (the client, or the
// offline tool), never by the server. It becomes the same KEY=VALUE settings
// `otaro tune create` takes, so the server receives an ordinary
// CreateTuningJobRequest, validates it like any other (errors name the proto
// field) and confines its paths to tuning.data_dir; the server needs no file
// access and no second validation path. Offline, each key is the `otaro tune`
// flag of the same name (underscores as dashes; heldout is --eval-data).
//
// The file (every key optional; unknown keys are errors naming the key):
//   recipe: NAME                  the job's display name
//   data:      {path, format}     path relative to the data folder
//   training:  {strategy, bits, steps, epochs, batch, seq_len, grad_accum, seed,
//               reconstruction}
//   optimizer: {name, lr, schedule, warmup, min_lr, weight_decay, clip}
//   bps:       {lambda, loss}
//   laa:       {n, ultra_low, reduce}
//   eval:      {heldout, items, every, settle, zero_shot, bits}
//   checkpoint_every: N
// Values are scalars (zero_shot and bits may also be YAML lists). Types are
// checked here (a number where a number is due); ranges and names by whoever
// runs the settings.
#ifndef OTARO_COMMON_RECIPE_RECIPE_H_
#define OTARO_COMMON_RECIPE_RECIPE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace otaro::recipe {

struct Setting {
  std::string path;   // where it is in the file, e.g. "optimizer.lr"
  std::string key;    // the `otaro tune create` key, e.g. "lr"
  std::string value;  // as text, e.g. "2e-05"; lists joined with commas
};

// Settings in file order. Errors are InvalidArgument prefixed with the field
// path: "optimizer.lrr: unknown key (optimizer has: name, lr, ...)",
// "training.steps: expected a whole number, got 'many'".
absl::StatusOr<std::vector<Setting>> ParseRecipe(absl::string_view yaml_text);

// Reads and parses FILE; errors start with the file's name.
absl::StatusOr<std::vector<Setting>> ReadRecipe(const std::string& path);

}  // namespace otaro::recipe

#endif  // OTARO_COMMON_RECIPE_RECIPE_H_
