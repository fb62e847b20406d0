// ModelVersions on the real stories260K: start-up from the store, publish and
// rollback swapping the served model while a request is in flight on the old
// one, failed loads that change nothing, restarts that keep the published
// version, and the metrics.
#include "server/model/model_versions.h"

#include <filesystem>
#include <fstream>
#include <latch>
#include <thread>

#include "common/testing/shared_data.h"
#include "gtest/gtest.h"
#include "server/model/testing/stories_checkpoints.h"

namespace otaro::server {
namespace {

namespace fs = std::filesystem;

Config TestConfig(const std::string& store_dir) {
  Config config;
  config.model.path = testing::Stories260KGguf();
  config.store.dir = store_dir;
  config.engine.threads = 1;
  config.engine.kv_cache_mb = 8;
  return config;
}

engine::GenerationRequest Greedy(int max_tokens) {
  engine::GenerationRequest request;
  request.prompt = {1};  // BOS
  request.max_tokens = max_tokens;
  request.ignore_eos = true;
  return request;
}

// Runs a greedy request to the end on `model`'s own scheduler.
std::vector<engine::Token> Generate(const ServedModel& model, int max_tokens = 12) {
  // std::latch, not absl::Notification: it is compiled into this test, so
  // ThreadSanitizer sees it (Debian's absl is not instrumented).
  std::latch done(1);
  absl::Status status;
  std::vector<engine::Token> tokens;
  engine::RequestCallbacks callbacks;
  callbacks.on_finish = [&](const absl::Status& s, const engine::GenerationResult& result,
                            const engine::RequestTimings&) {
    status = s;
    tokens = result.tokens;
    done.count_down();
  };
  auto handle = model.scheduler->Submit(Greedy(max_tokens), std::move(callbacks));
  EXPECT_TRUE(handle.ok()) << handle.status();
  if (!handle.ok()) return {};
  done.wait();
  EXPECT_TRUE(status.ok()) << status;
  return tokens;
}

class ModelVersionsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(otaro::testing::ScratchDir("model_versions"));
    ASSERT_TRUE(testing::WriteStories260KCheckpoint(*dir_ + "/base.sefp").ok());
    ASSERT_TRUE(
        testing::WriteSignFlippedCheckpoint(*dir_ + "/base.sefp", *dir_ + "/flipped.sefp").ok());
  }
  static std::string* dir_;

