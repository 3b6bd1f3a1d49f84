// Turns chat messages into the prompt text the model was trained on.
//
// With a template (tokenizer_config.json's "chat_template", or --chat-template FILE) it is
// rendered by model/chat_template.h when this build has it. A model without a template gets
// the documented default for base models:
//   "<role>: <content>\n" per message, then "assistant:" when a reply is wanted.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/openai_request.h"

namespace accullm::coordinator {

class ChatPrompt {
 public:
  // `override_file` (may be empty): a Jinja template file that replaces the model's.
  static absl::StatusOr<std::unique_ptr<ChatPrompt>> Load(const std::string& model_dir,
                                                          const std::string& override_file);
  virtual ~ChatPrompt() = default;

  virtual absl::StatusOr<std::string> Render(const std::vector<ChatTurn>& messages) const = 0;
  // True when the rendered text carries its own special tokens (BOS...): encode it without
  // adding them again.
  virtual bool template_adds_special_tokens() const = 0;
  // "default" or "template".
  virtual std::string kind() const = 0;
};

// The default for models without a template.

}  // namespace accullm::coordinator
