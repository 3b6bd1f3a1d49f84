// Door: tokenizer.json (and tokenizer_config.json beside it). The input is tokenizer.json, the
// split line, tokenizer_config.json, the split line, then text. A tokenizer that loads encodes
// the text, and decoding obeys what tokenizer.h promises (see tokenizer_text_fuzzer.cc).
#include <cstddef>
#include <cstdint>
#include <string>

#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/tokenizer_checks.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace accullm;
  const auto parts = fuzz::SplitInput(data, size, 3);
  auto tokenizer = text::Tokenizer::FromJson(parts[0], parts[1]);
  if (!tokenizer.ok()) return 0;
  fuzz::CheckTokenizerOn(**tokenizer, parts[2]);
  return 0;
}
