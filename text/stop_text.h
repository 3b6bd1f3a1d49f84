// Detokenization with stop sequences, one token at a time, for every generation loop: text
// that may begin a stop sequence is held back; a found stop sequence cuts the text and ends
// the sequence. UTF-8 safe through StreamingDecoder.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "text/tokenizer.h"

namespace accullm::text {

class StopText {
 public:
  StopText(const Tokenizer& tokenizer, std::vector<std::string> stop) : decoder_(tokenizer), stop_(std::move(stop)) {}

  struct Piece {
    std::string text;      // newly final text (may be empty)
    bool stopped = false;  // a stop sequence was found: the sequence ends here
  };
  Piece Push(int32_t id);
  // At the end of a sequence not ended by a stop sequence: everything still held back.
  std::string Finish();
  // All final text so far (cut before a stop sequence once one was found).
  const std::string& text() const { return text_; }

 private:
  StreamingDecoder decoder_;
  std::vector<std::string> stop_;
  std::string text_;    // all generated text so far
  size_t emitted_ = 0;  // bytes of text_ already returned
};

// Length of the longest suffix of `text` that is a proper prefix of some stop string: text
// that must be held back because a stop sequence may be starting there.
size_t StopPrefixHoldback(std::string_view text, const std::vector<std::string>& stop);

}  // namespace accullm::text
