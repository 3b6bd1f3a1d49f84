#include "coordinator/api_error.h"

#include "boost/json.hpp"

namespace accullm::coordinator {

std::string ApiError::ToJson() const {
  boost::json::object e;
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? boost::json::value(nullptr) : boost::json::value(param);
  e["code"] = code.empty() ? boost::json::value(nullptr) : boost::json::value(code);
  boost::json::object root;
  root["error"] = std::move(e);
  return boost::json::serialize(root);
}

ApiError BadRequest(std::string message, std::string param, std::string code) {
  return ApiError{400, "invalid_request_error", std::move(message), std::move(param), std::move(code)};
}

ApiError FromStatus(const absl::Status& status) {
  const std::string msg(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: return BadRequest(msg);
    case absl::StatusCode::kResourceExhausted: return ApiError{429, "rate_limit_error", msg, "", "queue_full"};
    case absl::StatusCode::kUnavailable: return ApiError{503, "service_unavailable_error", msg, "", "unavailable"};
    case absl::StatusCode::kNotFound: return ApiError{404, "not_found_error", msg, "", ""};
    default: return ApiError{500, "internal_error", msg, "", ""};
  }
}

}  // namespace accullm::coordinator
