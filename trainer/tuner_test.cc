// Whole tuning runs on the real stories260K model and real text: the held-out
// loss goes down at every precision, a cancelled and resumed run ends exactly
// where an uninterrupted one does, and bad options or data fail before any
// training with errors that say what is wrong.
#include "trainer/tuner.h"

#include <atomic>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/testing/shared_data.h"
#include "engine/model/loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace otaro::trainer {
namespace {

using ::testing::HasSubstr;

std::string StoriesGguf() {
  return testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
}

// The first `bytes` of a shared text file (whole lines), copied beside `out`.
std::string Excerpt(const std::string& shared_path, size_t bytes, const std::string& out) {
  std::ifstream in(testing::SharedPath(shared_path));
  std::string text, line;
  while (text.size() < bytes && std::getline(in, line)) text += line + "\n";
  const std::string path = out + "." + std::to_string(bytes) + ".txt";
  std::ofstream(path) << text;
  return path;
}

// Real text the model was not trained on (it knows TinyStories): WikiText-2,
// an excerpt of the validation split to train on and of the test split to
// evaluate on (whole files would make the test slow, not stronger).
TuneOptions SmallRun(const std::string& out) {
  TuneOptions options;
  options.model_path = StoriesGguf();
  options.data_path = Excerpt("data/corpora/wikitext-2-tokens/valid.txt", 200000, out);
  options.eval_data_path = Excerpt("data/corpora/wikitext-2-raw-hf/wiki.test.raw", 40000, out);
  options.max_eval_batches = 8;
  options.data_format = data::DataFormat::kText;
  options.output_dir = out;
  options.seq_len = 64;
  options.batch_size = 4;
  options.optimizer.kind = OptimizerKind::kAdamW;
  options.schedule.lr = 2e-3;
  options.threads = 2;
  options.seed = 7;
  return options;
}

std::map<std::string, std::vector<float>> ReadMaster(const std::string& path) {
  engine::ModelConfig config;
  auto source = engine::OpenModelSource(path, &config);
  EXPECT_TRUE(source.ok()) << source.status();
  std::map<std::string, std::vector<float>> tensors;
  if (!source.ok()) return tensors;
  for (const std::string& name : engine::ExpectedTensorNames(config)) {
    tensors[name] = *(*source)->ReadFloat32(name);
  }
  return tensors;
}

std::vector<nlohmann::json> StepLog(const std::string& out) {
  std::ifstream in(out + "/steps.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

TEST(TunerTest, ShortRealRunLowersHeldOutLossAtEveryPrecision) {
  const std::string out = testing::ScratchDir("short_run");
  TuneOptions options = SmallRun(out);
  options.steps = 200;
  options.evaluate_at_start = true;
  std::vector<Evaluation> evaluations;
  std::vector<StepMetrics> steps;
  TuneCallbacks callbacks;
  callbacks.on_evaluation = [&](const Evaluation& e) { evaluations.push_back(e); };
  callbacks.on_step = [&](const StepMetrics& m) { steps.push_back(m); };
  auto result = RunTuning(options, callbacks, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();

  ASSERT_EQ(evaluations.size(), 2u);  // before and after
  EXPECT_EQ(evaluations[0].step, 0);
  EXPECT_EQ(evaluations[1].step, 200);
  ASSERT_EQ(evaluations[0].points.size(), 7u);  // fp32 + E5M8..E5M3
  for (size_t i = 0; i < evaluations[0].points.size(); ++i) {
    const EvalPoint& before = evaluations[0].points[i];
    const EvalPoint& after = evaluations[1].points[i];
    EXPECT_EQ(before.bits, after.bits);
    EXPECT_GT(before.tokens, 1000);
    EXPECT_LT(after.loss, before.loss - 0.05) << "bits " << before.bits;
  }

  // Every width of the bit set was tried, widest first (BPS's first pass).
  ASSERT_EQ(steps.size(), 200u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(steps[i].bits, 8 - i) << i;
  EXPECT_EQ(result->bit_selections.size(), 6u);
  // LAA: ultra-low steps (E5M4, E5M3) accumulate, every 10th applies, up to
  // the drain at step 180; the last 20 (settle) steps apply every gradient.
  int64_t ultra_low = 0, flushes = 0, drains = 0;
  for (const StepMetrics& m : steps) {
    if (m.step <= 180) {
      ultra_low += m.bits <= 4;
      flushes += m.laa_flush && !m.laa_drain;
      drains += m.laa_drain;
      EXPECT_EQ(m.accumulated || (m.laa_flush && !m.laa_drain), m.bits <= 4) << "step " << m.step;
      EXPECT_FALSE(m.laa_paused) << m.step;
      EXPECT_EQ(m.laa_drain, m.step == 180 && ultra_low % 10 != 0) << m.step;
    } else {
      EXPECT_FALSE(m.accumulated || m.laa_flush) << "step " << m.step;
      EXPECT_EQ(m.laa_paused, m.bits <= 4) << "step " << m.step;
    }
  }
  EXPECT_EQ(flushes, ultra_low / 10);
  const std::vector<nlohmann::json> log = StepLog(out);
  EXPECT_EQ(log.size(), 200u);
  // Every flush line says what the flush did to its batch's loss.
  int64_t logged_flushes = 0;
  for (const nlohmann::json& line : log) {
    if (!line["laa_flush"].get<bool>()) {
      EXPECT_FALSE(line.contains("flush_loss_delta")) << line.dump();
      continue;
    }
    ++logged_flushes;
    EXPECT_DOUBLE_EQ(line["flush_loss_delta"].get<double>(),
                     line["flush_loss_after"].get<double>() -
                         line["flush_loss_before"].get<double>());
    EXPECT_GT(line["flush_norm"].get<double>(), 0) << line.dump();
  }
  EXPECT_EQ(logged_flushes, flushes + drains);
  // The final evaluation is past the settle steps: nothing pending, >= 20
  // steps since the last flush, and every point names its reconstruction.
  EXPECT_EQ(evaluations[1].laa_pending, 0);
  EXPECT_GE(evaluations[1].steps_since_laa_flush, 20);

  // The export is a SEFP model the server loads, with its provenance.
  auto model = engine::LoadModel(result->sefp_path, {});
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->source_format, "sefp");
  std::ifstream evaluation(out + "/evaluation.json");
  ASSERT_TRUE(evaluation.good());
  const nlohmann::json table = nlohmann::json::parse(evaluation);
  EXPECT_EQ(table["reconstruction"], "midpoint");
  EXPECT_EQ(table["model"]["strategy"], "otaro");
  EXPECT_EQ(table["model"]["base_model"], StoriesGguf());
  EXPECT_EQ(table["model"]["tuned"], true);
  for (const nlohmann::json& point : table["points"]) {
    EXPECT_EQ(point["reconstruction"], point["bits"] == 0 ? "none" : "midpoint") << point.dump();
    EXPECT_TRUE(point["precision"].is_string()) << point.dump();
  }
}

// Clipping applies to what reaches the weights: with SGD (no momentum) a step
// moves the weights by lr * the applied update, so the change across an LAA
// flush has norm lr * min(flush_norm, max_grad_norm), and steps that only
// accumulate do not move them at all.
TEST(TunerTest, LaaFlushIsClippedLikeEveryUpdate) {
  auto run = [](const std::string& out, double clip, int64_t steps) {
    TuneOptions options = SmallRun(out);
    options.strategy = "fixed:3+laa";  // every step accumulates, every 4th flushes
    options.laa.n = 4;
    options.optimizer.kind = OptimizerKind::kSgd;
    options.schedule.lr = 1.0;
    options.clip_grad_norm = clip;
    options.steps = steps;
    options.eval_settle_steps = 0;
    options.max_eval_batches = 1;
    options.checkpoint_every = 1;
    options.keep_checkpoints = 0;  // keep every step's masters
    auto result = RunTuning(options, {}, nullptr);
    EXPECT_TRUE(result.ok()) << result.status();
    return StepLog(out);
  };
  auto delta_norm = [](const std::string& out, int step) {
    auto name = [&](int s) {
      return absl::StrFormat("%s/checkpoints/step-%08d/master.safetensors", out, s);
    };
    const auto before = ReadMaster(name(step - 1)), after = ReadMaster(name(step));
    double sum = 0;
    for (const auto& [tensor, values] : after) {
      const std::vector<float>& old = before.at(tensor);
      for (size_t i = 0; i < values.size(); ++i) {
        const double d = static_cast<double>(values[i]) - old[i];
        sum += d * d;
      }
    }
    return std::sqrt(sum);
  };
  const std::string clipped = testing::ScratchDir("flush_clipped");
  const std::vector<nlohmann::json> log = run(clipped, 0.01, 8);
  ASSERT_EQ(log.size(), 8u);
  for (int step : {2, 3, 6, 7}) {
    EXPECT_TRUE(log[step - 1]["accumulated"].get<bool>()) << step;
    EXPECT_EQ(delta_norm(clipped, step), 0.0) << step;
  }
  for (int step : {4, 8}) {
    const nlohmann::json& line = log[step - 1];
    ASSERT_TRUE(line["laa_flush"].get<bool>()) << step;
    // The sum of 4 raw gradients is far above the bound; the weights moved by
    // exactly the bound.
    EXPECT_GT(line["flush_norm"].get<double>(), 0.05) << step;
    EXPECT_NEAR(delta_norm(clipped, step), 0.01, 1e-4) << step;
  }
  // Clipping off: the whole sum is applied.
  const std::string unclipped = testing::ScratchDir("flush_unclipped");
  const std::vector<nlohmann::json> free_log = run(unclipped, 0, 4);
  const double norm = free_log[3]["flush_norm"].get<double>();
  EXPECT_NEAR(delta_norm(unclipped, 4), norm, 1e-3 * norm);
}

// The final evaluation never sees a flush transient: the accumulator is drained
// at total - eval_settle_steps and the settle steps bypass it; periodic
// evaluations leave training alone and say where they stand.
TEST(TunerTest, FinalEvaluationComesAfterDrainAndSettleSteps) {
  const std::string out = testing::ScratchDir("settle");
  TuneOptions options = SmallRun(out);
  options.strategy = "fixed:3+laa";
  options.laa.n = 4;
  options.steps = 10;
  options.eval_settle_steps = 3;  // drain at the end of step 7
  options.eval_every = 5;
  options.max_eval_batches = 1;
  std::vector<Evaluation> evaluations;
  std::vector<StepMetrics> steps;
  TuneCallbacks callbacks;
  callbacks.on_evaluation = [&](const Evaluation& e) { evaluations.push_back(e); };
  callbacks.on_step = [&](const StepMetrics& m) { steps.push_back(m); };
  auto result = RunTuning(options, callbacks, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(steps.size(), 10u);
  for (const StepMetrics& m : steps) {
    SCOPED_TRACE(m.step);
    EXPECT_EQ(m.bits, 3);
    EXPECT_EQ(m.laa_flush, m.step == 4 || m.step == 7);
    EXPECT_EQ(m.laa_drain, m.step == 7);
    EXPECT_EQ(m.accumulated, m.step <= 7 && m.step != 4);
    EXPECT_EQ(m.laa_paused, m.step > 7);
  }
  ASSERT_EQ(evaluations.size(), 2u);
  EXPECT_EQ(evaluations[0].step, 5);  // periodic: one gradient pending, a flush 1 step ago
  EXPECT_EQ(evaluations[0].laa_pending, 1);
  EXPECT_EQ(evaluations[0].steps_since_laa_flush, 1);
  EXPECT_EQ(evaluations[1].step, 10);
  EXPECT_EQ(evaluations[1].laa_pending, 0);
  EXPECT_EQ(evaluations[1].steps_since_laa_flush, 3);

  // Without LAA the same settings change nothing: no step is paused.
  TuneOptions plain = options;
  plain.strategy = "fixed:3";
  plain.output_dir = testing::ScratchDir("settle_plain");
  steps.clear();
  evaluations.clear();
  ASSERT_TRUE(RunTuning(plain, callbacks, nullptr).ok());
  for (const StepMetrics& m : steps) EXPECT_FALSE(m.accumulated || m.laa_flush || m.laa_paused);
  EXPECT_EQ(evaluations.back().steps_since_laa_flush, -1);
}

TEST(TunerTest, CancelledAndResumedRunEndsExactlyWhereAStraightRunDoes) {
  const std::string straight = testing::ScratchDir("straight");
  const std::string resumed = testing::ScratchDir("resumed");
  auto options_for = [](const std::string& out) {
    TuneOptions options = SmallRun(out);
    options.steps = 36;
    options.laa.n = 4;  // the cancel at step 17 leaves the accumulator part full
    options.eval_settle_steps = 5;  // drain after step 31, settle steps 32..36
    options.max_eval_batches = 2;
    return options;
  };
  ASSERT_TRUE(RunTuning(options_for(straight), {}, nullptr).ok());

  std::atomic<bool> cancel{false};
  TuneCallbacks callbacks;
  callbacks.on_step = [&](const StepMetrics& m) {
    if (m.step == 17) cancel.store(true);
  };
  auto first = RunTuning(options_for(resumed), callbacks, &cancel);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->cancelled);
  EXPECT_EQ(first->steps, 17);
  EXPECT_TRUE(first->sefp_path.empty());

  TuneOptions again = options_for(resumed);
  again.resume = true;
  auto second = RunTuning(again, {}, nullptr);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->steps, 36);

  const auto a = ReadMaster(straight + "/checkpoints/step-00000036/master.safetensors");
  const auto b = ReadMaster(resumed + "/checkpoints/step-00000036/master.safetensors");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, values] : a) EXPECT_EQ(values, b.at(name)) << name;
  const auto log_a = StepLog(straight), log_b = StepLog(resumed);
  ASSERT_EQ(log_a.size(), log_b.size());
  for (size_t i = 0; i < log_a.size(); ++i) {
    EXPECT_EQ(log_a[i]["bits"], log_b[i]["bits"]) << i;
    EXPECT_EQ(log_a[i]["loss"], log_b[i]["loss"]) << i;
  }

  // A resume with other settings is refused.
  TuneOptions other = options_for(resumed);
  other.resume = true;
  other.strategy = "uniform";
  auto refused = RunTuning(other, {}, nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("other settings"));
}

// Found by the job manager's test: a cancel that lands right after a periodic
// checkpoint wrote the same step again, which the job store refuses (one
// checkpoint per step), so the job FAILED instead of INTERRUPTED.
TEST(TunerTest, CancelRightAfterACheckpointDoesNotWriteItAgain) {
  const std::string out = testing::ScratchDir("cancel_at_checkpoint");
  TuneOptions options = SmallRun(out);
  options.steps = 20;
  options.checkpoint_every = 5;
  options.max_eval_batches = 1;
  std::atomic<bool> cancel{false};
  std::vector<int64_t> checkpoints;
  TuneCallbacks callbacks;
  callbacks.on_checkpoint = [&](const CheckpointRecord& c) {
    checkpoints.push_back(c.step);
    if (c.step == 10) cancel.store(true);
  };
  auto run = RunTuning(options, callbacks, &cancel);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->cancelled);
  EXPECT_EQ(run->steps, 10);
  EXPECT_EQ(checkpoints, (std::vector<int64_t>{5, 10}));  // step 10 once
}

