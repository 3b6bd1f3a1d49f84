#include "common/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace accullm {
namespace {

std::vector<uint8_t> Pattern(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 2654435761u) >> 13);
  return v;
}

// The release is a hint that must never lose data: anonymous memory (weights quantized in
// this process) keeps its bytes, a mapped file reads the same bytes again.
TEST(ReleaseResidentPagesTest, AnonymousMemoryKeepsItsBytes) {
  const std::vector<uint8_t> want = Pattern(size_t{1} << 20);
  std::vector<uint8_t> heap = want;
  ReleaseResidentPages(heap.data(), heap.size());
  ReleaseResidentPages(heap.data() + 1, 5000);  // unaligned, less than two pages
  EXPECT_EQ(heap, want);
}

TEST(ReleaseResidentPagesTest, MappedFileReadsTheSameBytesAgain) {
  const std::vector<uint8_t> want = Pattern(size_t{3} << 20);
  const std::string path = ::testing::TempDir() + "/release_pages_" + std::to_string(::getpid()) + ".bin";
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(want.data()), static_cast<std::streamsize>(want.size()));
  }
  auto file = MappedFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  const MappedFile& m = **file;
  ASSERT_EQ(m.size(), want.size());
  EXPECT_EQ(std::vector<uint8_t>(m.data(), m.data() + m.size()), want);  // every page resident
  ReleaseResidentPages(m.data(), m.size());
  EXPECT_EQ(std::vector<uint8_t>(m.data(), m.data() + m.size()), want);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace accullm
