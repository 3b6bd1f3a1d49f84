#include "model/safetensors.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json.h"
#include "common/status.h"

namespace accullm::model {
namespace json = boost::json;

namespace {

// Headers of real checkpoints are well under this; a larger one is a corrupt length field.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

absl::Status Bad(const std::string& path, absl::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", msg));
}

absl::StatusOr<TensorView> ParseTensorEntry(const std::string& path, const std::string& name, const json::value& v,
                                            const uint8_t* data, uint64_t data_size) {
  if (!v.is_object()) return Bad(path, absl::StrCat("tensor \"", name, "\": entry is not an object"));
  const json::object& o = v.get_object();
  TensorView t;
  t.name = name;
  t.file = path;
  auto dt = GetString(o, "dtype");
  if (!dt.ok()) return Bad(path, absl::StrCat("tensor \"", name, "\": ", dt.status().message()));
  auto dtype = ParseDType(*dt);
  if (!dtype.ok()) return Bad(path, absl::StrCat("tensor \"", name, "\": ", dtype.status().message()));
  t.dtype = *dtype;

  auto shape_it = o.find("shape");
  if (shape_it == o.end() || !shape_it->value().is_array()) {
    return Bad(path, absl::StrCat("tensor \"", name, "\": missing or non-array \"shape\""));
  }
  uint64_t numel = 1;
  for (const auto& d : shape_it->value().get_array()) {
    if (!d.is_int64() && !d.is_uint64())
      return Bad(path, absl::StrCat("tensor \"", name, "\": shape has a non-integer dim"));
    if (d.is_int64() && d.get_int64() < 0) return Bad(path, absl::StrCat("tensor \"", name, "\": negative shape dim"));
    const uint64_t dim = d.is_int64() ? static_cast<uint64_t>(d.get_int64()) : d.get_uint64();
    if (dim > (uint64_t{1} << 40) || (dim != 0 && numel > (uint64_t{1} << 48) / dim)) {
      return Bad(path, absl::StrCat("tensor \"", name, "\": shape too large"));
    }
    numel *= dim;
    t.shape.push_back(static_cast<int64_t>(dim));
  }

  auto off_it = o.find("data_offsets");
  if (off_it == o.end() || !off_it->value().is_array() || off_it->value().get_array().size() != 2) {
    return Bad(path, absl::StrCat("tensor \"", name, "\": missing or malformed \"data_offsets\""));
  }
  const auto& offs = off_it->value().get_array();
  uint64_t begin = 0, end = 0;
  for (int i = 0; i < 2; ++i) {
    const auto& x = offs[i];
    if (x.is_int64() && x.get_int64() >= 0) {
      (i == 0 ? begin : end) = static_cast<uint64_t>(x.get_int64());
    } else if (x.is_uint64()) {
      (i == 0 ? begin : end) = x.get_uint64();
    } else {
      return Bad(path, absl::StrCat("tensor \"", name, "\": data_offsets must be non-negative integers"));
    }
  }
  if (end < begin) return Bad(path, absl::StrCat("tensor \"", name, "\": data_offsets end before begin"));
  if (end > data_size) {
    return Bad(path, absl::StrCat("tensor \"", name, "\": data_offsets [", begin, ", ", end,
                                  ") outside the data section of ", data_size, " bytes (file truncated?)"));
  }
  const uint64_t want = numel * DTypeSize(t.dtype);
  if (end - begin != want) {
    return Bad(path, absl::StrCat("tensor \"", name, "\": data_offsets span ", end - begin,
                                  " bytes but shape and dtype need ", want));
  }
  t.data = data + begin;
  t.nbytes = want;
  return t;
}

}  // namespace

absl::Status ShapeError(const TensorView& t, const std::vector<int64_t>& want) {
  return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor \"", t.name, "\" has shape [",
                                                 absl::StrJoin(t.shape, ", "), "] but config.json implies [",
                                                 absl::StrJoin(want, ", "), "]"));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  ASSIGN_OR_RETURN(auto result, FromBytes(file->data(), file->size(), path));
  result->file_ = std::move(file);
  return result;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(const uint8_t* bytes, size_t size_bytes,
                                                                          const std::string& path) {
  auto result = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  result->path_ = path;
  const uint64_t size = size_bytes;
  if (size < 8)
    return Bad(path, absl::StrCat("file truncated: ", size, " bytes, too short for the 8-byte header length"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  if (header_len > kMaxHeaderBytes)
    return Bad(path, absl::StrCat("header length ", header_len, " is implausibly large (corrupt file?)"));
  if (header_len > size - 8) {
    return Bad(path, absl::StrCat("header length ", header_len, " extends beyond the file (", size,
                                  " bytes): file truncated?"));
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes + 8), header_len);
  auto parsed = ParseJson(header, absl::StrCat(path, ": header"));
  if (!parsed.ok()) return parsed.status();
  if (!parsed->is_object()) return Bad(path, "header JSON is not an object");
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (const auto& kv : parsed->get_object()) {
    const std::string name(kv.key());
    if (name == "__metadata__") {
      if (!kv.value().is_object()) return Bad(path, "__metadata__ is not an object");
      for (const auto& m : kv.value().get_object()) {
        if (m.value().is_string()) result->metadata_[std::string(m.key())] = std::string(m.value().get_string());
      }
      continue;
    }
    ASSIGN_OR_RETURN(TensorView t, ParseTensorEntry(path, name, kv.value(), data, data_size));
    result->tensors_.emplace(name, std::move(t));
  }
  return result;
}

absl::StatusOr<std::unique_ptr<TensorStore>> TensorStore::OpenDirectory(const std::string& dir) {
  auto store = std::unique_ptr<TensorStore>(new TensorStore());
  store->dir_ = dir;
  struct stat st {};
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  if (::stat(index_path.c_str(), &st) == 0) {
    ASSIGN_OR_RETURN(std::string text, ReadTextFile(index_path));
    ASSIGN_OR_RETURN(json::value v, ParseJson(text, index_path));
    const json::object* o = v.if_object();
    const json::value* wm = o ? o->if_contains("weight_map") : nullptr;
    if (wm == nullptr || !wm->is_object()) return Bad(index_path, "missing \"weight_map\" object");
    std::map<std::string, std::string> tensor_to_shard;
    std::set<std::string> shards;
    for (const auto& kv : wm->get_object()) {
      if (!kv.value().is_string()) return Bad(index_path, "weight_map values must be file names");
      std::string shard(kv.value().get_string());
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
        return Bad(index_path, absl::StrCat("shard name \"", shard, "\" is not a plain file name"));
      }
      tensor_to_shard[std::string(kv.key())] = shard;
      shards.insert(shard);
    }
    std::map<std::string, SafetensorsFile*> opened;
    for (const auto& shard : shards) {
      ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(dir + "/" + shard));
      opened[shard] = f.get();
      store->files_.push_back(std::move(f));
    }
    for (const auto& [name, shard] : tensor_to_shard) {
      const auto& ts = opened[shard]->tensors();
      auto it = ts.find(name);
      if (it == ts.end()) {
        return Bad(index_path,
                   absl::StrCat("tensor \"", name, "\" is mapped to ", shard, " but that file does not contain it"));
      }
      store->tensors_.emplace(name, it->second);
    }
  } else if (::stat(single_path.c_str(), &st) == 0) {
    ASSIGN_OR_RETURN(auto f, SafetensorsFile::Open(single_path));
    store->tensors_ = f->tensors();
    store->files_.push_back(std::move(f));
  } else {
    return absl::NotFoundError(absl::StrCat(dir, ": no model.safetensors or model.safetensors.index.json"));
  }
  return store;
}

std::unique_ptr<TensorStore> TensorStore::FromFile(std::unique_ptr<SafetensorsFile> file, const std::string& dir) {
  auto store = std::unique_ptr<TensorStore>(new TensorStore());
  store->dir_ = dir;
  store->tensors_ = file->tensors();
  store->files_.push_back(std::move(file));
  return store;
}

absl::StatusOr<TensorView> TensorStore::Get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) return absl::NotFoundError(absl::StrCat(dir_, ": missing tensor \"", name, "\""));
  return it->second;
}

}  // namespace accullm::model
