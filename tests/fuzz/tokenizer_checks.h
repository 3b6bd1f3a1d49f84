// What every tokenizer promises on any input (text/tokenizer.h), checked by the tokenizer fuzz
// targets: encoding never fails and yields ids inside the vocabulary; decoding yields valid
// UTF-8; the streaming decoder's pieces concatenate to Decode; arbitrary ids (unknown ones
// included) decode without failing.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_input.h"
#include "text/tokenizer.h"
#include "text/unicode_tables.h"

namespace accullm::fuzz {

inline void CheckDecode(const text::Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (bool skip : {true, false}) {
    const std::string whole = tok.Decode(ids, skip);
    if (!text::IsValidUtf8(whole)) Broken("Decode returned invalid UTF-8");
    text::StreamingDecoder stream(tok, skip);
    std::string pieces;
    for (int32_t id : ids) pieces += stream.Push(id);
    pieces += stream.Flush();
    if (pieces != whole) Broken("StreamingDecoder pieces differ from Decode");
  }
}

inline void CheckTokenizerOn(const text::Tokenizer& tok, std::string_view text) {
  const int32_t vocab = tok.vocab_size();
  for (bool add_special : {true, false}) {
    const std::vector<int32_t> ids = tok.Encode(text, add_special);
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab) Broken("Encode returned an id outside the vocabulary");
    }
    CheckDecode(tok, ids);
  }
  // The same bytes read as ids: unknown and negative ids are skipped, never a crash.
  std::vector<int32_t> raw(text.size() / 4);
  if (!raw.empty()) std::memcpy(raw.data(), text.data(), raw.size() * 4);
  for (int32_t& id : raw) {
    if (vocab > 0 && (id & 1)) id = static_cast<int32_t>(static_cast<uint32_t>(id) % static_cast<uint32_t>(vocab + 2));
  }
  CheckDecode(tok, raw);
}

}  // namespace accullm::fuzz
