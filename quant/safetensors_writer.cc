#include "quant/safetensors_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "boost/json.hpp"

namespace accullm::quant {

void SafetensorsWriter::Add(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data,
                            size_t nbytes) {
  const size_t begin = (data_.size() + 63) / 64 * 64;
  data_.resize(begin + nbytes);
  std::memcpy(data_.data() + begin, data, nbytes);
  entries_.push_back({name, dtype, std::move(shape), begin, begin + nbytes});
}

void SafetensorsWriter::AddMetadata(const std::string& key, const std::string& value) {
  metadata_.emplace_back(key, value);
}

absl::Status SafetensorsWriter::Write(const std::string& path) const {
  boost::json::object header;
  if (!metadata_.empty()) {
    boost::json::object meta;
    for (const auto& [k, v] : metadata_) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  for (const auto& e : entries_) {
    boost::json::object t;
    t["dtype"] = DTypeName(e.dtype);
    boost::json::array shape;
    for (int64_t d : e.shape) shape.push_back(d);
    t["shape"] = std::move(shape);
    t["data_offsets"] = boost::json::array{static_cast<uint64_t>(e.begin), static_cast<uint64_t>(e.end)};
    header[e.name] = std::move(t);
  }
  std::string text = boost::json::serialize(header);
  while ((8 + text.size()) % 64 != 0) text.push_back(' ');  // data section 64-byte aligned
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size() &&
            std::fwrite(data_.data(), 1, data_.size(), f) == data_.size();
  int err = ok ? 0 : errno;  // why (a full disk, a file size limit): the first failure's
  if (std::fclose(f) != 0 && ok) ok = false, err = errno;
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) ok = false, err = errno;
  if (!ok) {
    std::remove(tmp.c_str());
    return absl::DataLossError(absl::StrCat("failed writing ", path, ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace accullm::quant
