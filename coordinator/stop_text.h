// Per-sequence detokenization with stop sequences, for a scheduler that produces one token at
// a time: the same rules as model/generation.cc (text that may begin a stop sequence is held
// back; a found stop sequence cuts the text and ends the sequence), UTF-8 safe through
// StreamingDecoder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace accullm::coordinator {

class StopText {
 public:
  StopText(const text::Tokenizer& tokenizer, std::vector<std::string> stop)
      : decoder_(tokenizer), stop_(std::move(stop)) {}

  struct Piece {
    std::string text;      // newly final text (may be empty)
    bool stopped = false;  // a stop sequence was found: the sequence ends here
  };
  Piece Push(int32_t id);
  // At the end of a sequence not ended by a stop sequence: everything still held back.
  std::string Finish();

 private:
  text::StreamingDecoder decoder_;
  std::vector<std::string> stop_;
  std::string text_;    // all generated text so far
  size_t emitted_ = 0;  // bytes of text_ already returned
};

}  // namespace accullm::coordinator
