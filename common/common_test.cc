#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/atomic_file.h"
#include "common/background_priority.h"
#include "common/logging.h"
#include "common/mapped_file.h"
#include "common/page_buffer.h"
#include "common/process_memory.h"
#include "common/status_macros.h"
#include "common/testing/shared_data.h"
#include "gtest/gtest.h"

namespace otaro {
namespace {

TEST(MappedFileTest, MapsContents) {
  std::string dir = testing::ScratchDir("mapped");
  std::string path = dir + "/f.bin";
  ASSERT_TRUE(WriteFileAtomically(path, "hello").ok());
  auto file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*file)->data()), (*file)->size()), "hello");
}

TEST(MappedFileTest, EmptyFileIsEmptySpan) {
  std::string path = testing::ScratchDir("mapped_empty") + "/e";
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  auto file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->size(), 0u);
}

TEST(MappedFileTest, MissingFileIsNotFoundNamingPath) {
  auto file = MappedFile::Open("/nonexistent/otaro/x.bin");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(file.status().message().find("/nonexistent/otaro/x.bin"), std::string::npos);
}

TEST(MappedFileTest, DirectoryIsRefused) {
  auto file = MappedFile::Open(testing::ScratchDir("mapped_dir"));
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(AtomicFileTest, FailedWriteLeavesOldFileAndNoTemporary) {
  std::string dir = testing::ScratchDir("atomic");
  std::string path = dir + "/ckpt";
  ASSERT_TRUE(WriteFileAtomically(path, "old").ok());
  absl::Status status = WriteFileAtomically(path, [](std::FILE* f) {
    std::fputs("partial", f);
    return absl::DataLossError("simulated failure mid-write");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  std::string contents;
  ASSERT_TRUE(ReadFileToString(path, &contents).ok());
  EXPECT_EQ(contents, "old");
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir)) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1) << "temporary file left behind";
}

TEST(AtomicFileTest, ReplacesContents) {
  std::string path = testing::ScratchDir("atomic2") + "/f";
  ASSERT_TRUE(WriteFileAtomically(path, "one").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "two").ok());
  std::string contents;
  ASSERT_TRUE(ReadFileToString(path, &contents).ok());
  EXPECT_EQ(contents, "two");
}

absl::StatusOr<int> Half(int x) {
  if (x % 2) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::Status Quarter(int x, int* out) {
  OTARO_ASSIGN_OR_RETURN(int h, Half(x));
  OTARO_ASSIGN_OR_RETURN(*out, Half(h));
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagatesFirstError) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  EXPECT_EQ(Quarter(6, &out).code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoggingTest, FormatsAbslTypes) {
  EXPECT_EQ(fmt::format("{}|{}", absl::string_view("view"), absl::NotFoundError("gone")),
            "view|NOT_FOUND: gone");
}

TEST(LoggingTest, RejectsUnknownLevelNamingIt) {
  absl::Status s = SetLogLevel("loud");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("loud"), std::string::npos);
  EXPECT_TRUE(SetLogLevel("off").ok());
  EXPECT_TRUE(SetLogLevel("info").ok());
}

TEST(ProcessMemoryTest, ReportsResidentAndPeak) {
  EXPECT_GT(ResidentBytes(), 1 << 20);
  EXPECT_GE(PeakResidentBytes(), ResidentBytes());
}

// The server's case in miniature: many mid-sized blocks freed while a live
// block above them keeps the allocator from trimming the heap's top.
TEST(ProcessMemoryTest, ReleaseFreeHeapMemoryReturnsScatteredFreePages) {
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
  GTEST_SKIP() << "needs glibc's malloc (AddressSanitizer replaces it)";
#else
  constexpr size_t kBlock = 64 << 10;  // below malloc's mmap threshold
  constexpr int kBlocks = 2048;        // 128 MiB
  std::vector<char*> blocks;
  for (int i = 0; i < kBlocks; ++i) {
    blocks.push_back(static_cast<char*>(std::malloc(kBlock)));
    std::memset(blocks.back(), 1, kBlock);
  }
  char* pin = static_cast<char*>(std::malloc(64));  // lives above the blocks
  for (char* block : blocks) std::free(block);
  const int64_t held = ResidentBytes();
  const int64_t released = ReleaseFreeHeapMemory();
  std::free(pin);
  EXPECT_GT(released, int64_t{64} << 20) << "resident before: " << held;
  EXPECT_LT(ResidentBytes(), held - (int64_t{64} << 20));
#endif
}

