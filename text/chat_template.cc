#include "text/chat_template.h"

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/mapped_file.h"
#include "common/status.h"
#include "text/jinja.h"

namespace accullm::text {
namespace {

constexpr char kDefaultTemplate[] =
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}";

// Special tokens appear as plain strings or as AddedToken objects {"content": ...}.
std::string TokenString(const boost::json::object& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->value().is_string()) return std::string(it->value().get_string());
  if (it->value().is_object()) {
    auto c = it->value().get_object().find("content");
    if (c != it->value().get_object().end() && c->value().is_string()) return std::string(c->value().get_string());
  }
  return "";
}

// "chat_template" is a string or a list of {name, template}; we use "default".
absl::StatusOr<std::string> TemplateField(const boost::json::value& v, const std::string& where) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_array()) {
    std::string names;
    for (const auto& entry : v.get_array()) {
      if (!entry.is_object()) continue;
      const auto& o = entry.get_object();
      auto name = o.find("name");
      auto tmpl = o.find("template");
      if (name == o.end() || !name->value().is_string() || tmpl == o.end() || !tmpl->value().is_string()) continue;
      if (name->value().get_string() == "default") return std::string(tmpl->value().get_string());
      absl::StrAppend(&names, names.empty() ? "" : ", ", std::string(name->value().get_string()));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": chat_template lists no \"default\" template (it has: ", names, ")"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": chat_template must be a string or a list of {name, template}"));
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromString(const std::string& source, const std::string& bos_token,
                                                      const std::string& eos_token) {
  ChatTemplate t;
  t.is_default_ = source.empty();
  ASSIGN_OR_RETURN(jinja::Template parsed, jinja::Template::Parse(t.is_default_ ? kDefaultTemplate : source));
  t.template_ = std::make_shared<const jinja::Template>(std::move(parsed));
  t.bos_token_ = bos_token;
  t.eos_token_ = eos_token;
  return t;
}

absl::StatusOr<ChatTemplate> ChatTemplate::Load(const std::string& model_dir, const std::string& override_file) {
  namespace fs = std::filesystem;
  std::string source, bos, eos;
  const fs::path dir(model_dir);
  const fs::path config_path = dir / "tokenizer_config.json";
  std::error_code ec;
  if (fs::exists(config_path, ec)) {
    ASSIGN_OR_RETURN(std::string text, ReadTextFile(config_path.string()));
    ASSIGN_OR_RETURN(boost::json::value config, ParseJson(text, config_path.string()));
    if (!config.is_object())
      return absl::InvalidArgumentError(absl::StrCat(config_path.string(), ": expected a JSON object"));
    const auto& obj = config.get_object();
    bos = TokenString(obj, "bos_token");
    eos = TokenString(obj, "eos_token");
    auto it = obj.find("chat_template");
    if (it != obj.end() && !it->value().is_null()) {
      ASSIGN_OR_RETURN(source, TemplateField(it->value(), config_path.string()));
    }
  } else if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("model directory not found: ", model_dir));
  }
  // Newer transformers versions save the template beside the config instead.
  if (source.empty() && override_file.empty()) {
    const fs::path jinja_path = dir / "chat_template.jinja";
    const fs::path json_path = dir / "chat_template.json";
    if (fs::exists(jinja_path, ec)) {
      ASSIGN_OR_RETURN(source, ReadTextFile(jinja_path.string()));
    } else if (fs::exists(json_path, ec)) {
      ASSIGN_OR_RETURN(std::string text, ReadTextFile(json_path.string()));
      ASSIGN_OR_RETURN(boost::json::value v, ParseJson(text, json_path.string()));
      if (v.is_object() && v.get_object().contains("chat_template")) {
        ASSIGN_OR_RETURN(source, TemplateField(v.get_object().at("chat_template"), json_path.string()));
      }
    }
  }
  if (!override_file.empty()) {
    ASSIGN_OR_RETURN(source, ReadTextFile(override_file));
    if (source.empty()) return absl::InvalidArgumentError(absl::StrCat(override_file, ": empty chat template"));
  }
  return FromString(source, bos, eos);
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt) const {
  boost::json::array arr;
  arr.reserve(messages.size());
  for (const ChatMessage& m : messages) {
    boost::json::object o;
    o["role"] = m.role;
    o["content"] = m.content;
    arr.push_back(std::move(o));
  }
  return RenderJson(arr, add_generation_prompt);
}

absl::StatusOr<std::string> ChatTemplate::RenderJson(const boost::json::value& messages, bool add_generation_prompt,
                                                     const boost::json::object& extra_variables) const {
  if (!template_) return absl::FailedPreconditionError("chat template not loaded");
  if (!messages.is_array()) return absl::InvalidArgumentError("chat template: messages must be a list");
  std::vector<std::pair<std::string, jinja::Value>> context = {
      {"messages", jinja::Value::FromJson(messages)},
      {"bos_token", jinja::Value::String(bos_token_)},
      {"eos_token", jinja::Value::String(eos_token_)},
      {"add_generation_prompt", jinja::Value::Bool(add_generation_prompt)},
      {"tools", jinja::Value::Null()},
      {"documents", jinja::Value::Null()},
  };
  for (const auto& kv : extra_variables)
    context.emplace_back(std::string(kv.key()), jinja::Value::FromJson(kv.value()));
  return template_->Render(context);
}

}  // namespace accullm::text
