// Door: a chat template (Jinja, from tokenizer_config.json or --chat-template) rendered with
// arbitrary messages. The input is the template, the split line, then a JSON array of messages
// (when it is not one, a fixed two-message conversation is used). Parsing and rendering must
// end in a Status, within RenderLimits, never a crash or a hang.
//
// It renders with the context ChatTemplate::RenderJson builds (messages, bos_token, eos_token,
// add_generation_prompt, tools and documents none), through jinja::Template directly, so that
// the limits can be smaller than the server's: the server's (5,000,000 steps, 32 MiB) take
// ~20 s per render under ASan, and a bounded loop is not a finding; the code paths are the same.
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "boost/json.hpp"
#include "tests/fuzz/fuzz_input.h"
#include "text/jinja.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace accullm;
  using text::jinja::Value;
  const auto parts = fuzz::SplitInput(data, size, 2);
  auto tmpl = text::jinja::Template::Parse(parts[0]);
  if (!tmpl.ok()) return 0;
  boost::system::error_code ec;
  boost::json::value messages = boost::json::parse(parts[1], ec);
  if (ec || !messages.is_array()) {
    messages = boost::json::array{boost::json::object{{"role", "system"}, {"content", "be brief"}},
                                  boost::json::object{{"role", "user"}, {"content", std::string(parts[1])}}};
  }
  text::jinja::RenderOptions options;
  options.limits.max_output_bytes = 1 << 20;
  options.limits.max_items = 1 << 14;
  options.limits.max_steps = 200'000;
  options.now = [] { return int64_t{1764547200}; };  // fixed: reproducible inputs
  for (bool add_generation_prompt : {false, true}) {
    const std::vector<std::pair<std::string, Value>> context = {
        {"messages", Value::FromJson(messages)},          {"bos_token", Value::String("<s>")},
        {"eos_token", Value::String("</s>")},             {"add_generation_prompt", Value::Bool(add_generation_prompt)},
        {"tools", Value::Null()},                         {"documents", Value::Null()},
    };
    auto out = tmpl->Render(context, options);
    if (out.ok() && out->size() > options.limits.max_output_bytes) fuzz::Broken("render output over max_output_bytes");
  }
  return 0;
}
