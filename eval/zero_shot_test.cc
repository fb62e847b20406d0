// Zero-shot evaluation: the loaders on the real eval files (counts as in
// ../shared/data/MANIFEST.md, first entries as in the files), malformed input
// with file:line errors, and the scores of the real stories260K model against
// log-likelihoods the test computes itself with the float64 reference forward
// (engine/cpu/reference_forward.h), tokenised by the test.
#include "eval/zero_shot.h"

#include <cmath>
#include <fstream>

#include "common/testing/shared_data.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/cpu/reference_forward.h"
#include "engine/cpu/testing/test_backend.h"
#include "engine/model/loader.h"
#include "engine/runtime/sampler.h"
#include "gtest/gtest.h"

namespace otaro::eval {
namespace {

using engine::Token;

std::string EvalDir() { return otaro::testing::SharedPath("data/eval"); }

// ---- Loaders on the real files ----------------------------------------------

TEST(ZeroShotLoaders, CountsMatchTheManifest) {
  const std::pair<const char*, size_t> want[] = {
      {"arc_easy", 2376}, {"arc_challenge", 1172}, {"obqa", 500},
      {"piqa", 1838},     {"boolq", 3270},         {"mathqa", 2983},
      {"winogrande", 1267}, {"hellaswag", 10042}, {"lambada", 5153}};
  ASSERT_EQ(KnownTaskNames().size(), std::size(want));
  for (const auto& [name, count] : want) {
    auto tasks = LoadNamedTask(name, EvalDir());
    ASSERT_TRUE(tasks.ok()) << name << ": " << tasks.status();
    EXPECT_EQ(tasks->size(), count) << name;
  }
}

TEST(ZeroShotLoaders, PromptsAreLmEvalStyle) {
  auto arc = LoadNamedTask("arc_easy", EvalDir());
  ASSERT_TRUE(arc.ok()) << arc.status();
  const MultipleChoiceTask& a = (*arc)[0];
  EXPECT_EQ(a.contexts, std::vector<std::string>{
                            "Question: Which statement best explains why photosynthesis is the "
                            "foundation of most food webs?\nAnswer:"});
  ASSERT_EQ(a.choices.size(), 4u);
  EXPECT_EQ(a.choices[0], "Sunlight is the source of energy for nearly all ecosystems.");
  EXPECT_EQ(a.gold, 0);
  EXPECT_EQ(a.delimiter, " ");
  EXPECT_NE(a.where.find("arc_easy.jsonl:1"), std::string::npos) << a.where;

  auto piqa = LoadNamedTask("piqa", EvalDir());
  ASSERT_TRUE(piqa.ok()) << piqa.status();
  EXPECT_EQ((*piqa)[1].contexts[0], "Question: dresser\nAnswer:");
  EXPECT_EQ((*piqa)[1].gold, 1);

  auto wino = LoadNamedTask("winogrande", EvalDir());
  ASSERT_TRUE(wino.ok()) << wino.status();
  const MultipleChoiceTask& w = (*wino)[0];
  EXPECT_EQ(w.contexts, (std::vector<std::string>{
                            "Sarah was a much better surgeon than Maria so Sarah",
                            "Sarah was a much better surgeon than Maria so Maria"}));
  EXPECT_EQ(w.choices, (std::vector<std::string>{"always got the easier cases.",
                                                 "always got the easier cases."}));
  EXPECT_EQ(w.gold, 1);

  auto hs = LoadNamedTask("hellaswag", EvalDir());
  ASSERT_TRUE(hs.ok()) << hs.status();
  const MultipleChoiceTask& h = (*hs)[0];
  EXPECT_EQ(h.contexts[0], "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(h.choices[3], "starts pulling up roofing on a roof.");
  EXPECT_EQ(h.gold, 3);

  auto math = LoadNamedTask("mathqa", EvalDir());
  ASSERT_TRUE(math.ok()) << math.status();
  EXPECT_EQ((*math)[0].delimiter, "");
  EXPECT_EQ((*math)[0].gold, 3);

  auto lambada = LoadNamedTask("lambada", EvalDir());
  ASSERT_TRUE(lambada.ok()) << lambada.status();
  EXPECT_EQ((*lambada)[0].choices, std::vector<std::string>{"signs"});
  EXPECT_EQ((*lambada)[0].delimiter, " ");
  EXPECT_EQ((*lambada)[4462].delimiter, "");  // its continuation starts with "\n\n"

  auto unknown = LoadNamedTask("mmlu", EvalDir());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("arc_easy"), std::string::npos);
}

std::string WriteFile(const std::string& name, const std::string& text) {
  static const std::string dir = otaro::testing::ScratchDir("zero_shot");
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

void ExpectError(const absl::Status& s, const std::string& where, const std::string& what) {
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find(where), std::string::npos) << s;
  EXPECT_NE(s.message().find(what), std::string::npos) << s;
}

TEST(ZeroShotLoaders, MalformedEntriesNameFileAndLine) {
  const std::string good = R"({"query": "Q", "choices": ["a", "b"], "gold": 1})";
  struct Case {
    std::string third_line, what;
  } mosaic_cases[] = {
      {"{\"query\": \"Q\", \"choices\": [\"a\"", "not JSON"},
      {R"({"query": "Q", "choices": ["a", "b"], "gold": 2})", "gold 2 outside 0..1"},
      {R"({"query": "Q", "choices": ["a", "b"], "gold": "1"})", "\"gold\""},
      {R"({"choices": ["a", "b"], "gold": 0})", "no \"query\""},
      {R"({"query": "Q", "choices": "ab", "gold": 0})", "\"choices\""},
      {R"({"query": "Q", "choices": ["a", ""], "gold": 0})", "choice 1 is empty"},
      {R"([1, 2])", "not a JSON object"},
  };
  for (const Case& c : mosaic_cases) {
    // Line 2 is blank (skipped, but counted).
    const std::string path = WriteFile("mosaic.jsonl", good + "\n\n" + c.third_line + "\n");
    ExpectError(LoadMosaicMultipleChoice(path).status(), path + ":3", c.what);
  }
  const std::string ok_path = WriteFile("ok.jsonl", good + "\r\n" + good + "\n");
  auto ok = LoadMosaicMultipleChoice(ok_path, "!");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].contexts[0], "Q!");

