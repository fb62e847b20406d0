// The process's memory as the kernel counts it, and handing back what the C
// allocator keeps after large frees.
//
// Why this exists: glibc's malloc does not return freed memory to the kernel
// unless it lies at the top of an arena. A server that loads a model version
// (hundreds of MiB of planes plus the loader's transients), frees the previous
// one, and runs tuning jobs (float32 masters, gradients, optimizer state) on
// other threads leaves most of that freed memory scattered over several arenas:
// measured on SmolLM2-135M, resident memory grew from 211 MiB to 2.75 GiB over 20
// publish/rollback cycles while the allocator's in-use bytes stayed flat, and
// malloc_trim gave it all back. So the owners of large, rare frees (a model
// version, a tuning job) call ReleaseFreeHeapMemory after them. The weights
// themselves now live in PageBuffers (common/page_buffer.h) and never enter
// the arenas, so what is trimmed is the loader's transients, the rest of a
// version and a job's state; the trim holds each arena's lock while it walks
// it, so the server runs it at background priority.
#ifndef OTARO_COMMON_PROCESS_MEMORY_H_
#define OTARO_COMMON_PROCESS_MEMORY_H_

#include <cstdint>

namespace otaro {

// VmRSS (resident now) and VmHWM (the peak) of this process in bytes, or -1
// when /proc/self/status cannot be read.
int64_t ResidentBytes();
int64_t PeakResidentBytes();

// Sets the C allocator up for a long-running server, once, before its threads
// start. Why: glibc raises its mmap threshold (to up to 32 MiB) and its trim
// threshold (to twice that) each time a large block is freed, so after the
// first model version or tuning job most large buffers are carved from the
// arenas instead of mapped, and a thread arena's free top stays resident
// until the next malloc_trim: whatever requests and threads free after the
// last trim (an unload's) is kept. In the soak test each of ~8 threads'
// arenas held 14-15 MiB of free top at the end, +90-150 MiB over 20 publish
// cycles while the bytes in use stayed flat. Fixed thresholds (blocks of 1 MiB and up get
// their own mapping, returned on free; an arena's free top above 4 MiB is
// given back on the free that made it) took that to +7-11 MiB, with the
// streams' median inter-token gap and the tuning job's time unchanged.
// Leaves the allocator alone when GLIBC_TUNABLES sets any glibc.malloc
// tunable (the operator's choice wins) and where the C library is not glibc.
// Returns whether it changed anything.
bool ConfigureHeapForLongRunningServer();

// What the C allocator holds: bytes in live allocations (its arenas and its
// own mappings together) and free bytes it keeps in its arenas (resident or
// not: a trimmed free page still counts here). -1 each where unknown (not glibc).
struct HeapUsage {
  int64_t in_use_bytes = -1;
  int64_t free_bytes = -1;
};
HeapUsage CurrentHeapUsage();

// Returns the free pages the allocator holds in every arena to the kernel
// (malloc_trim(0) on glibc; nothing elsewhere). Thread-safe. It takes each
// arena's lock while it walks it, a few milliseconds per GiB released, so call
// it after rare, large frees, never per request. Returns the bytes by which
// resident memory fell (0 when it did not, or when unknown).
int64_t ReleaseFreeHeapMemory();

}  // namespace otaro

#endif  // OTARO_COMMON_PROCESS_MEMORY_H_
