// Job specs: defaults, field errors that name the field, and data paths that
// cannot leave the data folder (absolute, "..", symlinks out).
#include "server/tuning/job_spec.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "common/testing/shared_data.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace otaro::server {
namespace {

using ::testing::HasSubstr;

class JobSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::ScratchDir("data");
    outside_ = testing::ScratchDir("outside");
    std::ofstream(root_ + "/train.txt") << "Once upon a time.\n";
    std::ofstream(outside_ + "/secret.txt") << "not yours\n";
    env_.data_dir = root_;
    env_.max_upload_bytes = 1000;
    env_.threads = 1;
  }

  otaro::v1::CreateTuningJobRequest Request() {
    otaro::v1::CreateTuningJobRequest request;
    request.mutable_dataset()->set_path("train.txt");
    request.mutable_hyperparameters()->set_max_steps(10);
    return request;
  }

  std::string Error(const otaro::v1::CreateTuningJobRequest& request) {
    auto options = TuneOptionsFromRequest(request, env_);
    EXPECT_FALSE(options.ok());
    return std::string(options.status().message());
  }

  std::string root_, outside_;
  JobEnvironment env_;
};

TEST_F(JobSpecTest, DefaultsAreThePapers) {
  auto options = TuneOptionsFromRequest(Request(), env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->strategy, "otaro");
  EXPECT_EQ(options->bits, (std::vector<int>{3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(options->bps.lambda, 5);
  EXPECT_EQ(options->laa.n, 10);
  EXPECT_EQ(options->laa.ultra_low_max_bits, 4);
  EXPECT_EQ(options->optimizer.kind, trainer::OptimizerKind::kSgd);
  EXPECT_DOUBLE_EQ(options->schedule.lr, 1e-5);
  EXPECT_EQ(options->steps, 10);
  char* real_root = realpath(root_.c_str(), nullptr);
  ASSERT_NE(real_root, nullptr);
  const std::string expected = std::string(real_root) + "/train.txt";
  std::free(real_root);
  EXPECT_EQ(options->data_path, expected);
}

TEST_F(JobSpecTest, HyperparametersMapAndBadOnesNameTheField) {
  auto request = Request();
  auto* h = request.mutable_hyperparameters();
  h->set_strategy(otaro::v1::STRATEGY_FIXED);
  h->set_fixed_mantissa_bits(4);
  h->add_bit_set(8);
  h->add_bit_set(3);
  h->set_optimizer(otaro::v1::OPTIMIZER_ADAMW);
  h->set_learning_rate(1e-4);
  h->set_reconstruction(otaro::v1::RECONSTRUCTION_TRUNCATE);
  auto options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->strategy, "fixed:4");
  EXPECT_EQ(options->bits, (std::vector<int>{3, 8}));
  EXPECT_EQ(options->optimizer.kind, trainer::OptimizerKind::kAdamW);
  EXPECT_EQ(options->reconstruction, sefp::Reconstruction::kTruncate);

  h->set_fixed_mantissa_bits(9);
  EXPECT_THAT(Error(request), HasSubstr("hyperparameters.fixed_mantissa_bits"));
  h->set_fixed_mantissa_bits(4);
  h->add_bit_set(3);
  EXPECT_THAT(Error(request), HasSubstr("hyperparameters.bit_set"));

  auto no_length = Request();
  no_length.mutable_hyperparameters()->clear_max_steps();
  EXPECT_THAT(Error(no_length), HasSubstr("epochs or max_steps"));
}

TEST_F(JobSpecTest, EvaluationBitsJoinTheBitSetAndBadOnesNameTheField) {
  auto request = Request();
  auto options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_TRUE(options->eval_bits.empty());  // the bit set only
  for (uint32_t b : {3, 4, 8}) request.mutable_hyperparameters()->add_bit_set(b);
  for (uint32_t b : {2, 8, 6}) request.mutable_evaluation()->add_mantissa_bits(b);
  options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->bits, (std::vector<int>{3, 4, 8}));
  EXPECT_EQ(options->eval_bits, (std::vector<int>{2, 3, 4, 6, 8}));

  request.mutable_evaluation()->add_mantissa_bits(9);
  EXPECT_THAT(Error(request), HasSubstr("evaluation.mantissa_bits"));
  request.mutable_evaluation()->clear_mantissa_bits();
  request.mutable_evaluation()->add_mantissa_bits(5);
  request.mutable_evaluation()->add_mantissa_bits(5);
  EXPECT_THAT(Error(request), HasSubstr("evaluation.mantissa_bits"));
}

TEST_F(JobSpecTest, LaaBaselinesAndSettleSteps) {
  auto request = Request();
  auto* h = request.mutable_hyperparameters();
  auto options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->eval_settle_steps, 20);  // the trainer's default

  h->set_strategy(otaro::v1::STRATEGY_FIXED);
  h->set_fixed_mantissa_bits(4);
  h->set_laa(true);
  h->set_eval_settle_steps(0);
  options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->strategy, "fixed:4+laa");
  EXPECT_EQ(options->eval_settle_steps, 0);
  h->set_strategy(otaro::v1::STRATEGY_UNIFORM);
  h->clear_fixed_mantissa_bits();
  options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->strategy, "uniform+laa");
  h->set_laa(false);
  options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->strategy, "uniform");

  // LAA only where it changes something; the error names the field.
  h->set_laa(true);
  for (auto strategy : {otaro::v1::STRATEGY_OTARO, otaro::v1::STRATEGY_BPS,
                        otaro::v1::STRATEGY_FP}) {
    h->set_strategy(strategy);
    auto refused = TuneOptionsFromRequest(request, env_);
    ASSERT_FALSE(refused.ok()) << strategy;
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(refused.status().message(), HasSubstr("hyperparameters.laa: "));
  }
  h->set_strategy(otaro::v1::STRATEGY_OTARO);
  h->clear_laa();
  h->set_eval_settle_steps(2000000);
  EXPECT_THAT(Error(request), HasSubstr("hyperparameters.eval_settle_steps"));
}

