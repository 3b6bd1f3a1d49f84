// Door: text a client sends, through a real tokenizer (the repository's Llama-style
// SentencePiece BPE, models/tinystories-llama/tokenizer.json): arbitrary bytes encode without
// failing, and decoding obeys what tokenizer.h promises (tokenizer_checks.h).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/tokenizer_checks.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace accullm;
  static const std::unique_ptr<text::Tokenizer> tokenizer = [] {
    auto t = text::Tokenizer::Load(ACCULLM_SOURCE_DIR "/models/tinystories-llama/tokenizer.json");
    if (!t.ok()) fuzz::Broken("cannot load models/tinystories-llama/tokenizer.json");
    return std::move(*t);
  }();
  fuzz::CheckTokenizerOn(*tokenizer, std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
