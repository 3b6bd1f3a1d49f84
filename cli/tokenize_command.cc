#include "cli/tokenize_command.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "boost/json.hpp"
#include "cli/cli_common.h"
#include "common/json.h"
#include "text/tokenizer.h"

namespace accullm::cli {
namespace {

struct TokenizeOptions {
  std::string tokenizer;
  std::string text;
  std::string file;
  std::string jsonl;
  std::string decode;
  bool no_special = false;
};

std::string IdsToJson(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&out, i ? ", " : "", ids[i]);
  out += "]";
  return out;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return ss.str();
}

int Run(const TokenizeOptions& opt) {
  const std::string source = opt.tokenizer.empty() ? DefaultModelDir() : opt.tokenizer;
  auto tok = text::Tokenizer::Load(source);
  if (!tok.ok()) return ReportError(tok.status());
  const text::Tokenizer& t = **tok;
  const bool add_special = !opt.no_special;

  if (!opt.decode.empty()) {
    auto ids = ParseIdList(opt.decode);
    if (!ids.ok()) return ReportError(ids.status());
    std::string text = t.Decode(*ids, /*skip_special=*/add_special);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  if (!opt.jsonl.empty()) {
    std::ifstream in(opt.jsonl, std::ios::binary);
    if (!in) return ReportError(absl::NotFoundError(absl::StrCat("cannot open ", opt.jsonl)));
    std::string line, out;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string what = absl::StrCat(opt.jsonl, " line ", n);
      auto v = ParseJson(line, what);
      if (!v.ok()) return ReportError(v.status());
      if (!v->is_string())
        return ReportError(absl::InvalidArgumentError(absl::StrCat(what, ": expected a JSON string")));
      const boost::json::string& s = v->as_string();
      out = IdsToJson(t.Encode(std::string_view(s.data(), s.size()), add_special));
      out += '\n';
      std::fwrite(out.data(), 1, out.size(), stdout);
    }
    if (in.bad()) return ReportError(absl::DataLossError(absl::StrCat("cannot read ", opt.jsonl)));
    return 0;
  }
  std::string text = opt.text;
  if (!opt.file.empty()) {
    auto content = ReadWholeFile(opt.file);
    if (!content.ok()) return ReportError(content.status());
    text = std::move(*content);
  }
  const std::string out = IdsToJson(t.Encode(text, add_special)) + "\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

void AddTokenizeCommand(CLI::App& app, std::function<int()>& run) {
  auto opt = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array (or decode ids)");
  cmd->add_option("--tokenizer,--model", opt->tokenizer,
                  "tokenizer.json, or a model directory holding one (default: the embedded model)");
  auto* text = cmd->add_option("--text", opt->text, "text to tokenize");
  auto* file = cmd->add_option("--file", opt->file, "file whose whole content is tokenized");
  auto* jsonl = cmd->add_option("--jsonl", opt->jsonl, "file of JSON strings, one per line; prints one array per line");
  auto* decode = cmd->add_option("--decode", opt->decode, "comma-separated ids to decode to text instead");
  text->excludes(file)->excludes(jsonl)->excludes(decode);
  file->excludes(jsonl)->excludes(decode);
  jsonl->excludes(decode);
  cmd->add_flag("--no-special,--no-bos", opt->no_special,
                "do not add BOS/EOS (the post-processor's special tokens); with --decode, keep special tokens");
  cmd->callback([opt, text, file, jsonl, decode, &run] {
    run = [opt, given = text->count() + file->count() + jsonl->count() + decode->count()] {
      if (given == 0)
        return ReportError(absl::InvalidArgumentError("tokenize needs one of --text, --file, --jsonl, --decode"));
      return Run(*opt);
    };
  });
}

}  // namespace accullm::cli
