#include "common/process_memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace otaro {
namespace {

// The value of "key:   N kB" in /proc/self/status, in bytes.
int64_t ProcSelfStatusBytes(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  const size_t n = std::strlen(key);
  char line[256];
  int64_t bytes = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    long long kib = 0;
    if (std::strncmp(line, key, n) == 0 && line[n] == ':' &&
        std::sscanf(line + n + 1, "%lld", &kib) == 1) {
      bytes = static_cast<int64_t>(kib) * 1024;
      break;
    }
  }
  std::fclose(f);
  return bytes;
}

}  // namespace

int64_t ResidentBytes() { return ProcSelfStatusBytes("VmRSS"); }
int64_t PeakResidentBytes() { return ProcSelfStatusBytes("VmHWM"); }

bool ConfigureHeapForLongRunningServer() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) return false;
  // Setting either one also turns glibc's dynamic thresholds off.
  return mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 4 << 20) == 1;
#else
  return false;
#endif
}

HeapUsage CurrentHeapUsage() {
  HeapUsage usage;
#if defined(__GLIBC__)
  const struct mallinfo2 info = mallinfo2();
  usage.in_use_bytes = static_cast<int64_t>(info.uordblks + info.hblkhd);
  usage.free_bytes = static_cast<int64_t>(info.fordblks);
#endif
  return usage;
}

int64_t ReleaseFreeHeapMemory() {
  const int64_t before = ResidentBytes();
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
  const int64_t after = ResidentBytes();
  return before >= 0 && after >= 0 && after < before ? before - after : 0;
}

}  // namespace otaro
