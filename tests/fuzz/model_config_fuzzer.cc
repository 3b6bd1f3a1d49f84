// Door: config.json. A config that parses must describe a model the rest of the code can size
// without overflow: the checks below restate what ModelConfig::Parse promises.
#include <cstddef>
#include <cstdint>
#include <string>

#include "model/model_config.h"
#include "tests/fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace accullm;
  auto config = model::ModelConfig::Parse(std::string(reinterpret_cast<const char*>(data), size), "config.json");
  if (!config.ok()) return 0;
  const model::ModelConfig& c = *config;
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 ||
      c.head_dim <= 0 || c.intermediate_size <= 0)
    fuzz::Broken("config.json accepted with a non-positive dimension");
  for (int64_t v : {c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
                    c.intermediate_size, c.max_position_embeddings}) {
    if (v > (int64_t{1} << 24)) fuzz::Broken("config.json accepted with a dimension over 2^24 (products may overflow)");
  }
  if (c.head_dim % 2 != 0) fuzz::Broken("config.json accepted with an odd head_dim");
  if (c.num_heads % c.num_kv_heads != 0) fuzz::Broken("config.json accepted with heads not a multiple of kv heads");
  return 0;
}