  const std::string wino_good =
      R"({"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "1"})";
  const std::string no_blank = WriteFile(
      "w1.jsonl",
      wino_good + "\n" + R"({"sentence": "A b.", "option1": "x", "option2": "y", "answer": "1"})");
  ExpectError(LoadWinogrande(no_blank).status(), no_blank + ":2", "exactly one '_'");
  const std::string bad_answer = WriteFile(
      "w2.jsonl", R"({"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "3"})");
  ExpectError(LoadWinogrande(bad_answer).status(), bad_answer + ":1", "\"answer\"");
  const std::string no_option = WriteFile(
      "w3.jsonl", R"({"sentence": "A _ b.", "option1": "x", "answer": "2"})");
  ExpectError(LoadWinogrande(no_option).status(), no_option + ":1", "no \"option2\"");

  const std::string hs_task = "ctx\n1\ne0\ne1\ne2\ne3\n";
  const std::string bad_label = WriteFile("h1.txt", hs_task + "ctx\n4\ne0\ne1\ne2\ne3\n");
  ExpectError(LoadHellaswag(bad_label).status(), bad_label + ":8", "gold label must be 0-3");
  const std::string short_file = WriteFile("h2.txt", hs_task + "ctx\n1\ne0\n");
  ExpectError(LoadHellaswag(short_file).status(), short_file + ":7", "3 trailing");

  const std::string lambada = WriteFile("l.jsonl", R"({"context": "a b"})");
  ExpectError(LoadLambada(lambada).status(), lambada + ":1", "no \"continuation\"");
  ExpectError(LoadLambada(WriteFile("empty.jsonl", "\n")).status(), "empty.jsonl", "no tasks");
  EXPECT_EQ(LoadLambada("/nonexistent/x.jsonl").status().code(), absl::StatusCode::kNotFound);
}

TEST(ZeroShotLoaders, HellaswagPreprocessIsLmEvals) {
  const std::string path = WriteFile(
      "h3.txt", "  Cooking: A man [header] cuts. [title] Then  he [step] eats. \n0\n"
                "a [x] b\nc\nd\ne\n");
  auto tasks = LoadHellaswag(path);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  // strip; " [title]" -> ". "; drop "[...]"; "  " -> " " (once, as Python's replace).
  EXPECT_EQ((*tasks)[0].contexts[0], "Cooking: A man cuts.. Then he eats.");
  EXPECT_EQ((*tasks)[0].choices[0], "a b");
}

// ---- Scoring on stories260K -------------------------------------------------

