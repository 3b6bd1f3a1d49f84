// PackStaging (quant/pack_staging.h): a pack appears at --out only complete, replaces an old
// pack whole, is never written over a directory that is not a pack, and what a failed or
// killed write leaves is removed. (tests/integration/pack_write_fault_test.sh kills a real
// `accullm quantize` at several points and fills its disk.)
#include "quant/pack_staging.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/support/test_support.h"

namespace accullm::quant {
namespace {

namespace fs = std::filesystem;

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string Read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int Entries(const std::string& dir) {
  return static_cast<int>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

TEST(PackStaging, NewPackAppearsOnlyWhenPublished) {
  test_support::ScopedTempDir tmp;
  auto s = PackStaging::Prepare(tmp.Path("pack"), tmp.Path("source"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Create().ok());
  Write((*s)->dir() + "/accullm.json", "new");
  EXPECT_FALSE(fs::exists(tmp.Path("pack")));  // staged beside it, not at --out
  EXPECT_EQ(fs::path((*s)->dir()).parent_path(), fs::path(tmp.path()));
  ASSERT_TRUE((*s)->Publish().ok());
  EXPECT_EQ(Read(tmp.Path("pack/accullm.json")), "new");
  EXPECT_EQ(Entries(tmp.path()), 1);  // nothing but the pack
}

TEST(PackStaging, ReplacesAnOldPackWhole) {
  test_support::ScopedTempDir tmp;
  fs::create_directory(tmp.Path("pack"));
  Write(tmp.Path("pack/accullm.json"), "old");
  Write(tmp.Path("pack/guesser.safetensors"), "only in the old pack");
  auto s = PackStaging::Prepare(tmp.Path("pack") + "/", tmp.Path("source"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Create().ok());
  Write((*s)->dir() + "/accullm.json", "new");
  EXPECT_EQ(Read(tmp.Path("pack/accullm.json")), "old");  // intact until the swap
  ASSERT_TRUE((*s)->Publish().ok());
  EXPECT_EQ(Read(tmp.Path("pack/accullm.json")), "new");
  EXPECT_FALSE(fs::exists(tmp.Path("pack/guesser.safetensors")));
  EXPECT_EQ(Entries(tmp.path()), 1);  // the old pack is gone
}

TEST(PackStaging, UnpublishedStagingIsRemovedAndTheOldPackKept) {
  test_support::ScopedTempDir tmp;
  fs::create_directory(tmp.Path("pack"));
  Write(tmp.Path("pack/accullm.json"), "old");
  {
    auto s = PackStaging::Prepare(tmp.Path("pack"), tmp.Path("source"));
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->Create().ok());
    Write((*s)->dir() + "/model.safetensors", "half");
  }  // the write failed: no Publish
  EXPECT_EQ(Read(tmp.Path("pack/accullm.json")), "old");
  EXPECT_EQ(Entries(tmp.path()), 1);
}

TEST(PackStaging, RefusesAnOutThatIsNotAPack) {
  test_support::ScopedTempDir tmp;
  fs::create_directory(tmp.Path("notes"));
  Write(tmp.Path("notes/todo.txt"), "keep");
  auto s = PackStaging::Prepare(tmp.Path("notes"), tmp.Path("source"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("is not an AccuLLM pack"), std::string::npos) << s.status();
  Write(tmp.Path("file"), "x");
  EXPECT_FALSE(PackStaging::Prepare(tmp.Path("file"), tmp.Path("source")).ok());
  fs::create_directory(tmp.Path("source"));
  Write(tmp.Path("source/accullm.json"), "{}");
  EXPECT_FALSE(PackStaging::Prepare(tmp.Path("source"), tmp.Path("source")).ok());
  fs::create_directory(tmp.Path("empty"));
  EXPECT_TRUE(PackStaging::Prepare(tmp.Path("empty"), tmp.Path("source")).ok());
  EXPECT_EQ(Read(tmp.Path("notes/todo.txt")), "keep");
}

TEST(PackStaging, RemovesWhatAKilledWriterLeft) {
  test_support::ScopedTempDir tmp;
  const pid_t child = fork();  // a pid that is certainly gone once reaped
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  waitpid(child, nullptr, 0);
  const std::string stale = tmp.Path(".pack.partial-" + std::to_string(child));
  fs::create_directory(stale);
  Write(stale + "/model.safetensors", "half");
  const std::string alive = tmp.Path(".pack.partial-1");  // pid 1: alive, maybe writing
  fs::create_directory(alive);
  const std::string other = tmp.Path(".other.partial-" + std::to_string(child));  // another --out's
  fs::create_directory(other);
  auto s = PackStaging::Prepare(tmp.Path("pack"), tmp.Path("source"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE((*s)->Create().ok());
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_TRUE(fs::exists(other));
}

}  // namespace
}  // namespace accullm::quant