  std::unique_ptr<Store> OpenStore(const std::string& name) {
    auto store = Store::Open(*dir_ + "/" + name);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
};

std::string* ModelVersionsTest::dir_ = nullptr;

TEST_F(ModelVersionsTest, PublishSwapsWhileARequestFinishesOnTheOldVersion) {
  auto store = OpenStore("swap");
  ASSERT_NE(store, nullptr);
  ModelHost host;
  metrics::Registry registry;
  std::vector<std::pair<uint64_t, uint64_t>> swaps;
  auto versions =
      ModelVersions::Start(TestConfig(store->dir()), store.get(), &host, &registry,
                           [&](const ServedModel& now, const ServedModel* before) {
                             swaps.emplace_back(before ? before->version : 0, now.version);
                           });
  ASSERT_TRUE(versions.ok()) << versions.status();
  ASSERT_NE(host.current(), nullptr);
  EXPECT_EQ(host.current()->version, 1u);
  const std::vector<engine::Token> v1_text = Generate(*host.current());

  auto v2 = store->RegisterModelVersion(*dir_ + "/flipped.sefp", {});
  ASSERT_TRUE(v2.ok()) << v2.status();
  ASSERT_EQ(*v2, 2u);

  // A request in flight on version 1, held mid-generation by its first token
  // until the publish has returned.
  std::shared_ptr<const ServedModel> in_flight = host.current();
  std::weak_ptr<const ServedModel> old_model = in_flight;
  std::latch published(1), finished(1);
  std::vector<engine::Token> in_flight_tokens;
  absl::Status in_flight_status;
  engine::RequestCallbacks callbacks;
  bool first = true;
  callbacks.on_token = [&](engine::Token, absl::string_view, double) {
    if (first) published.wait();
    first = false;
  };
  callbacks.on_finish = [&](const absl::Status& s, const engine::GenerationResult& result,
                            const engine::RequestTimings&) {
    in_flight_status = s;
    in_flight_tokens = result.tokens;
    finished.count_down();
  };
  ASSERT_TRUE(in_flight->scheduler->Submit(Greedy(12), std::move(callbacks)).ok());

  // The swap does not wait for the request (which cannot finish before this).
  auto published_version = (*versions)->Publish(2);
  EXPECT_FALSE(finished.try_wait());
  published.count_down();
  ASSERT_TRUE(published_version.ok()) << published_version.status();
  EXPECT_EQ(published_version->version(), 2u);
  EXPECT_TRUE(published_version->serving());
  EXPECT_EQ(host.current()->version, 2u);

  finished.wait();
  EXPECT_TRUE(in_flight_status.ok()) << in_flight_status;
  EXPECT_EQ(in_flight_tokens, v1_text);  // all of it from version 1
  // The old model lives exactly as long as its last request holds it.
  EXPECT_FALSE(old_model.expired());
  in_flight.reset();
  EXPECT_TRUE(old_model.expired());

  const std::vector<engine::Token> v2_text = Generate(*host.current());
  EXPECT_NE(v2_text, v1_text);
  EXPECT_EQ(swaps, (std::vector<std::pair<uint64_t, uint64_t>>{{0, 1}, {1, 2}}));

  // Publishing the served version again loads nothing.
  auto again = (*versions)->Publish(2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(swaps.size(), 2u);

  std::string metrics = registry.Serialize();
  EXPECT_NE(metrics.find("otaro_model_version 2"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("otaro_model_publishes_total{action=\"publish\",outcome=\"OK\"} 2"),
            std::string::npos)
      << metrics;

  // Rollback serves version 1 again, with its output.
  auto rolled_back = (*versions)->Rollback();
  ASSERT_TRUE(rolled_back.ok()) << rolled_back.status();
  EXPECT_EQ(rolled_back->version(), 1u);
  EXPECT_EQ(host.current()->version, 1u);
  EXPECT_EQ(Generate(*host.current()), v1_text);
  auto nothing_left = (*versions)->Rollback();
  EXPECT_EQ(nothing_left.status().code(), absl::StatusCode::kFailedPrecondition);

  auto list = (*versions)->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_TRUE((*list)[0].serving());
  EXPECT_FALSE((*list)[1].serving());
  EXPECT_EQ((*list)[1].checkpoint_path(), store->ModelCheckpointPath(2));
}

TEST_F(ModelVersionsTest, AVersionThatFailsToLoadLeavesTheServedOneInPlace) {
  auto store = OpenStore("bad_version");
  ASSERT_NE(store, nullptr);
  ModelHost host;
  metrics::Registry registry;
  auto versions = ModelVersions::Start(TestConfig(store->dir()), store.get(), &host, &registry);
  ASSERT_TRUE(versions.ok()) << versions.status();
  auto v2 = store->RegisterModelVersion(*dir_ + "/flipped.sefp", {});
  ASSERT_TRUE(v2.ok());
  // The file rots on disk after registration.
  fs::resize_file(store->ModelCheckpointPath(2), 1000);
  auto served = host.current();

  auto result = (*versions)->Publish(2);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(result.status().message().find("model version 2"), absl::string_view::npos)
      << result.status();
  EXPECT_NE(result.status().message().find("still serving version 1"), absl::string_view::npos);
  EXPECT_EQ(host.current(), served);
  EXPECT_EQ(store->CurrentVersion()->value_or(0), 1u);  // not recorded either
  EXPECT_EQ((*versions)->Publish(9).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*versions)->Publish(0).status().code(), absl::StatusCode::kInvalidArgument);
  std::string metrics = registry.Serialize();
  EXPECT_NE(metrics.find("{action=\"publish\",outcome=\"FAILED_PRECONDITION\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("otaro_model_version 1"), std::string::npos);
}

TEST_F(ModelVersionsTest, ARestartServesThePublishedVersion) {
  const std::string dir = *dir_ + "/restart";
  std::vector<engine::Token> v2_text;
  {
    auto store = OpenStore("restart");
    ASSERT_NE(store, nullptr);
    ModelHost host;
    auto versions = ModelVersions::Start(TestConfig(dir), store.get(), &host, nullptr);
    ASSERT_TRUE(versions.ok());
    ASSERT_TRUE(store->RegisterModelVersion(*dir_ + "/flipped.sefp", {}).ok());
    ASSERT_TRUE((*versions)->Publish(2).ok());
    v2_text = Generate(*host.current());
  }
  auto store = OpenStore("restart");
  ASSERT_NE(store, nullptr);
  ModelHost host;
  auto versions = ModelVersions::Start(TestConfig(dir), store.get(), &host, nullptr);
  ASSERT_TRUE(versions.ok()) << versions.status();
  EXPECT_EQ(host.current()->version, 2u);
  EXPECT_EQ(Generate(*host.current()), v2_text);

  // A served version whose file is gone is a clear start-up error.
  host.Set(nullptr);
  fs::remove(store->ModelCheckpointPath(2));
  auto broken = ModelVersions::Start(TestConfig(dir), store.get(), &host, nullptr);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("serves model version 2"), absl::string_view::npos)
      << broken.status();
}

TEST_F(ModelVersionsTest, ConcurrentPublishesAreSerialised) {
  auto store = OpenStore("concurrent");
  ASSERT_NE(store, nullptr);
  ModelHost host;
  auto versions = ModelVersions::Start(TestConfig(store->dir()), store.get(), &host, nullptr);
  ASSERT_TRUE(versions.ok());
  ASSERT_TRUE(store->RegisterModelVersion(*dir_ + "/flipped.sefp", {}).ok());
  ASSERT_TRUE(store->RegisterModelVersion(*dir_ + "/base.sefp", {}).ok());
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(6);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] { results[i] = (*versions)->Publish(2 + i % 2).status(); });
  }
  for (auto& thread : threads) thread.join();
  for (const absl::Status& status : results) EXPECT_TRUE(status.ok()) << status;
  // Whatever order they ran in, the store and the host agree.
  EXPECT_EQ(store->CurrentVersion()->value_or(0), host.current()->version);
}

TEST_F(ModelVersionsTest, WithoutAStoreModelPathIsVersionOneAndPublishingIsRefused) {
  ModelHost host;
  Config config = TestConfig("");
  auto versions = ModelVersions::Start(config, nullptr, &host, nullptr);
  ASSERT_TRUE(versions.ok()) << versions.status();
  EXPECT_EQ(host.current()->version, 1u);
  EXPECT_FALSE((*versions)->has_store());
  for (const absl::Status& status :
       {(*versions)->Publish(1).status(), (*versions)->Rollback().status(),
        (*versions)->List().status()}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_NE(status.message().find("store.dir"), absl::string_view::npos) << status;
  }
  // No model.path and an empty store: nothing served, not an error.
  auto store = OpenStore("empty");
  ASSERT_NE(store, nullptr);
  ModelHost empty_host;
  config.model.path.clear();
  ASSERT_TRUE(ModelVersions::Start(config, store.get(), &empty_host, nullptr).ok());
  EXPECT_EQ(empty_host.current(), nullptr);
}

}  // namespace
}  // namespace otaro::server