class ZeroShotScoring : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::LoadOptions plain;
    plain.quantize = false;
    gguf_ = engine::testing::LoadStories260K(plain).release();  // its tokenizer
    auto hf = engine::LoadModel(
        otaro::testing::SharedPath("data/models/stories260K-hf-converted"), plain);
    ASSERT_TRUE(hf.ok()) << hf.status();
    dense_ = std::move(*hf).release();
    quantized_ = engine::testing::LoadStories260K().release();
    ASSERT_NE(gguf_->tokenizer, nullptr);
  }
  static void TearDownTestSuite() {
    delete gguf_;
    delete dense_;
    delete quantized_;
  }
  static const engine::tokenizer::Tokenizer& Tok() { return *gguf_->tokenizer; }

  // log p(continuation | context) from the float64 reference, the test's own
  // tokenisation: [BOS] + Encode(context) and [BOS] + Encode(context + continuation).
  static double ReferenceLogLikelihood(const std::string& context,
                                       const std::string& continuation) {
    std::vector<int> ctx = {Tok().bos_id()}, whole = {Tok().bos_id()};
    for (Token t : Tok().Encode(context)) ctx.push_back(t);
    for (Token t : Tok().Encode(context + continuation)) whole.push_back(t);
    EXPECT_GT(whole.size(), ctx.size());
    const std::vector<engine::cpu::testing::DenseLayer> layers =
        engine::cpu::testing::DenseLayersOf(*dense_);
    const std::vector<double> logits = engine::cpu::testing::ReferenceForward(*dense_, layers, whole);
    const size_t vocab = dense_->config.vocab_size;
    double sum = 0;
    for (size_t p = ctx.size(); p < whole.size(); ++p) {
      const double* row = &logits[(p - 1) * vocab];
      double max = row[0];
      for (size_t v = 0; v < vocab; ++v) max = std::max(max, row[v]);
      double z = 0;
      for (size_t v = 0; v < vocab; ++v) z += std::exp(row[v] - max);
      sum += row[whole[p]] - max - std::log(z);
    }
    return sum;
  }

  // Greedy tokens after [BOS] + Encode(context), from the reference.
  static std::vector<Token> ReferenceGreedy(const std::string& context, int n) {
    const std::vector<engine::cpu::testing::DenseLayer> layers =
        engine::cpu::testing::DenseLayersOf(*dense_);
    std::vector<int> tokens = {Tok().bos_id()};
    for (Token t : Tok().Encode(context)) tokens.push_back(t);
    std::vector<Token> out;
    const size_t vocab = dense_->config.vocab_size;
    for (int i = 0; i < n; ++i) {
      const std::vector<double> logits = engine::cpu::testing::ReferenceForward(*dense_, layers, tokens);
      const double* row = &logits[(tokens.size() - 1) * vocab];
      const Token best = static_cast<Token>(std::max_element(row, row + vocab) - row);
      out.push_back(best);
      tokens.push_back(best);
    }
    return out;
  }

  static engine::LlamaModel* gguf_;
  static engine::LlamaModel* dense_;
  static engine::LlamaModel* quantized_;
};
engine::LlamaModel* ZeroShotScoring::gguf_ = nullptr;
engine::LlamaModel* ZeroShotScoring::dense_ = nullptr;
engine::LlamaModel* ZeroShotScoring::quantized_ = nullptr;

std::vector<MultipleChoiceTask> StoryTasks() {
  std::vector<MultipleChoiceTask> tasks;
  MultipleChoiceTask a;
  a.contexts = {"Once upon a time, there was a little girl named"};
  a.choices = {"Lily.", "Tom and his big red ball.", "the sky"};
  a.gold = 0;
  tasks.push_back(a);
  MultipleChoiceTask b;  // trailing space in the context moves into the continuation
  b.contexts = {"One day, Lily went to the park with her mom. She saw a "};
  b.choices = {"big dog.", "tree", "happy bird in the sky."};
  b.delimiter = "";
  b.gold = 2;
  tasks.push_back(b);
  MultipleChoiceTask w;  // partial evaluation: one context per choice
  w.contexts = {"Tom gave the ball to Lily because Lily", "Tom gave the ball to Lily because Tom"};
  w.choices = {"wanted to play.", "wanted to play."};
  w.gold = 0;
  tasks.push_back(w);
  return tasks;
}

