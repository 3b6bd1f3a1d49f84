#include "tests/support/test_support.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>
#include <vector>

#include "gtest/gtest.h"

namespace accullm::test_support {

const std::string& SourceDir() {
  static const std::string dir = ACCULLM_SOURCE_DIR;
  return dir;
}

const std::string& ModelDir() {
  static const std::string dir = SourceDir() + "/models/tinystories-llama";
  return dir;
}

std::string FixturePath(const std::string& relative) { return SourceDir() + "/tests/fixtures/" + relative; }

std::string ReadFileOrFail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  return std::string(std::istreambuf_iterator<char>(in), {});
}

ScopedTempDir::ScopedTempDir(const std::string& prefix) {
  std::string tmpl = ::testing::TempDir();
  if (tmpl.empty() || tmpl.back() != '/') tmpl += '/';
  tmpl += prefix + "_XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp " << tmpl << ": " << std::strerror(errno);
    return;
  }
  path_ = buf.data();
}

ScopedTempDir::~ScopedTempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::unique_ptr<model::Transformer> LoadModelOrFail(const std::string& dir, ThreadPool* pool,
                                                    const model::ModelLoadOptions& options) {
  auto m = model::Transformer::Load(dir, pool, options);
  if (!m.ok()) {
    ADD_FAILURE() << "loading the model " << dir << ": " << m.status();
    return nullptr;
  }
  return std::move(*m);
}

std::unique_ptr<text::Tokenizer> LoadTokenizerOrFail(const std::string& path_or_dir) {
  auto t = text::Tokenizer::Load(path_or_dir);
  if (!t.ok()) {
    ADD_FAILURE() << "loading the tokenizer " << path_or_dir << ": " << t.status();
    return nullptr;
  }
  return std::move(*t);
}

}  // namespace accullm::test_support
