// Counter-based randomness: SplitMix64 turns (seed, position) into an independent-looking
// 64-bit value, so stochastic rounding is reproducible for a seed whatever the thread split.
#pragma once

#include <cstdint>

namespace accullm {

inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A uniform float in [0, 1) from the top 24 bits of a hash.
inline float UnitFloat24(uint64_t h) { return static_cast<float>(h >> 40) * 0x1.0p-24f; }

}  // namespace accullm
