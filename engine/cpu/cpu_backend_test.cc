// The CPU backend with SEFP weights (stories260K): logits at each precision
// against a plain float64 forward with Q(W, m) weights and the kernels' int8
// activations; batch, thread and ISA invariance; the paged cache (chunked
// prefill, block boundaries, refusals).
#include "engine/cpu/cpu_backend.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "common/testing/shared_data.h"
#include "engine/cpu/reference_forward.h"
#include "engine/model/loader.h"
#include "gtest/gtest.h"
#include "sefp/format.h"

namespace otaro::engine::cpu {
namespace {

std::string StoriesHf() {
  return otaro::testing::SharedPath("data/models/stories260K-hf-converted");
}

const std::vector<Token> kPromptA = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315,
                                     421, 395, 317, 426, 338, 401, 396, 267, 337};
const std::vector<Token> kPromptB = {1, 5, 500, 317, 317, 42, 261, 511, 300};
const std::vector<Token> kPromptC = {1, 385, 410, 18, 60, 7, 426, 426, 338, 401, 396, 267, 337,
                                     410, 408, 419, 292, 411};

class CpuBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A float32 lm_head, like the reference's: the linear layers are under test
    // here (quantized_lm_head_test covers the SEFP lm_head).
    LoadOptions options;
    options.lm_head.kind = LmHeadPrecision::Kind::kFloat32;
    auto quantized = LoadModel(StoriesHf(), options);
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    quantized_ = std::move(*quantized).release();
    LoadOptions plain;
    plain.quantize = false;
    auto dense = LoadModel(StoriesHf(), plain);
    ASSERT_TRUE(dense.ok()) << dense.status();
    dense_ = std::move(*dense).release();
  }
  static void TearDownTestSuite() {
    delete quantized_;
    delete dense_;
  }

  static std::unique_ptr<CpuBackend> MakeBackend(const LlamaModel* model, int threads = 2,
                                                 int64_t block_size = 16,
                                                 sefp::Isa isa = sefp::Isa::kAuto) {
    CpuBackendOptions options;
    options.num_threads = threads;
    options.kv_cache.block_size = block_size;
    options.kv_cache.budget_bytes = 8 << 20;
    options.isa = isa;
    auto backend = CpuBackend::Create(model, options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return std::move(*backend);
  }

  // Prefills `tokens` in chunks of `chunk` at precision m; returns every
  // position's logits, concatenated.
  static std::vector<float> Prefill(CpuBackend* b, const std::vector<Token>& tokens, int m,
                                    size_t chunk, SequenceHandle* seq_out = nullptr) {
    KVCache& kv = b->kv_cache();
    auto seq = kv.Allocate(0, 64);
    EXPECT_TRUE(seq.ok()) << seq.status();
    std::vector<float> all;
    for (size_t at = 0; at < tokens.size(); at += chunk) {
      const size_t n = std::min(chunk, tokens.size() - at);
      EXPECT_TRUE(kv.Extend(*seq, at + n).ok());
      BatchStep step;
      step.sequences.push_back(
          {*seq, std::vector<Token>(tokens.begin() + at, tokens.begin() + at + n),
           static_cast<int64_t>(at), m, true});
      Logits out;
      absl::Status s = b->Forward(step, &out);
      EXPECT_TRUE(s.ok()) << s;
      all.insert(all.end(), out.values.begin(), out.values.end());
    }
    if (seq_out != nullptr) {
      *seq_out = *seq;
    } else {
      EXPECT_TRUE(kv.Free(*seq).ok());
    }
    return all;
  }

  static LlamaModel* quantized_;
  static LlamaModel* dense_;
};
LlamaModel* CpuBackendTest::quantized_ = nullptr;
LlamaModel* CpuBackendTest::dense_ = nullptr;

