// EvaluatePerplexity on the real stories260K model (GGUF) against sums the test
// computes itself: one full-window Forward per window and its own float64
// log-softmax, windows enumerated independently of the library's loop.
#include "eval/perplexity.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/testing/shared_data.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"

namespace otaro::eval {
namespace {

using engine::BatchStep;
using engine::Logits;
using engine::Token;
using engine::cpu::CpuBackend;

// -log softmax(row)[id], long double (not LogSoftmaxAt).
double ReferenceNll(absl::Span<const float> row, Token id) {
  long double max = row[0];
  for (float v : row) max = std::max<long double>(max, v);
  long double sum = 0;
  for (float v : row) sum += std::exp(static_cast<long double>(v) - max);
  return static_cast<double>(-(static_cast<long double>(row[id]) - max - std::log(sum)));
}

// The rows of one Forward over `tokens` from position 0, all logits.
std::vector<std::vector<float>> FullForward(CpuBackend& b, const std::vector<Token>& tokens,
                                            int m) {
  auto seq = b.kv_cache().Allocate(tokens.size(), tokens.size());
  EXPECT_TRUE(seq.ok()) << seq.status();
  BatchStep step;
  step.sequences.push_back({*seq, tokens, 0, m, true});
  Logits out;
  absl::Status s = b.Forward(step, &out);
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(b.kv_cache().Free(*seq).ok());
  std::vector<std::vector<float>> rows;
  for (int64_t r = 0; r < out.num_rows[0]; ++r) {
    auto row = out.Row(0, r);
    rows.emplace_back(row.begin(), row.end());
  }
  return rows;
}

class PerplexityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = otaro::testing::SharedPath("data/models/stories260K-gguf/stories260K.gguf");
    auto q = engine::LoadModel(path);
    ASSERT_TRUE(q.ok()) << q.status();
    quantized_ = std::move(*q).release();
    engine::LoadOptions plain;
    plain.quantize = false;
    auto f = engine::LoadModel(path, plain);
    ASSERT_TRUE(f.ok()) << f.status();
    dense_ = std::move(*f).release();

    std::ifstream in(
        otaro::testing::SharedPath("data/corpora/tinystories-sample/tinystories_sample.txt"));
    std::stringstream text;
    text << in.rdbuf();
    ASSERT_NE(quantized_->tokenizer, nullptr);
    const auto& tok = *quantized_->tokenizer;
    tokens_ = new std::vector<Token>();
    if (tok.add_bos()) tokens_->push_back(tok.bos_id());
    for (Token t : tok.Encode(text.str())) tokens_->push_back(t);
  }
  static void TearDownTestSuite() {
    delete quantized_;
    delete dense_;
    delete tokens_;
  }

  static std::unique_ptr<CpuBackend> MakeBackend(const engine::LlamaModel* model) {
    engine::cpu::CpuBackendOptions options;
    options.num_threads = 2;
    options.kv_cache.budget_bytes = 8 << 20;
    auto b = CpuBackend::Create(model, options);
    EXPECT_TRUE(b.ok()) << b.status();
    return std::move(*b);
  }

  static std::vector<Token> Prefix(size_t n) {
    return std::vector<Token>(tokens_->begin(), tokens_->begin() + n);
  }

  static engine::LlamaModel* quantized_;
  static engine::LlamaModel* dense_;
  static std::vector<Token>* tokens_;
};

engine::LlamaModel* PerplexityTest::quantized_ = nullptr;
engine::LlamaModel* PerplexityTest::dense_ = nullptr;
std::vector<Token>* PerplexityTest::tokens_ = nullptr;

TEST_F(PerplexityTest, CorpusIsLongEnough) {
  // The cases below cut prefixes of up to 300 tokens and use the whole sample.
  EXPECT_GT(tokens_->size(), 600u);
  EXPECT_LE(tokens_->size(), static_cast<size_t>(quantized_->config.max_position) * 8);
}