TEST(TunerTest, ZeroShotSetsAreScoredAtStartAndEndAtEveryPrecision) {
  const std::string out = testing::ScratchDir("zero_shot");
  TuneOptions options = SmallRun(out);
  options.steps = 4;
  options.eval_every = 2;
  options.bits = {4, 8};
  options.max_eval_batches = 1;
  options.evaluate_at_start = true;
  options.zero_shot_tasks = {"arc_easy"};
  options.zero_shot_dir = testing::SharedPath("data/eval");
  options.zero_shot_max_items = 10;
  std::vector<Evaluation> evaluations;
  TuneCallbacks callbacks;
  callbacks.on_evaluation = [&](const Evaluation& e) { evaluations.push_back(e); };
  auto result = RunTuning(options, callbacks, nullptr);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(evaluations.size(), 3u);  // before, step 2 (loss only), the end
  EXPECT_EQ(evaluations[0].step, 0);
  EXPECT_EQ(evaluations[1].step, 2);
  EXPECT_EQ(evaluations[2].step, 4);
  for (const Evaluation& e : {evaluations[0], evaluations[2]}) {
    ASSERT_EQ(e.points.size(), 3u);  // fp32, E5M8, E5M4
    for (const EvalPoint& p : e.points) {
      ASSERT_EQ(p.zero_shot.count("arc_easy"), 1u) << p.bits;
      const ZeroShotScore& score = p.zero_shot.at("arc_easy");
      EXPECT_EQ(score.questions, 10);
      EXPECT_GE(score.acc, 0);
      EXPECT_LE(score.acc, 1);
      EXPECT_GE(score.acc_norm, 0);
      EXPECT_LE(score.acc_norm, 1);
    }
  }
  for (const EvalPoint& p : evaluations[1].points) EXPECT_TRUE(p.zero_shot.empty()) << p.bits;
  ASSERT_TRUE(result->final_evaluation.has_value());
  EXPECT_EQ(result->final_evaluation->points[0].zero_shot.size(), 1u);

  // evaluation.json carries the scores too.
  std::ifstream in(out + "/evaluation.json");
  const nlohmann::json table = nlohmann::json::parse(in);
  for (const nlohmann::json& point : table["points"]) {
    EXPECT_EQ(point["zero_shot"]["arc_easy"]["questions"], 10) << point.dump();
    EXPECT_TRUE(point["zero_shot"]["arc_easy"]["acc"].is_number()) << point.dump();
  }

  // A set whose file is missing fails the run before its first step.
  TuneOptions missing = SmallRun(testing::ScratchDir("zero_shot_missing"));
  missing.steps = 2;
  missing.zero_shot_tasks = {"piqa"};
  missing.zero_shot_dir = testing::ScratchDir("empty_eval_dir");
  int steps = 0;
  TuneCallbacks count_steps;
  count_steps.on_step = [&](const StepMetrics&) { ++steps; };
  auto failed = RunTuning(missing, count_steps, nullptr);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(steps, 0);
  EXPECT_THAT(std::string(failed.status().message()), HasSubstr("zero-shot set 'piqa'"));
}

