// Door: a safetensors file (header length, header JSON, tensor table, data offsets). Every view
// it accepts must lie inside the bytes it was given: reading each one in full (the NaN/Inf scan
// the loaders run) makes ASan catch a view that does not.
#include <cstddef>
#include <cstdint>

#include "model/safetensors.h"
#include "model/weight_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace accullm::model;
  auto file = SafetensorsFile::FromBytes(data, size, "fuzz.safetensors");
  if (!file.ok()) return 0;
  for (const auto& [name, t] : (*file)->tensors()) {
    (void)CheckFinite(t);
    if (t.nbytes > 0 && (t.data < data || t.data + t.nbytes > data + size)) __builtin_trap();
  }
  return 0;
}