bool BitEqual(absl::Span<const float> a, absl::Span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The reference rounds its (float64) activations to int8 by the kernels' rule,
// but an input that lies within float32 rounding of a rounding boundary can
// land one int8 step away from the backend's: such a flip moves the logits by
// up to ~1% here, which an exact comparison would call a failure. So the
// backend must (a) match its own precision's reference within 1% and (b) be
// several times closer to it than that reference is to the neighbouring
// precision's: a backend that read another m, or mis-wired a layer, fails (b).
TEST_F(CpuBackendTest, EachPrecisionMatchesPlainReferenceWithQuantizedWeights) {
  ASSERT_TRUE(quantized_->quantized);
  auto backend = MakeBackend(quantized_);
  std::vector<int> tokens(kPromptA.begin(), kPromptA.end());
  auto reference = [&](int m) {  // m = 0: the float32 weights
    std::vector<testing::DenseLayer> layers(dense_->layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
      const LlamaLayer& L = dense_->layers[l];
      const Linear* lin[7] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
      for (int i = 0; i < 7; ++i) {
        if (m == 0) {
          layers[l].w[i] = lin[i]->dense;
          continue;
        }
        // Q(W, m): encode the float32 weights by SEFP.md's rules, decode at m.
        auto t = sefp::EncodeTensor("w", lin[i]->dense, lin[i]->out_features, lin[i]->in_features);
        EXPECT_TRUE(t.ok()) << t.status();
        auto q = t->DecodeAll(m, quantized_->reconstruction);
        EXPECT_TRUE(q.ok()) << q.status();
        layers[l].w[i] = std::move(*q);
      }
    }
    return testing::ReferenceForward(*dense_, layers, tokens, /*int8_activations=*/true);
  };
  auto max_diff = [](const auto& a, const auto& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double{a[i]} - double{b[i]}));
    return d;
  };
  std::vector<std::vector<double>> refs(9);
  refs[0] = reference(0);
  for (int m = 2; m <= 8; ++m) refs[m] = reference(m);
  double max_abs = 0;
  for (double v : refs[0]) max_abs = std::max(max_abs, std::abs(v));
  double previous_err_vs_float = -1;
  for (int m = 8; m >= 2; --m) {
    const std::vector<double>& ref = refs[m];
    const double err_vs_float = max_diff(ref, refs[0]);
    const double neighbour = max_diff(ref, refs[m == 2 ? 3 : m - 1]);
    // The whole prompt in one step, and token by token (decode steps): one
    // kernel serves both, so the two are the same bits.
    const std::vector<float> whole = Prefill(backend.get(), kPromptA, m, kPromptA.size());
    const std::vector<float> by_token = Prefill(backend.get(), kPromptA, m, 1);
    ASSERT_EQ(whole.size(), ref.size());
    EXPECT_TRUE(BitEqual(whole, by_token)) << "m = " << m;
    const double diff = max_diff(whole, ref);
    std::printf("E5M%d: max |logit diff| vs Q(W,m) float64 reference %.3g (relative %.3g); "
                "reference vs E5M%d's %.3g; Q(W,m) vs float32 weights %.3g\n",
                m, diff, diff / max_abs, m == 2 ? 3 : m - 1, neighbour, err_vs_float);
    EXPECT_LT(diff / max_abs, 1e-2) << "m = " << m;
    EXPECT_LT(3 * diff, neighbour) << "m = " << m;
    // Quantization error grows as m falls.
    EXPECT_GT(err_vs_float, previous_err_vs_float) << "m = " << m;
    previous_err_vs_float = err_vs_float;
  }
}

TEST_F(CpuBackendTest, BatchCompositionNeverChangesASequencesLogits) {
  auto backend = MakeBackend(quantized_);
  KVCache& kv = backend->kv_cache();
  // Alone: A prefilled at m = 4, then two decode tokens.
  SequenceHandle alone_seq;
  const std::vector<float> alone_prefill = Prefill(backend.get(), kPromptA, 4, 64, &alone_seq);
  std::vector<std::vector<float>> alone_decode;
  for (int i = 0; i < 2; ++i) {
    const int64_t pos = kPromptA.size() + i;
    ASSERT_TRUE(kv.Extend(alone_seq, pos + 1).ok());
    BatchStep step;
    step.sequences.push_back(
        {alone_seq, {static_cast<Token>(300 + i)}, pos, 4, false});
    Logits out;
    ASSERT_TRUE(backend->Forward(step, &out).ok());
    alone_decode.push_back(std::vector<float>(out.values));
  }
  ASSERT_TRUE(kv.Free(alone_seq).ok());

  // Together: B (m = 8) and C (m = 2) prefill beside A (m = 4) in the same
  // step, A listed in the middle; then A decodes beside B decoding at m = 3
  // and a fresh D prefilling at m = 4 (same precision as A: one Gemm).
  auto a = kv.Allocate(kPromptA.size(), 64), b = kv.Allocate(kPromptB.size(), 64),
       c = kv.Allocate(kPromptC.size(), 64);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  BatchStep step;
  step.sequences.push_back({*b, kPromptB, 0, 8, false});
  step.sequences.push_back({*a, kPromptA, 0, 4, true});
  step.sequences.push_back({*c, kPromptC, 0, 2, false});
  Logits out;
  ASSERT_TRUE(backend->Forward(step, &out).ok());
  ASSERT_EQ(out.num_rows[1], static_cast<int64_t>(kPromptA.size()));
  EXPECT_TRUE(BitEqual(absl::MakeConstSpan(out.values).subspan(out.first_row[1] * 512,
                                                                kPromptA.size() * 512),
                       alone_prefill));
  // The other rows are not A's: precision and prompt differ.
  EXPECT_FALSE(BitEqual(out.Last(0), out.Last(1)));

  auto d = kv.Allocate(kPromptC.size(), 64);
  ASSERT_TRUE(d.ok());
  for (int i = 0; i < 2; ++i) {
    const int64_t pos = kPromptA.size() + i;
    ASSERT_TRUE(kv.Extend(*a, pos + 1).ok());
    ASSERT_TRUE(kv.Extend(*b, kPromptB.size() + i + 1).ok());
    BatchStep mixed;
    if (i == 0) mixed.sequences.push_back({*d, kPromptC, 0, 4, false});
    mixed.sequences.push_back({*b, {static_cast<Token>(42 + i)},
                               static_cast<int64_t>(kPromptB.size()) + i, 3, false});
    mixed.sequences.push_back({*a, {static_cast<Token>(300 + i)}, pos, 4, false});
    ASSERT_TRUE(backend->Forward(mixed, &out).ok());
    EXPECT_TRUE(BitEqual(out.Last(mixed.sequences.size() - 1), alone_decode[i])) << "decode " << i;
  }
  for (auto s : {*a, *b, *c, *d}) EXPECT_TRUE(kv.Free(s).ok());
  EXPECT_EQ(kv.used_blocks(), 0);
}

