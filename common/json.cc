#include "common/json.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace accullm {
namespace json = boost::json;

json::value FiniteOrNull(double v) { return std::isfinite(v) ? json::value(v) : json::value(nullptr); }

absl::StatusOr<json::value> ParseJson(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 64;  // deep nesting is never legitimate in our inputs
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, opts);
  if (ec) return absl::InvalidArgumentError(absl::StrCat(std::string(what), ": invalid JSON: ", ec.message()));
  return v;
}

namespace {

const json::value* Find(const json::object& o, std::string_view key) {
  auto it = o.find(json::string_view(key.data(), key.size()));
  if (it == o.end() || it->value().is_null()) return nullptr;
  return &it->value();
}

absl::Status WrongType(std::string_view key, std::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat("field \"", std::string(key), "\" must be ", std::string(want)));
}

absl::StatusOr<int64_t> AsInt(const json::value& v, std::string_view key) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<uint64_t>(INT64_MAX)) return static_cast<int64_t>(v.get_uint64());
  if (v.is_double()) {  // 1e4 style integers appear in real configs
    const double d = v.get_double();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15) return static_cast<int64_t>(d);
  }
  return WrongType(key, "an integer");
}

absl::StatusOr<double> AsNumber(const json::value& v, std::string_view key) {
  if (v.is_number()) return v.to_number<double>();
  return WrongType(key, "a number");
}

}  // namespace

absl::StatusOr<std::optional<int64_t>> GetOptionalInt(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (!v) return std::optional<int64_t>();
  auto r = AsInt(*v, key);
  if (!r.ok()) return r.status();
  return std::optional<int64_t>(*r);
}

absl::StatusOr<std::optional<double>> GetOptionalNumber(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (!v) return std::optional<double>();
  auto r = AsNumber(*v, key);
  if (!r.ok()) return r.status();
  return std::optional<double>(*r);
}

absl::StatusOr<std::optional<std::string>> GetOptionalString(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (!v) return std::optional<std::string>();
  if (!v->is_string()) return WrongType(key, "a string");
  return std::optional<std::string>(std::string(v->get_string()));
}

absl::StatusOr<std::optional<bool>> GetOptionalBool(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (!v) return std::optional<bool>();
  if (!v->is_bool()) return WrongType(key, "true or false");
  return std::optional<bool>(v->get_bool());
}

#define ACCULLM_REQUIRED(Type, Getter)                                                                       \
  auto r = Getter(o, key);                                                                                   \
  if (!r.ok()) return r.status();                                                                            \
  if (!r->has_value()) return absl::NotFoundError(absl::StrCat("missing field \"", std::string(key), "\"")); \
  return **r;

absl::StatusOr<int64_t> GetInt(const json::object& o, std::string_view key){
    ACCULLM_REQUIRED(int64_t, GetOptionalInt)} absl::StatusOr<double> GetNumber(const json::object& o,
                                                                                std::string_view key){
    ACCULLM_REQUIRED(double, GetOptionalNumber)} absl::StatusOr<std::string> GetString(const json::object& o,
                                                                                       std::string_view key){
    ACCULLM_REQUIRED(std::string, GetOptionalString)} absl::StatusOr<bool> GetBool(const json::object& o,
                                                                                   std::string_view key) {
  ACCULLM_REQUIRED(bool, GetOptionalBool)
}
#undef ACCULLM_REQUIRED

}  // namespace accullm
