// Zeroed memory of its own pages, handed straight back to the kernel when freed.
//
// Why: memory from malloc goes back to the system only through malloc_trim,
// which holds each arena's lock while it walks it. A model version's weights
// (several hundred small plane arrays) freed into the arenas cost a 15-20 ms
// trim at every unload, and every thread that allocated in a locked arena
// meanwhile (an engine step, a gRPC thread writing a token) waited for it: the
// soak test's worst inter-token gap during swaps was 2.2-2.5x the median with
// the trim, 1.9x without. Memory that never enters the arenas needs no trim:
// a PageBuffer is an anonymous mapping, unmapped by its destructor.
// Use it for large, long-lived buffers allocated rarely (page granularity: a
// mapping costs a system call and at least 4 KiB).
#ifndef OTARO_COMMON_PAGE_BUFFER_H_
#define OTARO_COMMON_PAGE_BUFFER_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace otaro {

class PageBuffer {
 public:
  // `bytes` zeroed bytes, page-aligned (so 64-byte aligned). 0 bytes gives an
  // empty buffer with data() == nullptr. RESOURCE_EXHAUSTED when the kernel
  // refuses the mapping.
  static absl::StatusOr<PageBuffer> Allocate(size_t bytes);

  PageBuffer() = default;
  ~PageBuffer();
  PageBuffer(PageBuffer&& other) noexcept;
  PageBuffer& operator=(PageBuffer&& other) noexcept;
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  PageBuffer(uint8_t* data, size_t size) : data_(data), size_(size) {}
  void Release();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace otaro

#endif  // OTARO_COMMON_PAGE_BUFFER_H_
