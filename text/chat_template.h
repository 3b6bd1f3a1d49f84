// Chat templates: turns a conversation into the prompt text a model was trained on, with
// the model's own Jinja template (tokenizer_config.json "chat_template"), rendered the way
// Hugging Face renders it (see model/jinja.h for the engine and its reference).
//
// The template sees: messages (list of {role, content}), bos_token, eos_token,
// add_generation_prompt, and tools / documents = none (as transformers passes them when a
// request has none). Undefined variables render as nothing and are false.
//
// A model without a template gets this documented default, a plain transcript:
//   "<role>: <content>\n" per message, then "assistant:" when add_generation_prompt.
// (No BOS: the tokenizer adds it when encoding.)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "boost/json.hpp"

namespace accullm::text {

namespace jinja {
class Template;
}

struct ChatMessage {
  std::string role;
  std::string content;
};

class ChatTemplate {
 public:
  // Reads `model_dir`/tokenizer_config.json: "chat_template" (a string, or a list of
  // {name, template} from which "default" is taken), else chat_template.jinja /
  // chat_template.json beside it, plus bos_token / eos_token (strings or {"content": ...}).
  // A missing tokenizer_config.json means no template and empty BOS/EOS.
  // `override_file` (may be empty) replaces the template. A template that does not parse
  // → InvalidArgument with line and column.
  static absl::StatusOr<ChatTemplate> Load(const std::string& model_dir, const std::string& override_file = "");
  // From template text; empty `source` means the default template.
  static absl::StatusOr<ChatTemplate> FromString(const std::string& source, const std::string& bos_token,
                                                 const std::string& eos_token);

  // A template that fails to render → InvalidArgument; raise_exception('msg') in the
  // template → InvalidArgument whose message is exactly "msg". Rendering is bounded in
  // time and memory (jinja::RenderLimits), so a hostile template cannot hang the server.
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  // The same with messages as arbitrary JSON objects (tool_calls, reasoning_content...) and
  // extra template variables (e.g. tools, date_string, enable_thinking), which override the
  // defaults above. `messages` must be an array.
  absl::StatusOr<std::string> RenderJson(const boost::json::value& messages, bool add_generation_prompt,
                                         const boost::json::object& extra_variables = {}) const;

  bool is_default() const { return is_default_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }

 private:
  std::shared_ptr<const jinja::Template> template_;
  std::string bos_token_, eos_token_;
  bool is_default_ = false;
};

}  // namespace accullm::text
