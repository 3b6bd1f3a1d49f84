#include "cli/chat_template_command.h"

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "cli/cli_common.h"
#include "common/json.h"
#include "common/mapped_file.h"
#include "text/chat_template.h"

namespace accullm::cli {
namespace {

struct ChatTemplateOptions {
  std::string model;
  std::string template_file;
  std::string messages_file;
  bool no_generation_prompt = false;
};

int Run(const ChatTemplateOptions& opt) {
  const std::string dir = opt.model.empty() ? DefaultModelDir() : opt.model;
  auto tmpl = text::ChatTemplate::Load(dir, opt.template_file);
  if (!tmpl.ok()) return ReportError(tmpl.status());
  auto text = ReadTextFile(opt.messages_file);
  if (!text.ok()) return ReportError(text.status());
  auto json = ParseJson(*text, opt.messages_file);
  if (!json.ok()) return ReportError(json.status());
  boost::json::value messages;
  boost::json::object extra;
  if (json->is_array()) {
    messages = *json;
  } else if (json->is_object() && json->get_object().contains("messages")) {
    extra = json->get_object();
    messages = extra["messages"];
    extra.erase("messages");
  } else {
    return ReportError(absl::InvalidArgumentError(
        absl::StrCat(opt.messages_file, ": expected a list of messages or an object with \"messages\"")));
  }
  auto prompt = tmpl->RenderJson(messages, !opt.no_generation_prompt, extra);
  if (!prompt.ok()) return ReportError(prompt.status());
  std::fwrite(prompt->data(), 1, prompt->size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

void AddChatTemplateCommand(CLI::App& app, std::function<int()>& run) {
  auto opt = std::make_shared<ChatTemplateOptions>();
  CLI::App* cmd = app.add_subcommand("chat-template", "Render a conversation with a model's chat template");
  cmd->add_option("--model", opt->model, "model directory holding tokenizer_config.json (default: the embedded model)");
  cmd->add_option("--template", opt->template_file, "Jinja file that replaces the model's chat template");
  cmd->add_option("--messages", opt->messages_file, "JSON file: a list of messages, or {\"messages\": [...], ...}")
      ->required();
  cmd->add_flag("--no-generation-prompt", opt->no_generation_prompt,
                "do not end with the assistant's turn header (add_generation_prompt=false)");
  cmd->callback([opt, &run] { run = [opt] { return Run(*opt); }; });
}

}  // namespace accullm::cli
