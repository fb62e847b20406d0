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

// Returns the free pages the allocator holds in every arena to the kernel
// (malloc_trim(0) on glibc; nothing elsewhere). Thread-safe. It takes each
// arena's lock while it walks it, a few milliseconds per GiB released, so call
// it after rare, large frees, never per request. Returns the bytes by which
// resident memory fell (0 when it did not, or when unknown).
int64_t ReleaseFreeHeapMemory();

}  // namespace otaro

#endif  // OTARO_COMMON_PROCESS_MEMORY_H_
