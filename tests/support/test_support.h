// Shared by the unit tests (tests/unit/*_test.cc): where the repository's fixtures are, a
// scratch directory that removes itself, and loaders that report a failure instead of crashing.
#pragma once

#include <memory>
#include <string>

#include "common/thread_pool.h"
#include "model/transformer.h"
#include "text/tokenizer.h"

namespace accullm::test_support {

// The repository root (the source tree the tests were configured from).
const std::string& SourceDir();
// The embedded model, models/tinystories-llama: weights, tokenizer, reference.json, valid.txt.
const std::string& ModelDir();
// A file or folder under tests/fixtures/, e.g. FixturePath("chat_templates/qwen3.jinja").
std::string FixturePath(const std::string& relative);
// A file's bytes; records a test failure and returns "" when it cannot be read.
std::string ReadFileOrFail(const std::string& path);

// A fresh directory under GoogleTest's TempDir(), unique to this process and instance (mkdtemp:
// parallel ctest processes and other checkouts never share it), removed with everything in it
// when this goes out of scope. If it cannot be made, a test failure is recorded and path() is "".
class ScopedTempDir {
 public:
  explicit ScopedTempDir(const std::string& prefix = "accullm_test");
  ~ScopedTempDir();
  ScopedTempDir(const ScopedTempDir&) = delete;
  ScopedTempDir& operator=(const ScopedTempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name (nothing is created).
  std::string Path(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Loaders: on an error they record a test failure with the status and return nullptr, so a
// caller stops with ASSERT_NE(x, nullptr).
std::unique_ptr<model::Transformer> LoadModelOrFail(const std::string& dir, ThreadPool* pool,
                                                    const model::ModelLoadOptions& options = {});
std::unique_ptr<text::Tokenizer> LoadTokenizerOrFail(const std::string& path_or_dir);

}  // namespace accullm::test_support
