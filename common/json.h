// JSON parsing with Status errors (Boost.JSON underneath) and typed field accessors that
// name the offending field, so a bad config.json or tokenizer.json gets a precise message.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "boost/json.hpp"

namespace accullm {

// A number for a JSON body, or null when it is NaN or ±Inf. JSON has no such numbers and
// Boost.JSON would write the bare words NaN / Infinity, which every strict parser rejects
// (JSON.parse, the OpenAI SDKs); null is also what JavaScript's JSON.stringify writes.
boost::json::value FiniteOrNull(double v);

// `what` names the source in errors, e.g. a file path.
absl::StatusOr<boost::json::value> ParseJson(std::string_view text, std::string_view what);

// Field accessors: NotFound when absent (only the Get* ones), InvalidArgument on wrong type.
absl::StatusOr<int64_t> GetInt(const boost::json::object& o, std::string_view key);
absl::StatusOr<double> GetNumber(const boost::json::object& o, std::string_view key);
absl::StatusOr<std::string> GetString(const boost::json::object& o, std::string_view key);
absl::StatusOr<bool> GetBool(const boost::json::object& o, std::string_view key);

// Optional variants: std::nullopt when absent or JSON null.
absl::StatusOr<std::optional<int64_t>> GetOptionalInt(const boost::json::object& o, std::string_view key);
absl::StatusOr<std::optional<double>> GetOptionalNumber(const boost::json::object& o, std::string_view key);
absl::StatusOr<std::optional<std::string>> GetOptionalString(const boost::json::object& o, std::string_view key);
absl::StatusOr<std::optional<bool>> GetOptionalBool(const boost::json::object& o, std::string_view key);

}  // namespace accullm
