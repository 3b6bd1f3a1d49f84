#include "text/stop_text.h"

#include <algorithm>

namespace accullm::text {

size_t StopPrefixHoldback(std::string_view text, const std::vector<std::string>& stop) {
  size_t hold = 0;
  for (const auto& s : stop) {
    for (size_t len = std::min(s.size() - 1, text.size()); len > hold; --len) {
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  return hold;
}

StopText::Piece StopText::Push(int32_t id) {
  Piece piece;
  text_ += decoder_.Push(id);
  for (const auto& s : stop_) {
    const size_t at = text_.find(s, emitted_ > s.size() ? emitted_ - s.size() : 0);
    if (at != std::string::npos) {
      text_.resize(at);
      piece.stopped = true;
    }
  }
  const size_t hold = piece.stopped ? 0 : StopPrefixHoldback(text_, stop_);
  if (text_.size() - hold > emitted_) {
    piece.text = text_.substr(emitted_, text_.size() - hold - emitted_);
    emitted_ = text_.size() - hold;
  }
  return piece;
}

std::string StopText::Finish() {
  text_ += decoder_.Flush();
  std::string rest = text_.size() > emitted_ ? text_.substr(emitted_) : std::string();
  emitted_ = text_.size();
  return rest;
}

}  // namespace accullm::text