TEST_F(JobSpecTest, MaxGradNormDefaultsToOneAndAnExplicitZeroTurnsClippingOff) {
  auto request = Request();
  auto options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_DOUBLE_EQ(options->clip_grad_norm, 1.0);  // unset: `otaro tune`'s default

  request.mutable_hyperparameters()->set_max_grad_norm(0);
  options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_DOUBLE_EQ(options->clip_grad_norm, 0.0);  // explicit 0: off

  request.mutable_hyperparameters()->set_max_grad_norm(2.5f);
  options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_DOUBLE_EQ(options->clip_grad_norm, 2.5);

  // The explicit 0 survives the wire (the field has presence).
  otaro::v1::TuningHyperparameters zero;
  zero.set_max_grad_norm(0);
  otaro::v1::TuningHyperparameters parsed;
  ASSERT_TRUE(parsed.ParseFromString(zero.SerializeAsString()));
  EXPECT_TRUE(parsed.has_max_grad_norm());

  request.mutable_hyperparameters()->set_max_grad_norm(-1);
  EXPECT_THAT(Error(request), HasSubstr("hyperparameters.max_grad_norm"));
  request.mutable_hyperparameters()->set_max_grad_norm(std::nanf(""));
  EXPECT_THAT(Error(request), HasSubstr("hyperparameters.max_grad_norm"));
}

TEST_F(JobSpecTest, ZeroShotTasksAreKnownNamesReadFromTheZeroShotFolder) {
  ASSERT_EQ(::mkdir((root_ + "/eval").c_str(), 0755), 0);
  auto request = Request();
  request.mutable_evaluation()->add_zero_shot_tasks("arc_easy");
  request.mutable_evaluation()->add_zero_shot_tasks("piqa");
  request.mutable_evaluation()->set_max_items(20);
  auto options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->zero_shot_tasks, (std::vector<std::string>{"arc_easy", "piqa"}));
  EXPECT_EQ(options->zero_shot_max_items, 20);
  // Unset tuning.zero_shot_dir: the data folder's eval/.
  char* real_eval = realpath((root_ + "/eval").c_str(), nullptr);
  ASSERT_NE(real_eval, nullptr);
  EXPECT_EQ(options->zero_shot_dir, std::string(real_eval));
  std::free(real_eval);

  // A configured folder wins.
  env_.zero_shot_dir = outside_;
  options = TuneOptionsFromRequest(request, env_);
  ASSERT_TRUE(options.ok()) << options.status();
  char* real_outside = realpath(outside_.c_str(), nullptr);
  ASSERT_NE(real_outside, nullptr);
  EXPECT_EQ(options->zero_shot_dir, std::string(real_outside));
  std::free(real_outside);

  // Unknown names: INVALID_ARGUMENT naming the field, the task and the known ones.
  auto unknown = request;
  unknown.mutable_evaluation()->add_zero_shot_tasks("mmlu");
  auto refused = TuneOptionsFromRequest(unknown, env_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("evaluation.zero_shot_tasks"));
  EXPECT_THAT(refused.status().message(), HasSubstr("'mmlu'"));
  EXPECT_THAT(refused.status().message(), HasSubstr("known: arc_easy, arc_challenge"));
  auto twice = request;
  twice.mutable_evaluation()->add_zero_shot_tasks("piqa");
  EXPECT_THAT(Error(twice), HasSubstr("listed twice"));

  // No folder to read them from: the server's configuration, said so.
  env_.zero_shot_dir = outside_ + "/missing";
  refused = TuneOptionsFromRequest(request, env_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("tuning.zero_shot_dir"));
  env_.zero_shot_dir.clear();
  env_.data_dir.clear();
  request.mutable_dataset()->set_inline_data("hello");
  request.mutable_dataset()->set_format(otaro::v1::DATASET_FORMAT_TEXT);
  refused = TuneOptionsFromRequest(request, env_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("no zero-shot data folder"));
}