// The soak test's growth in miniature. A thread frees a 16 MiB block: by
// default glibc then raises its mmap threshold to 16 MiB and its trim
// threshold to 32 MiB, for the whole process. The thread's next 24 MiB of
// 256 KiB blocks come from its arena and, freed, become the arena's free top,
// below the trim threshold: resident until someone calls malloc_trim. In the
// server, what requests and threads free after the last trim stayed so
// (24 MiB here without ConfigureHeapForLongRunningServer; 0 with it).
TEST(ProcessMemoryTest, AThreadsFreedBlocksGoBackWithoutATrimAfterConfiguringTheHeap) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__GLIBC__)
  GTEST_SKIP() << "needs glibc's malloc (the sanitizers replace it)";
#else
  if (const char* t = std::getenv("GLIBC_TUNABLES");
      t != nullptr && std::strstr(t, "glibc.malloc.") != nullptr) {
    GTEST_SKIP() << "GLIBC_TUNABLES sets the allocator";
  }
  ASSERT_TRUE(ConfigureHeapForLongRunningServer());
  int64_t before = 0, after = 0;
  std::thread([&] {
    constexpr size_t kLarge = size_t{16} << 20;
    char* large = static_cast<char*>(std::malloc(kLarge));
    std::memset(large, 1, kLarge);
    asm volatile("" : : "r"(large) : "memory");  // keeps the compiler from dropping the pair
    std::free(large);
    before = ResidentBytes();
    constexpr size_t kBlock = 256 << 10;
    std::vector<char*> blocks;
    blocks.reserve(96);  // no small live block of its own between the freed ones
    for (int i = 0; i < 96; ++i) {
      blocks.push_back(static_cast<char*>(std::malloc(kBlock)));
      std::memset(blocks.back(), 1, kBlock);
    }
    for (char* block : blocks) std::free(block);
    after = ResidentBytes();
  }).join();
  EXPECT_LT(after, before + (int64_t{8} << 20))
      << "resident after freeing 24 MiB: " << (after - before) / 1048576.0
      << " MiB above where the thread started";
#endif
}

// A PageBuffer's pages go back to the kernel when it is destroyed, with no
// trim: what the model's weights rely on (page_buffer.h).
TEST(PageBufferTest, IsZeroedAlignedMovableAndReturnedWhenFreed) {
  constexpr size_t kBytes = size_t{96} << 20;
  const int64_t before = ResidentBytes();
  {
    absl::StatusOr<PageBuffer> buffer = PageBuffer::Allocate(kBytes);
    ASSERT_TRUE(buffer.ok()) << buffer.status();
    ASSERT_EQ(buffer->size(), kBytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer->data()) % 4096, 0u);
    EXPECT_EQ(buffer->data()[0], 0);
    EXPECT_EQ(buffer->data()[kBytes - 1], 0);
    std::memset(buffer->data(), 7, kBytes);  // resident now
    EXPECT_GT(ResidentBytes(), before + (int64_t{64} << 20));
    PageBuffer moved = std::move(*buffer);
    EXPECT_EQ(buffer->data(), nullptr);
    EXPECT_EQ(buffer->size(), 0u);
    EXPECT_EQ(moved.data()[kBytes / 2], 7);
    PageBuffer assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.data()[kBytes - 1], 7);
  }
  EXPECT_LT(ResidentBytes(), before + (int64_t{16} << 20));
  absl::StatusOr<PageBuffer> empty = PageBuffer::Allocate(0);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->data(), nullptr);
}

TEST(PageBufferTest, ImpossibleSizeIsResourceExhausted) {
  absl::StatusOr<PageBuffer> buffer = PageBuffer::Allocate(size_t{1} << 62);
  EXPECT_EQ(buffer.status().code(), absl::StatusCode::kResourceExhausted);
}

int ThisThreadNice() {
  return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid)));
}

TEST(BackgroundPriorityTest, RunsOnItsOwnThreadAtBackgroundNiceAndLeavesTheCallerAlone) {
  const int caller_nice = ThisThreadNice();
  const std::thread::id caller = std::this_thread::get_id();
  auto result = RunAtBackgroundPriority([&] {
    EXPECT_NE(std::this_thread::get_id(), caller);
    return std::make_unique<int>(ThisThreadNice());  // move-only results pass through
  });
  ASSERT_NE(result, nullptr);
  EXPECT_EQ(*result, std::max(caller_nice, kBackgroundNice));
  EXPECT_EQ(ThisThreadNice(), caller_nice);
}

}  // namespace
}  // namespace otaro