TEST_F(ZeroShotScoring, LogLikelihoodsMatchTheFloat64Reference) {
  auto backend = engine::testing::MakeBackend(dense_);
  const std::vector<MultipleChoiceTask> tasks = StoryTasks();
  std::vector<TaskScore> scores;
  ZeroShotOptions options;
  options.scores = &scores;
  auto result = EvaluateZeroShot(*backend, Tok(), tasks, 8, options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(scores.size(), tasks.size());
  int64_t correct = 0, correct_norm = 0;
  for (size_t t = 0; t < tasks.size(); ++t) {
    const MultipleChoiceTask& task = tasks[t];
    std::vector<double> want;
    for (size_t i = 0; i < task.choices.size(); ++i) {
      const std::string& context = task.contexts[task.contexts.size() == 1 ? 0 : i];
      // The test's own _encode_pair: trailing spaces of the context go to the continuation.
      const size_t keep = context.find_last_not_of(' ') + 1;
      want.push_back(ReferenceLogLikelihood(
          context.substr(0, keep), context.substr(keep) + task.delimiter + task.choices[i]));
      EXPECT_NEAR(scores[t].loglikelihoods[i], want[i], 1e-3 * (1 + std::abs(want[i])))
          << "task " << t << " choice " << i;
      EXPECT_LT(want[i], 0);
    }
    const int argmax = static_cast<int>(std::max_element(want.begin(), want.end()) - want.begin());
    int argmax_norm = 0;
    for (size_t i = 1; i < want.size(); ++i) {
      if (want[i] / task.choices[i].size() > want[argmax_norm] / task.choices[argmax_norm].size()) {
        argmax_norm = static_cast<int>(i);
      }
    }
    EXPECT_EQ(scores[t].prediction, argmax) << "task " << t;
    EXPECT_EQ(scores[t].prediction_norm, argmax_norm) << "task " << t;
    correct += argmax == task.gold;
    correct_norm += argmax_norm == task.gold;
  }
  EXPECT_EQ(result->count, 3);
  EXPECT_EQ(result->correct, correct);
  EXPECT_EQ(result->correct_norm, correct_norm);
  EXPECT_DOUBLE_EQ(result->acc, correct / 3.0);
  EXPECT_NEAR(result->acc_stderr, std::sqrt(result->acc * (1 - result->acc) / 2), 1e-12);
  EXPECT_EQ(backend->kv_cache().num_sequences(), 0);  // everything freed
}

TEST_F(ZeroShotScoring, TheModelsGreedyContinuationIsPicked) {
  const std::string context = "Once upon a time, there was a little";
  const std::vector<Token> greedy = ReferenceGreedy(context, 6);
  // SentencePiece decoding drops the first piece's leading space: the delimiter restores it.
  const std::string text = Tok().Decode(greedy);
  std::vector<Token> whole = Tok().Encode(context + " " + text), ctx = Tok().Encode(context);
  ctx.insert(ctx.end(), greedy.begin(), greedy.end());
  ASSERT_EQ(whole, ctx) << "the greedy text must re-tokenise to the greedy tokens: '" << text << "'";

  auto backend = engine::testing::MakeBackend(dense_);
  MultipleChoiceTask mc;
  mc.contexts = {context};
  mc.choices = {"purple rock ate the moon", text, "zebra of seven computers"};
  mc.gold = 1;
  MultipleChoiceTask lambada_right;  // one choice: scored greedily
  lambada_right.contexts = {context};
  lambada_right.choices = {text};
  MultipleChoiceTask lambada_wrong = lambada_right;
  lambada_wrong.choices = {"purple rock"};
  std::vector<TaskScore> scores;
  ZeroShotOptions options;
  options.scores = &scores;
  auto result = EvaluateZeroShot(*backend, Tok(), {mc, lambada_right, lambada_wrong}, 8, options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(scores[0].prediction, 1);
  EXPECT_TRUE(scores[0].greedy[1]);
  EXPECT_FALSE(scores[0].greedy[0]);
  EXPECT_EQ(scores[0].num_tokens[1], 6);
  EXPECT_TRUE(scores[1].correct);
  EXPECT_FALSE(scores[2].correct);
  EXPECT_EQ(result->correct, 2);
  EXPECT_NEAR(result->mean_gold_loglikelihood,
              (scores[0].loglikelihoods[1] + scores[1].loglikelihoods[0] +
               scores[2].loglikelihoods[0]) / 3, 1e-9);
}

TEST_F(ZeroShotScoring, AccNormDividesByCharacters) {
  // A short word against the model's long, likely continuation with an unlikely
  // tail: the total favours the short one, the per-character mean the long one.
  const std::string context = "Once upon a time, there was a little";
  const std::string longer = Tok().Decode(ReferenceGreedy(context, 12)) + " xylophone zebra";
  MultipleChoiceTask task;
  task.contexts = {context};
  task.choices = {"cat", longer};
  task.gold = 1;
  auto backend = engine::testing::MakeBackend(dense_);
  std::vector<TaskScore> scores;
  ZeroShotOptions options;
  options.scores = &scores;
  auto result = EvaluateZeroShot(*backend, Tok(), {task}, 8, options);
  ASSERT_TRUE(result.ok()) << result.status();
  const auto& ll = scores[0].loglikelihoods;
  std::printf("'cat' %.4f (%.4f/char), '%s' %.4f (%.4f/char)\n", ll[0], ll[0] / 3,
              longer.c_str(), ll[1], ll[1] / longer.size());
  ASSERT_GT(ll[0], ll[1]);                      // acc: the short word
  ASSERT_LT(ll[0] / 3, ll[1] / longer.size());  // acc_norm: the long one
  EXPECT_EQ(scores[0].prediction, 0);
  EXPECT_EQ(scores[0].prediction_norm, 1);
  EXPECT_EQ(result->correct, 0);
  EXPECT_EQ(result->correct_norm, 1);
}

TEST_F(ZeroShotScoring, BatchingAndPrefixReuseDoNotChangeScores) {
  // SEFP model at a low precision: one task per Forward vs many, same numbers
  // (backends are batch invariant), and the real ARC prompts work end to end.
  auto tasks = LoadNamedTask("arc_easy", EvalDir());
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  auto backend = engine::testing::MakeBackend(quantized_);
  std::vector<TaskScore> one, many;
  ZeroShotOptions options;
  options.limit = 12;
  options.max_batch_tasks = 1;
  options.scores = &one;
  auto a = EvaluateZeroShot(*backend, Tok(), *tasks, 4, options);
  ASSERT_TRUE(a.ok()) << a.status();
  options.max_batch_tasks = 16;
  options.max_batch_tokens = 100;  // several batches of several tasks
  options.scores = &many;
  int batches = 0;
  options.progress = [&](int64_t, int64_t total, const ZeroShotResult&) {
    ++batches;
    EXPECT_EQ(total, 12);
  };
  auto b = EvaluateZeroShot(*backend, Tok(), *tasks, 4, options);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GT(batches, 1);
  EXPECT_LT(batches, 12);
  ASSERT_EQ(one.size(), 12u);
  for (size_t t = 0; t < one.size(); ++t) {
    EXPECT_EQ(one[t].loglikelihoods, many[t].loglikelihoods) << t;
  }
  EXPECT_EQ(a->correct, b->correct);
  EXPECT_EQ(a->count, 12);
  // A different precision gives different numbers (the precision reaches the backend).
  std::vector<TaskScore> m8;
  options.scores = &m8;
  options.progress = nullptr;
  ASSERT_TRUE(EvaluateZeroShot(*backend, Tok(), *tasks, 8, options).ok());
  EXPECT_NE(m8[0].loglikelihoods, one[0].loglikelihoods);
}

TEST_F(ZeroShotScoring, BadTasksAndOptionsAreRefused) {
  auto backend = engine::testing::MakeBackend(dense_);
  MultipleChoiceTask task;
  task.contexts = {"a", "b", "c"};
  task.choices = {"x", "y"};
  task.where = "mine.jsonl:7";
  ExpectError(EvaluateZeroShot(*backend, Tok(), {task}, 8).status(), "mine.jsonl:7",
              "3 contexts for 2 choices");
  task.contexts = {"a"};
  task.gold = 5;
  ExpectError(EvaluateZeroShot(*backend, Tok(), {task}, 8).status(), "mine.jsonl:7", "gold 5");
  task.gold = 0;
  ZeroShotOptions options;
  options.max_batch_tasks = 0;
  EXPECT_FALSE(EvaluateZeroShot(*backend, Tok(), {task}, 8, options).ok());
  EXPECT_FALSE(EvaluateZeroShot(*backend, Tok(), {task}, 9).ok());
  // A continuation longer than a KV sequence may hold (the model's 512 positions).
  task.choices = {std::string(3000, 'a') + " b"};
  ExpectError(EvaluateZeroShot(*backend, Tok(), {task}, 8).status(), "mine.jsonl:7",
              "does not fit");
  // A long context is truncated from the left and still scores.
  std::string story;
  for (int i = 0; i < 200; ++i) story += "Lily went to the park. ";
  task.contexts = {story + "She saw a"};
  task.choices = {"dog", "cat"};
  auto long_context = EvaluateZeroShot(*backend, Tok(), {task}, 8);
  EXPECT_TRUE(long_context.ok()) << long_context.status();
  EXPECT_EQ(backend->kv_cache().num_sequences(), 0);
}

}  // namespace
}  // namespace otaro::eval