TEST_F(PerplexityTest, NonOverlappingEqualsOneForwardPerWindow) {
  auto b = MakeBackend(quantized_);
  const std::vector<Token> tokens = Prefix(300);  // 4 full windows of 64 and a tail of 44
  const int64_t window = 64;
  for (int m : {8, 4, 2}) {
    double expected = 0;
    int64_t count = 0;
    for (size_t begin = 0; begin < tokens.size(); begin += window) {
      const size_t end = std::min(tokens.size(), begin + window);
      std::vector<Token> w(tokens.begin() + begin, tokens.begin() + end);
      auto rows = FullForward(*b, w, m);
      for (size_t i = 1; i < w.size(); ++i) {
        expected += ReferenceNll(rows[i - 1], w[i]);
        ++count;
      }
    }
    PerplexityOptions options;
    options.chunk = 24;  // the library prefills in chunks; the reference does not
    std::vector<double> per_token;
    options.token_nll = &per_token;
    auto got = EvaluatePerplexity(*b, tokens, m, window, window, options);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->tokens, count);
    EXPECT_EQ(got->tokens, 300 - 5);  // the first token of each of the 5 windows is unscored
    EXPECT_EQ(got->forward_tokens, 300);
    EXPECT_NEAR(got->nll_sum, expected, 1e-6 * std::abs(expected)) << "m=" << m;
    for (size_t begin = 0; begin < tokens.size(); begin += window) {
      EXPECT_TRUE(std::isnan(per_token[begin])) << begin;
    }
    EXPECT_EQ(b->kv_cache().num_sequences(), 0);
  }
}

TEST_F(PerplexityTest, OverlappingStrideScoresEachTokenOnceWithItsWindowContext) {
  auto b = MakeBackend(quantized_);
  const std::vector<Token> tokens = Prefix(250);
  const int64_t window = 64, stride = 24;
  const int n = static_cast<int>(tokens.size());
  // Independently: token i is scored by the first window (begin = k*stride)
  // whose end passes i, with context tokens[begin, i).
  std::vector<double> expected(n, std::numeric_limits<double>::quiet_NaN());
  std::vector<std::vector<std::vector<float>>> cache;  // rows per window, computed lazily
  for (int i = 1; i < n; ++i) {
    int k = 0;
    while (std::min<int>(k * stride + window, n) <= i) ++k;
    const int begin = k * stride;
    ASSERT_LT(begin, i);
    if (static_cast<int>(cache.size()) <= k) cache.resize(k + 1);
    if (cache[k].empty()) {
      const int end = std::min(begin + static_cast<int>(window), n);
      cache[k] = FullForward(
          *b, std::vector<Token>(tokens.begin() + begin, tokens.begin() + end), 6);
    }
    expected[i] = ReferenceNll(cache[k][i - 1 - begin], tokens[i]);
  }
  PerplexityOptions options;
  options.chunk = 0;
  std::vector<double> per_token;
  options.token_nll = &per_token;
  int64_t progress_calls = 0, windows_total = 0;
  options.progress = [&](int64_t done, int64_t total, const PerplexityResult&) {
    ++progress_calls;
    EXPECT_EQ(done, progress_calls);
    windows_total = total;
  };
  auto got = EvaluatePerplexity(*b, tokens, 6, window, stride, options);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->tokens, n - 1);  // every token but the first, once
  // Windows start at 0, 24, ..., 192 (the one ending at 250 is the last).
  EXPECT_EQ(windows_total, 9);
  EXPECT_EQ(progress_calls, 9);
  EXPECT_EQ(got->forward_tokens, 8 * 64 + (250 - 192));
  ASSERT_EQ(per_token.size(), tokens.size());
  EXPECT_TRUE(std::isnan(per_token[0]));
  double sum = 0;
  for (int i = 1; i < n; ++i) {
    ASSERT_FALSE(std::isnan(per_token[i])) << i;
    EXPECT_NEAR(per_token[i], expected[i], 1e-6 + 1e-6 * expected[i]) << "token " << i;
    sum += expected[i];
  }
  EXPECT_NEAR(got->nll_sum, sum, 1e-6 * sum);

  // Overlap gives more context than non-overlapping windows: lower NLL.
  auto plain = EvaluatePerplexity(*b, tokens, 6, window, window);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_LT(got->MeanNll(), plain->MeanNll());
}

