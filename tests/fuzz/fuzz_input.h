// Helpers the fuzz targets share: splitting one input into the parts a door reads (a manifest
// and its tensors, a template and its messages...) and failing loudly on a broken invariant.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace accullm::fuzz {

// Parts of one input are separated by this line (in the seed files and the dictionaries).
inline constexpr std::string_view kSplit = "\n--8<--\n";

// The first `n` parts of `data` (missing parts are empty; the last part takes the rest).
inline std::vector<std::string_view> SplitInput(const uint8_t* data, size_t size, size_t n) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < n) {
    const size_t at = rest.find(kSplit);
    if (at == std::string_view::npos) break;
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kSplit.size());
  }
  parts.push_back(rest);
  parts.resize(n);
  return parts;
}

// A property the code promises did not hold: abort so libFuzzer records the input as a crash.
[[noreturn]] inline void Broken(const char* what) {
  std::fprintf(stderr, "fuzz: invariant broken: %s\n", what);
  std::abort();
}

}  // namespace accullm::fuzz