// Many sequences decoding at one precision share one Gemm (the weights are read
// once for all of them), and each row is still exactly what it is alone.
TEST_F(CpuBackendTest, DecodesSharingAStepEqualEachAlone) {
  auto backend = MakeBackend(quantized_);
  KVCache& kv = backend->kv_cache();
  const std::vector<std::vector<Token>> prompts = {kPromptA, kPromptB, kPromptC, kPromptB, kPromptA};
  std::vector<SequenceHandle> seqs;
  for (const auto& p : prompts) {
    SequenceHandle seq;
    Prefill(backend.get(), p, 4, 64, &seq);
    ASSERT_TRUE(kv.Extend(seq, p.size() + 1).ok());
    seqs.push_back(seq);
  }
  // Sequences 1 and 3 (and 0 and 4) have the same prompt and next token.
  const Token next[] = {300, 301, 302, 301, 300};
  auto decode = [&](std::vector<size_t> which) {
    BatchStep step;
    for (size_t i : which) {
      step.sequences.push_back({seqs[i], {next[i]},
                                static_cast<int64_t>(prompts[i].size()), 4, false});
    }
    Logits out;
    EXPECT_TRUE(backend->Forward(step, &out).ok());
    return out;
  };
  const Logits together = decode({0, 1, 2, 3, 4});
  for (size_t i = 0; i < seqs.size(); ++i) {
    const Logits alone = decode({i});
    EXPECT_TRUE(BitEqual(together.Last(i), alone.Last(0))) << "sequence " << i;
  }
  // Same prompt and token, different sequences: the same logits.
  EXPECT_TRUE(BitEqual(together.Last(1), together.Last(3)));
  EXPECT_FALSE(BitEqual(together.Last(0), together.Last(1)));
  for (SequenceHandle s : seqs) EXPECT_TRUE(kv.Free(s).ok());
}

TEST_F(CpuBackendTest, ThreadCountAndIsaNeverChangeLogits) {
  const std::vector<float> base = Prefill(MakeBackend(quantized_, 1).get(), kPromptC, 5, 7);
  EXPECT_TRUE(BitEqual(Prefill(MakeBackend(quantized_, 2).get(), kPromptC, 5, 7), base));
  EXPECT_TRUE(BitEqual(Prefill(MakeBackend(quantized_, 3).get(), kPromptC, 5, 7), base));
  for (sefp::Isa isa : {sefp::Isa::kScalar, sefp::Isa::kAvx2, sefp::Isa::kAvx512}) {
    if (!sefp::CpuSupports(isa)) continue;  // gemm_test names the paths it skips
    EXPECT_TRUE(BitEqual(Prefill(MakeBackend(quantized_, 2, 16, isa).get(), kPromptC, 5, 7), base))
        << sefp::IsaName(isa);
  }
  const std::vector<float> dense = Prefill(MakeBackend(dense_, 1).get(), kPromptC, 8, 5);
  EXPECT_TRUE(BitEqual(Prefill(MakeBackend(dense_, 2).get(), kPromptC, 8, 5), dense));
}

TEST_F(CpuBackendTest, ChunkedPrefillEqualsOneShotAcrossBlockBoundaries) {
  for (const LlamaModel* model : {static_cast<const LlamaModel*>(quantized_),
                                  static_cast<const LlamaModel*>(dense_)}) {
    for (int64_t block : {1, 4, 16}) {
      auto backend = MakeBackend(model, 2, block);
      const std::vector<float> one_shot = Prefill(backend.get(), kPromptA, 6, kPromptA.size());
      for (size_t chunk : {1, 3, 4, 5, 16, 17}) {
        EXPECT_TRUE(BitEqual(Prefill(backend.get(), kPromptA, 6, chunk), one_shot))
            << "block " << block << " chunk " << chunk;
      }
      // The pool is whole again.
      EXPECT_EQ(backend->kv_cache().used_blocks(), 0);
    }
  }
}

