// Writes a safetensors file: 8-byte little-endian header length, JSON header, data. Every
// tensor starts 64-byte aligned (the header is padded) so loaders can use arrays in place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace accullm::quant {

class SafetensorsWriter {
 public:
  void Add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data, size_t nbytes);
  void AddMetadata(const std::string& key, const std::string& value);
  size_t data_bytes() const { return data_.size(); }
  // Writes atomically: to `path`.tmp, then renamed.
  absl::Status Write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t begin, end;
  };
  std::vector<Entry> entries_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<uint8_t> data_;
};

}  // namespace accullm::quant