TEST_F(PerplexityTest, OneWindowOverEverythingIgnoresStride) {
  auto b = MakeBackend(quantized_);
  const std::vector<Token> tokens = Prefix(100);
  auto a = EvaluatePerplexity(*b, tokens, 8, 128, 128);
  auto c = EvaluatePerplexity(*b, tokens, 8, 128, 7);
  ASSERT_TRUE(a.ok() && c.ok());
  EXPECT_EQ(a->tokens, 99);
  EXPECT_EQ(c->tokens, 99);
  EXPECT_EQ(a->nll_sum, c->nll_sum);
}

TEST_F(PerplexityTest, PerplexityRisesAsPrecisionFalls) {
  auto q = MakeBackend(quantized_);
  auto f = MakeBackend(dense_);
  const int64_t window = 256;
  auto fp = EvaluatePerplexity(*f, *tokens_, 8, window, window);
  auto m8 = EvaluatePerplexity(*q, *tokens_, 8, window, window);
  auto m2 = EvaluatePerplexity(*q, *tokens_, 2, window, window);
  ASSERT_TRUE(fp.ok() && m8.ok() && m2.ok());
  const int64_t n = static_cast<int64_t>(tokens_->size());
  EXPECT_EQ(m8->tokens, n - (n + window - 1) / window);
  // A trained model on its own kind of text: far better than uniform (vocab 512).
  EXPECT_GT(m8->Perplexity(), 1.0);
  EXPECT_LT(m8->Perplexity(), 50.0);
  EXPECT_LT(m8->Perplexity(), m2->Perplexity());
  // E5M8 is close to float32 (within 1%); E5M2 is not.
  EXPECT_NEAR(m8->Perplexity() / fp->Perplexity(), 1.0, 0.01);
  EXPECT_GT(m2->Perplexity() / fp->Perplexity(), 1.01);
  std::printf("stories260K on tinystories_sample (%lld tokens, window %lld): fp32 %.4f, E5M8 %.4f, "
              "E5M2 %.4f\n",
              static_cast<long long>(n), static_cast<long long>(window), fp->Perplexity(),
              m8->Perplexity(), m2->Perplexity());
}

TEST_F(PerplexityTest, RefusesBadArguments) {
  auto b = MakeBackend(quantized_);
  const std::vector<Token> tokens = Prefix(50);
  auto code = [&](absl::Span<const Token> t, int m, int64_t window, int64_t stride) {
    return EvaluatePerplexity(*b, t, m, window, stride).status().code();
  };
  EXPECT_EQ(code(tokens, 8, 1, 1), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(tokens, 8, 16, 0), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(tokens, 8, 16, 17), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Prefix(1), 8, 16, 16), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(tokens, 9, 16, 16), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(tokens, 1, 16, 16), absl::StatusCode::kInvalidArgument);
  // Longer than the model's context (a window is only as long as the text).
  const int64_t ctx = quantized_->config.max_position;
  std::vector<Token> long_text(ctx + 10, tokens[1]);
  EXPECT_EQ(code(long_text, 8, ctx + 1, ctx + 1), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(EvaluatePerplexity(*b, tokens, 8, ctx + 1, ctx + 1).ok());
  // Out-of-range token ids fail in Forward, and the KV sequence is freed.
  std::vector<Token> bad = tokens;
  bad[30] = static_cast<Token>(quantized_->config.vocab_size);
  EXPECT_FALSE(EvaluatePerplexity(*b, bad, 8, 16, 16).ok());
  EXPECT_EQ(b->kv_cache().num_sequences(), 0);
  EXPECT_EQ(b->kv_cache().used_blocks(), 0);
}

}  // namespace
}  // namespace otaro::eval
