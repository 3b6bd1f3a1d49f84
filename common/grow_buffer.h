// Per-thread scratch that grows and is reused: a warm forward pass allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace accullm {

// `buffer` with room for at least n elements (grown, never shrunk; contents unspecified).
template <class T>
T* GrowBuffer(std::vector<T>& buffer, int64_t n) {
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

}  // namespace accullm
