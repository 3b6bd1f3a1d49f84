// UTF-8 handling, character classes and NFC over the generated tables (unicode_tables.cc).
#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include "text/unicode_tables.h"

namespace accullm::text {
namespace {

using namespace unicode_data;

constexpr std::array<CharClass, 128> MakeAsciiClasses() {
  std::array<CharClass, 128> t{};
  for (int c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) t[c] = CharClass::kLetter;
    else if (c >= '0' && c <= '9') t[c] = CharClass::kNumber;
    else if (c == ' ' || (c >= 0x09 && c <= 0x0D)) t[c] = CharClass::kSpace;
    else t[c] = CharClass::kOther;
  }
  return t;
}
constexpr std::array<CharClass, 128> kAsciiClasses = MakeAsciiClasses();

template <typename Range>
const Range* FindRange(const Range* table, int count, char32_t cp) {
  const Range* end = table + count;
  const Range* it = std::upper_bound(table, end, cp, [](char32_t c, const Range& r) { return c < r.lo; });
  if (it == table) return nullptr;
  --it;
  return cp <= it->hi ? it : nullptr;
}

uint8_t CombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  const CombiningRange* r = FindRange(kCombiningRanges, kCombiningRangeCount, cp);
  return r ? r->ccc : 0;
}

// Hangul syllable arithmetic (Unicode ch. 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void DecomposeInto(char32_t cp, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    int s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out->push_back(kTBase + s % kTCount);
    return;
  }
  if (cp >= 0xC0) {
    const Decomposition* end = kDecompositions + kDecompositionCount;
    const Decomposition* it =
        std::lower_bound(kDecompositions, end, cp, [](const Decomposition& d, char32_t c) { return d.cp < c; });
    if (it != end && it->cp == cp) {
      DecomposeInto(it->first, out);
      if (it->second) DecomposeInto(it->second, out);
      return;
    }
  }
  out->push_back(cp);
}

// 0 when the pair has no primary composite.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const Composition* end = kCompositions + kCompositionCount;
  const Composition* it =
      std::lower_bound(kCompositions, end, std::pair{a, b}, [](const Composition& c, std::pair<char32_t, char32_t> k) {
        return c.first != k.first ? c.first < k.first : c.second < k.second;
      });
  return (it != end && it->first == a && it->second == b) ? it->composite : 0;
}

}  // namespace

CharClass ClassOf(char32_t cp) {
  if (cp < 0x80) return kAsciiClasses[cp];
  const ClassRange* r = FindRange(kClassRanges, kClassRangeCount, cp);
  return r ? static_cast<CharClass>(r->cls) : CharClass::kOther;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {
// Length of the well-formed sequence at s[0] (Unicode Table 3-7), or -k where k >= 0 is the
// number of bytes forming a valid prefix (maximal subpart) when the sequence is ill-formed
// or cut off at the end of `s`; `*truncated` tells the two apart.
int ScanSequence(std::string_view s, bool* truncated) {
  *truncated = false;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) len = 2;
  else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;  // never a lead byte
  }
  for (int i = 1; i < len; ++i) {
    if (static_cast<size_t>(i) >= n) {
      *truncated = true;
      return -i;
    }
    const unsigned char b = p[i];
    const unsigned char l = (i == 1) ? lo : 0x80, h = (i == 1) ? hi : 0xBF;
    if (b < l || b > h) return -i;
  }
  return len;
}
}  // namespace

size_t Utf8SequenceLength(std::string_view s, bool* complete) {
  bool truncated;
  const int r = ScanSequence(s, &truncated);
  *complete = r > 0;
  return static_cast<size_t>(r > 0 ? r : -r);
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    bool truncated;
    int r = ScanSequence(s.substr(i), &truncated);
    if (r <= 0) return false;
    i += r;
  }
  return true;
}

std::string SanitizeUtf8(std::string_view s) {
  if (IsValidUtf8(s)) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    bool truncated;
    int r = ScanSequence(s.substr(i), &truncated);
    if (r > 0) {
      out.append(s.substr(i, r));
      i += r;
    } else {
      out.append("\xEF\xBF\xBD");
      i += std::max(1, -r);  // skip the maximal subpart (at least the offending byte)
    }
  }
  return out;
}

std::string NormalizeNfc(std::string_view s) {
  // Every code point below U+0300 is NFC-stable and cannot combine with a neighbour below
  // U+0300; such text (all ASCII / Latin-1) is returned untouched. Lead bytes below 0xCC
  // encode exactly those code points.
  bool simple = true;
  for (unsigned char c : s) {
    if (c >= 0xCC) {
      simple = false;
      break;
    }
  }
  if (simple) return std::string(s);

  std::vector<char32_t> cps;
  cps.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) DecomposeInto(NextCodePoint(s, &pos), &cps);

  // Canonical ordering: stable sort each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (CombiningClass(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && CombiningClass(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](char32_t a, char32_t b) { return CombiningClass(a) < CombiningClass(b); });
    i = j;
  }

  // Canonical composition.
  std::vector<char32_t> out;
  out.reserve(cps.size());
  std::ptrdiff_t starter = -1;
  int last_ccc = -1;  // class of the last character appended after the starter
  for (char32_t cp : cps) {
    const int ccc = CombiningClass(cp);
    if (starter >= 0) {
      const bool blocked = last_ccc != -1 && (last_ccc == 0 || last_ccc >= ccc);
      if (!blocked) {
        if (char32_t c = Compose(out[starter], cp)) {
          out[starter] = c;
          continue;
        }
      }
    }
    out.push_back(cp);
    if (ccc == 0) {
      starter = static_cast<std::ptrdiff_t>(out.size()) - 1;
      last_ccc = -1;
    } else {
      last_ccc = ccc;
    }
  }
  std::string result;
  result.reserve(s.size());
  for (char32_t cp : out) AppendUtf8(cp, &result);
  return result;
}

}  // namespace accullm::text
