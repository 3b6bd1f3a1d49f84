#include "coordinator/chat_prompt.h"

#include "text/chat_template.h"

namespace accullm::coordinator {

namespace {

// The model's chat template (tokenizer_config.json or --chat-template), or the documented
// default transcript for base models (model/chat_template.h).
class TemplateChatPrompt : public ChatPrompt {
 public:
  explicit TemplateChatPrompt(text::ChatTemplate t) : template_(std::move(t)) {}
  absl::StatusOr<std::string> Render(const std::vector<ChatTurn>& messages) const override {
    std::vector<text::ChatMessage> msgs;
    msgs.reserve(messages.size());
    for (const auto& m : messages) msgs.push_back(text::ChatMessage{m.role, m.content});
    return template_.Render(msgs, /*add_generation_prompt=*/true);
  }
  // The default transcript carries no special tokens: the tokenizer adds BOS.
  bool template_adds_special_tokens() const override { return !template_.is_default(); }
  std::string kind() const override { return template_.is_default() ? "default" : "template"; }

 private:
  text::ChatTemplate template_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChatPrompt>> ChatPrompt::Load(const std::string& model_dir,
                                                             const std::string& override_file) {
  auto t = text::ChatTemplate::Load(model_dir, override_file);
  if (!t.ok()) return t.status();
  return std::make_unique<TemplateChatPrompt>(std::move(*t));
}

}  // namespace accullm::coordinator
