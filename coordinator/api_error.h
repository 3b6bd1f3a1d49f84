// OpenAI-style errors: an HTTP status and the {"error": {...}} body clients parse.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace accullm::coordinator {

struct ApiError {
  int http_status = 400;
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;  // empty → null
  std::string code;   // empty → null

  // {"error": {"message", "type", "param", "code"}} serialized.
  std::string ToJson() const;
};

ApiError BadRequest(std::string message, std::string param = "", std::string code = "");
// Maps a Status from a lower layer: InvalidArgument/OutOfRange → 400, ResourceExhausted → 429,
// Unavailable → 503, NotFound → 404, anything else → 500.
ApiError FromStatus(const absl::Status& status);

}  // namespace accullm::coordinator