TEST(TunerTest, BadOptionsAreRefusedBeforeTraining) {
  const std::string out = testing::ScratchDir("bad");
  auto error = [&](auto&& edit) {
    TuneOptions options = SmallRun(out);
    edit(options);
    absl::Status status = ValidateTuneOptions(options);
    EXPECT_FALSE(status.ok());
    return std::string(status.message());
  };
  EXPECT_THAT(error([](TuneOptions& o) { o.strategy = "fixed:9"; }), HasSubstr("fixed"));
  EXPECT_THAT(error([](TuneOptions& o) { o.strategy = "fixed:6+laa"; }),
              HasSubstr("E5M6 would never accumulate"));
  EXPECT_THAT(error([](TuneOptions& o) { o.eval_settle_steps = -1; }),
              HasSubstr("eval_settle_steps"));
  EXPECT_THAT(error([](TuneOptions& o) { o.bits = {1, 3}; }), HasSubstr("1"));
  EXPECT_THAT(error([](TuneOptions& o) { o.seq_len = 1; }), HasSubstr("seq_len"));
  EXPECT_THAT(error([](TuneOptions& o) { o.data_path = "/no/such/file"; }),
              HasSubstr("does not exist"));
  EXPECT_THAT(error([](TuneOptions& o) { o.schedule.lr = -1; }), HasSubstr("learning rate"));
  EXPECT_THAT(error([](TuneOptions& o) {
                o.zero_shot_tasks = {"arc_easy", "mmlu"};
                o.zero_shot_dir = "/tmp";
              }),
              HasSubstr("unknown zero-shot task 'mmlu' (known: arc_easy, arc_challenge"));
  EXPECT_THAT(error([](TuneOptions& o) {
                o.zero_shot_tasks = {"piqa", "piqa"};
                o.zero_shot_dir = "/tmp";
              }),
              HasSubstr("listed twice"));
  EXPECT_THAT(error([](TuneOptions& o) { o.zero_shot_tasks = {"piqa"}; }),
              HasSubstr("zero_shot_dir"));

  // A SEFP checkpoint is not a float source (OTARO.md: tune from the original).
  const std::string sefp = out + "/m.sefp";
  ASSERT_TRUE(engine::ConvertToSefpCheckpoint(StoriesGguf(), sefp,
                                              sefp::Reconstruction::kMidpoint).ok());
  EXPECT_THAT(error([&](TuneOptions& o) { o.model_path = sefp; }), HasSubstr("SEFP checkpoint"));
}

TEST(TunerTest, MostlyBrokenDatasetFailsWithLineNumbersBeforeTraining) {
  const std::string out = testing::ScratchDir("broken");
  const std::string data = out + "/data.jsonl";
  {
    std::ofstream file(data);
    file << R"({"instruction": "Say hi.", "output": "Hi!"})" << "\n";
    file << "{not json\n";
    file << R"({"instruction": 3, "output": "x"})" << "\n";
    file << R"({"output": "missing instruction"})" << "\n";
  }
  TuneOptions options = SmallRun(out + "/run");
  options.data_path = data;
  options.data_format = data::DataFormat::kAlpaca;
  options.seq_len = 256;  // the good line fits: 3 of 4 malformed is what fails
  options.steps = 5;
  int steps = 0;
  TuneCallbacks callbacks;
  callbacks.on_step = [&](const StepMetrics&) { ++steps; };
  auto result = RunTuning(options, callbacks, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(steps, 0);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("data.jsonl:2: not valid JSON"));
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("data.jsonl:4: missing"));
}

}  // namespace
}  // namespace otaro::trainer
