#include "common/weight_memory.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace accullm {
namespace {

// The VmFlags of the mapping holding `p` in /proc/self/smaps ("" when not found).
std::string VmFlagsOf(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  std::string line;
  while (std::getline(smaps, line)) {
    unsigned long begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &begin, &end) == 2 && line.find(':') > line.find(' ')) {
      inside = begin <= at && at < end;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

bool HasFlag(const std::string& vm_flags, const std::string& flag) {
  std::istringstream words(vm_flags);
  std::string w;
  while (words >> w)
    if (w == flag) return true;
  return false;
}

TEST(WeightMemoryTest, SmallBlocksOnCacheLinesLargeOnesOnHugePageBoundaries) {
  for (size_t bytes :
       {size_t{1}, size_t{100}, size_t{4096}, kHugePageBytes - 1, kHugePageBytes, 3 * kHugePageBytes + 5}) {
    auto* p = static_cast<uint8_t*>(AllocateWeightBytes(bytes));
    const size_t alignment = bytes >= kHugePageBytes ? kHugePageBytes : 64;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignment, 0u) << bytes << " bytes";
    p[0] = 1;
    p[bytes - 1] = 2;  // the whole block is usable
    EXPECT_EQ(p[bytes - 1], 2);
    if (bytes > 1) EXPECT_EQ(p[0], 1);
    FreeWeightBytes(p, bytes);
  }
}

TEST(WeightMemoryTest, VectorsKeepTheirContents) {
  WeightVector<uint16_t> v(kHugePageBytes, 7);  // 4 MiB: a huge-page block
  v[12345] = 9;
  WeightVector<uint16_t> copy = v;
  EXPECT_EQ(copy[12345], 9);
  EXPECT_EQ(copy[0], 7);
  copy.assign(10, 3);  // shrinks into a small block
  EXPECT_EQ(copy.size(), 10u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.data()) % 64, 0u);
  WeightVector<uint16_t> moved = std::move(v);
  EXPECT_EQ(moved[12345], 9);
}

// The advice is the mapping's flag (VmFlags "hg": MADV_HUGEPAGE, "nh": MADV_NOHUGEPAGE),
// whether or not the kernel then finds free huge pages; small blocks get none.
TEST(WeightMemoryTest, LargeBlocksAdvisedAsSet) {
  if (!std::filesystem::exists("/sys/kernel/mm/transparent_hugepage/enabled") ||
      !std::filesystem::exists("/proc/self/smaps"))
    GTEST_SKIP() << "no transparent huge pages on this system: the advice is not given";
  const bool before = HugePagesAdvised();
  for (bool advised : {true, false}) {
    SetHugePagesAdvised(advised);
    EXPECT_EQ(HugePagesAdvised(), advised);
    const size_t bytes = 4 * kHugePageBytes;
    void* p = AllocateWeightBytes(bytes);
    const std::string flags = VmFlagsOf(p);
    ASSERT_NE(flags, "") << "no mapping holds the block";
    EXPECT_EQ(HasFlag(flags, "hg"), advised) << flags;
    EXPECT_EQ(HasFlag(flags, "nh"), !advised) << flags;
    FreeWeightBytes(p, bytes);
  }
  SetHugePagesAdvised(before);
}

}  // namespace
}  // namespace accullm
