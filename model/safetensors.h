// safetensors files (single and sharded), memory-mapped and validated before use:
// header length within the file, header JSON well-formed, every tensor's dtype known,
// shape × dtype size equal to its byte range, byte ranges inside the data section.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/mapped_file.h"

namespace accullm::model {

// A view of one stored tensor: bytes live in a MappedFile owned by the SafetensorsFile.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // which file it came from, for error messages

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

// InvalidArgument: `t` (named with its file) has a shape other than the `want` config.json implies.
absl::Status ShapeError(const TensorView& t, const std::vector<int64_t>& want);

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // The same validation over a safetensors image in memory (what Open runs on the mapping);
  // `path` names it in errors. The views point into `bytes`, which must outlive the result.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(const uint8_t* bytes, size_t size,
                                                                    const std::string& path);
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::unique_ptr<MappedFile> file_;  // null for FromBytes
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a model directory: `model.safetensors`, or the shards that
// `model.safetensors.index.json` names (each shard must hold the tensors the index says).
class TensorStore {
 public:
  static absl::StatusOr<std::unique_ptr<TensorStore>> OpenDirectory(const std::string& dir);
  // A store of one already opened file (e.g. SafetensorsFile::FromBytes); `dir` names it in errors.
  static std::unique_ptr<TensorStore> FromFile(std::unique_ptr<SafetensorsFile> file, const std::string& dir);

  // NotFound naming the tensor and the directory when absent.
  absl::StatusOr<TensorView> Get(const std::string& name) const;
  bool Has(const std::string& name) const { return tensors_.count(name) != 0; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace accullm::model
