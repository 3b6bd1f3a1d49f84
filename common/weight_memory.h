// Memory for the weights the kernels stream at decode (repacked tiles, sparse layouts, the
// guesser's INT8 rows): 64-byte aligned, so every 64-byte load is one cache line; and from
// 2 MiB up aligned to 2 MiB and advised for transparent huge pages (Linux madvise
// MADV_HUGEPAGE, which takes effect where the kernel's THP mode is "madvise" or "always").
//
// Why huge pages: decode reads each layer's weights once per token, far more than the TLB
// covers at 4 KiB pages, and the hardware prefetchers stop at 4 KiB page boundaries. The
// sparse FFN reads scattered 1.25 KB rows, so nearly every row starts with a TLB miss and a
// cold prefetcher. Measured (bench/sparse_ffn_bench, TinyLlama FFN shape, docs/benchmarks.md
// "Huge pages"): gate + up at 50% kept 1.38x faster than dense on 4 KiB pages, 1.87x on huge
// pages; dense itself gains too.
//
// ACCULLM_HUGE_PAGES=off in the environment keeps these blocks on small pages (MADV_NOHUGEPAGE,
// even where the THP mode is "always"; the alignment stays: it decides how a block is freed).
// Without Linux no advice is given.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace accullm {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// Whether large weight allocations are advised for huge pages: from ACCULLM_HUGE_PAGES at the
// first call, then as SetHugePagesAdvised left it (benchmarks build one copy of the weights
// each way). Blocks already allocated keep their pages.
bool HugePagesAdvised();
void SetHugePagesAdvised(bool advised);

void* AllocateWeightBytes(size_t bytes);
void FreeWeightBytes(void* p, size_t bytes);

template <typename T>
struct WeightAllocator {
  using value_type = T;
  WeightAllocator() = default;
  template <typename U>
  WeightAllocator(const WeightAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(AllocateWeightBytes(n * sizeof(T))); }
  void deallocate(T* p, size_t n) { FreeWeightBytes(p, n * sizeof(T)); }
  template <typename U>
  bool operator==(const WeightAllocator<U>&) const {
    return true;
  }
};
template <typename T>
using WeightVector = std::vector<T, WeightAllocator<T>>;

}  // namespace accullm