TEST_F(JobSpecTest, ZeroShotScoresReachTheEvaluationTable) {
  trainer::Evaluation evaluation;
  evaluation.step = 12;
  trainer::EvalPoint fp;
  fp.bits = 0;
  fp.loss = 2.0;
  fp.perplexity = 7.389;
  fp.zero_shot["arc_easy"] = {0.25, 0.35, 20};
  trainer::EvalPoint e5m4 = fp;
  e5m4.bits = 4;
  e5m4.zero_shot["arc_easy"] = {0.2, 0.3, 20};
  evaluation.points = {fp, e5m4};
  evaluation.reconstruction = sefp::Reconstruction::kTruncate;
  evaluation.laa_pending = 2;
  evaluation.steps_since_laa_flush = 5;
  const otaro::v1::EvaluationTable table = ToEvaluationTable(evaluation, 0, 3);
  // Every row is named by precision (mantissa_bits), the table's reconstruction
  // and the model it scores (not a version yet, tuned from version 3).
  EXPECT_EQ(table.reconstruction(), otaro::v1::RECONSTRUCTION_TRUNCATE);
  EXPECT_EQ(table.model_version(), 0u);
  EXPECT_EQ(table.base_version(), 3u);
  EXPECT_EQ(table.laa_pending(), 2u);
  EXPECT_EQ(table.steps_since_laa_flush(), 5);
  ASSERT_EQ(table.rows_size(), 2);
  EXPECT_EQ(table.rows(1).mantissa_bits(), 4u);
  EXPECT_DOUBLE_EQ(table.rows(0).accuracy().at("arc_easy"), 0.25);
  EXPECT_DOUBLE_EQ(table.rows(0).accuracy_norm().at("arc_easy"), 0.35);
  EXPECT_DOUBLE_EQ(table.rows(1).accuracy().at("arc_easy"), 0.2);
  EXPECT_DOUBLE_EQ(table.rows(1).accuracy_norm().at("arc_easy"), 0.3);
}

TEST_F(JobSpecTest, PathsCannotLeaveTheDataFolder) {
  auto request = Request();
  request.mutable_dataset()->set_path(outside_ + "/secret.txt");
  EXPECT_THAT(Error(request), HasSubstr("absolute"));
  request.mutable_dataset()->set_path("../outside/secret.txt");
  EXPECT_THAT(Error(request), HasSubstr(".."));
  request.mutable_dataset()->set_path("sub/../../x");
  EXPECT_THAT(Error(request), HasSubstr(".."));
  ASSERT_EQ(::symlink((outside_ + "/secret.txt").c_str(), (root_ + "/link.txt").c_str()), 0);
  request.mutable_dataset()->set_path("link.txt");
  // Every path problem is the request's: INVALID_ARGUMENT naming the field.
  auto options = TuneOptionsFromRequest(request, env_);
  ASSERT_FALSE(options.ok());
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(options.status().message()), ::testing::StartsWith("dataset.path: "));
  request.mutable_dataset()->set_path("missing.txt");
  options = TuneOptionsFromRequest(request, env_);
  ASSERT_FALSE(options.ok());
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(options.status().message()), ::testing::StartsWith("dataset.path: "));
  EXPECT_THAT(Error(request), HasSubstr("does not exist"));
  // A symlink that stays inside is fine.
  ASSERT_EQ(::symlink((root_ + "/train.txt").c_str(), (root_ + "/alias.txt").c_str()), 0);
  request.mutable_dataset()->set_path("alias.txt");
  EXPECT_TRUE(TuneOptionsFromRequest(request, env_).ok());
  // The held-out path follows the same rules.
  auto eval = Request();
  eval.mutable_evaluation()->set_heldout_text_path("../outside/secret.txt");
  EXPECT_THAT(Error(eval), HasSubstr("evaluation.heldout_text_path"));
}

TEST_F(JobSpecTest, InlineDataHasACapAndNeedsAFormat) {
  auto request = Request();
  request.mutable_dataset()->set_inline_data(std::string(2000, 'x'));
  request.mutable_dataset()->set_format(otaro::v1::DATASET_FORMAT_TEXT);
  EXPECT_THAT(Error(request), HasSubstr("over the cap"));
  request.mutable_dataset()->set_inline_data("hello");
  request.mutable_dataset()->set_format(otaro::v1::DATASET_FORMAT_UNSPECIFIED);
  EXPECT_THAT(Error(request), HasSubstr("dataset.format"));
  request.mutable_dataset()->set_format(otaro::v1::DATASET_FORMAT_TEXT);
  EXPECT_TRUE(TuneOptionsFromRequest(request, env_).ok());
  auto none = Request();
  none.mutable_dataset()->clear_path();
  EXPECT_THAT(Error(none), HasSubstr("dataset"));
}

}  // namespace
}  // namespace otaro::server
