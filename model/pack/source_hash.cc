#include "model/pack/source_hash.h"

#include <algorithm>
#include <cstdio>

#include "common/dtype.h"
#include "common/mapped_file.h"

namespace accullm::model {

std::string SourceModelHash(const TensorStore& tensors, const std::string& dir) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  };
  if (auto cfg = ReadTextFile(dir + "/config.json"); cfg.ok()) mix(*cfg);
  for (const auto& [name, t] : tensors.tensors()) {
    mix(name);
    mix(DTypeName(t.dtype));
    for (int64_t d : t.shape) mix(std::to_string(d));
    const size_t step = std::max<size_t>(1, t.nbytes / 64);
    for (size_t i = 0; i < t.nbytes; i += step) h = (h ^ t.data[i]) * 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

}  // namespace accullm::model
