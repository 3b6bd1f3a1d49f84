#include "common/weight_memory.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace accullm {

namespace {

// The alignment follows from the size alone, so that FreeWeightBytes finds it again.
std::align_val_t AlignmentFor(size_t bytes) {
  return std::align_val_t{bytes >= kHugePageBytes ? kHugePageBytes : size_t{64}};
}

std::atomic<bool>& Advised() {
  static std::atomic<bool> advised = [] {
    const char* v = std::getenv("ACCULLM_HUGE_PAGES");
    return v == nullptr || std::strcmp(v, "off") != 0;
  }();
  return advised;
}

}  // namespace

bool HugePagesAdvised() { return Advised().load(std::memory_order_relaxed); }

void SetHugePagesAdvised(bool advised) { Advised().store(advised, std::memory_order_relaxed); }

void* AllocateWeightBytes(size_t bytes) {
  void* p = ::operator new(bytes, AlignmentFor(bytes));
#if defined(__linux__)
  // Before the first touch: the pages are faulted in (zero-filled by the vector) as huge ones.
  // Best effort: a kernel without THP refuses, and the memory stays on small pages. Not
  // advised, the block is kept off huge pages even where the THP mode is "always" (what
  // ACCULLM_HUGE_PAGES=off promises, and the small-page side of a benchmark A/B).
  if (bytes >= kHugePageBytes) (void)::madvise(p, bytes, HugePagesAdvised() ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
#endif
  return p;
}

void FreeWeightBytes(void* p, size_t bytes) { ::operator delete(p, AlignmentFor(bytes)); }

}  // namespace accullm