TEST_F(CpuBackendTest, PrecisionDiffersBetweenPrefillAndDecode) {
  auto backend = MakeBackend(quantized_);
  KVCache& kv = backend->kv_cache();
  std::vector<float> last_decode[2];
  for (int prefill_m : {8, 3}) {
    SequenceHandle seq;
    Prefill(backend.get(), kPromptB, prefill_m, 64, &seq);
    ASSERT_TRUE(kv.Extend(seq, kPromptB.size() + 1).ok());
    BatchStep step;
    step.sequences.push_back({seq, {400}, static_cast<int64_t>(kPromptB.size()), 5, false});
    Logits out;
    ASSERT_TRUE(backend->Forward(step, &out).ok());
    last_decode[prefill_m == 8 ? 0 : 1] = out.values;
    ASSERT_TRUE(kv.Free(seq).ok());
  }
  // Same decode precision, different cached K/V: different logits.
  EXPECT_FALSE(BitEqual(last_decode[0], last_decode[1]));
}

TEST_F(CpuBackendTest, RefusesWhatCannotRun) {
  LoadOptions low;
  low.resident_max_bits = 4;
  auto model = LoadModel(StoriesHf(), low);
  ASSERT_TRUE(model.ok()) << model.status();
  auto backend = MakeBackend(model->get());
  EXPECT_TRUE(backend->CheckPrecision(4).ok());
  absl::Status above = backend->CheckPrecision(5);
  EXPECT_EQ(above.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(above.message(), "resident")) << above;
  EXPECT_FALSE(backend->CheckPrecision(1).ok());
  EXPECT_FALSE(backend->CheckPrecision(9).ok());

  KVCache& kv = backend->kv_cache();
  auto seq = kv.Allocate(4, 32);
  ASSERT_TRUE(seq.ok());
  Logits out;
  auto forward = [&](SequenceStep s) {
    BatchStep step;
    step.sequences.push_back(std::move(s));
    return backend->Forward(step, &out);
  };
  EXPECT_EQ(forward({*seq, {1, 2}, 0, 5, false}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(forward({*seq, {1, 512}, 0, 4, false}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(forward({*seq, {}, 0, 4, false}).code(), absl::StatusCode::kInvalidArgument);
  // Slots not allocated yet (4 tokens asked for: one block of 16) / a gap
  // before the new tokens.
  EXPECT_EQ(*kv.Capacity(*seq), 16);
  EXPECT_EQ(forward({*seq, std::vector<Token>(17, 1), 0, 4, false}).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(forward({*seq, {1}, 2, 4, false}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(forward({*seq + 100, {1}, 0, 4, false}).code(), absl::StatusCode::kNotFound);
  // Nothing was written by the refused steps.
  EXPECT_EQ(*kv.Length(*seq), 0);
  // Listed twice.
  BatchStep twice;
  twice.sequences.push_back({*seq, {1}, 0, 4, false});
  twice.sequences.push_back({*seq, {1}, 0, 4, false});
  EXPECT_EQ(backend->Forward(twice, &out).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(forward({*seq, {1, 2, 3, 4}, 0, 4, false}).ok());
  EXPECT_EQ(*kv.Length(*seq), 4);

  // A sequence longer than the context (512) can never fit.
  absl::Status too_long = kv.Allocate(1, 600).status();
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(too_long.message(), "context")) << too_long;
}

TEST_F(CpuBackendTest, ParallelForCoversEachIndexOnceOnThePoolsThreads) {
  for (int threads : {1, 2}) {
    auto backend = MakeBackend(quantized_, threads);
    for (int64_t n : {0, 1, 2, 3, 16, 17}) {
      std::vector<std::atomic<int>> calls(static_cast<size_t>(n));
      std::mutex mu;
      std::set<std::thread::id> ran_on;
      backend->ParallelFor(n, [&](int64_t begin, int64_t end) {
        EXPECT_LT(begin, end);
        for (int64_t i = begin; i < end; ++i) calls[i].fetch_add(1);
        std::lock_guard<std::mutex> lock(mu);
        ran_on.insert(std::this_thread::get_id());
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(calls[i].load(), 1) << "index " << i << " of " << n;
      // Work that can be split is: the scheduler's sampling gains from it.
      EXPECT_EQ(ran_on.size(), static_cast<size_t>(std::min<int64_t>(n, threads)))
          << threads << " threads, n " << n;
    }
  }
}

}  // namespace
}  // namespace otaro::engine::cpu
