// The names of an enum's values, written once as a table instead of a name switch and a
// parse if-chain that must be kept in step by hand.
//
// A table is a constexpr array of {value, name}. The first entry for a value is its name;
// later entries for the same value are other spellings that parsing also accepts (aliases).
// Parsing refuses anything else with a message that lists every accepted spelling.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace accullm {

template <typename E>
struct EnumName {
  E value;
  const char* name;
};

// The name of `v`, or `fallback` for a value the table lacks (e.g. a forged cast).
template <typename E, size_t N>
constexpr const char* NameOf(const EnumName<E> (&names)[N], E v, const char* fallback = "unknown") {
  for (const EnumName<E>& e : names)
    if (e.value == v) return e.name;
  return fallback;
}

// "a, b, c": every accepted spelling, in table order.
template <typename E, size_t N>
std::string NameList(const EnumName<E> (&names)[N]) {
  std::string out;
  for (const EnumName<E>& e : names) absl::StrAppend(&out, out.empty() ? "" : ", ", e.name);
  return out;
}

// The value spelled `name`; otherwise InvalidArgument `unknown <what> "<name>" (valid: a, b)`.
template <typename E, size_t N>
absl::StatusOr<E> ParseName(const EnumName<E> (&names)[N], std::string_view name, std::string_view what) {
  for (const EnumName<E>& e : names)
    if (name == e.name) return e.value;
  // (This Abseil's StrCat takes absl::string_view, not std::string_view.)
  return absl::InvalidArgumentError(absl::StrCat("unknown ", absl::string_view(what.data(), what.size()), " \"",
                                                 absl::string_view(name.data(), name.size()),
                                                 "\" (valid: ", NameList(names), ")"));
}

// For a static_assert beside a table: every value from `first` to `last` (inclusive, by the
// underlying integer) has a name, so a value added inside that range without one fails to build.
template <typename E, size_t N>
constexpr bool NamesEveryValue(const EnumName<E> (&names)[N], E first, E last) {
  using U = std::underlying_type_t<E>;
  for (auto u = static_cast<long long>(static_cast<U>(first)); u <= static_cast<long long>(static_cast<U>(last)); ++u) {
    bool found = false;
    for (const EnumName<E>& e : names) found = found || static_cast<long long>(static_cast<U>(e.value)) == u;
    if (!found) return false;
  }
  return true;
}

}  // namespace accullm
