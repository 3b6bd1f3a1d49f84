// Read-only memory map of a whole file (weights are never copied needlessly).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace accullm {

class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size) : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Asks the kernel to take the whole pages inside [p, p + n) out of this process's resident
// set without losing their contents (MADV_PAGEOUT): pages of a mapped file are read again on
// the next touch, anonymous pages stay unless there is swap. For weights that were copied
// into another layout and are rarely read afterwards. A hint: failures are ignored.
void ReleaseResidentPages(const void* p, size_t n);

// Reads a whole (small) text file, e.g. config.json.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

}  // namespace accullm
