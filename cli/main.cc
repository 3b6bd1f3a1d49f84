// accullm: the command-line entry point. Each subcommand lives in its own file.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>

#include "cli/bench_command.h"
#include "cli/build_info.h"
#include "cli/chat_template_command.h"
#include "cli/crash_report.h"
#include "cli/eval_command.h"
#include "cli/generate_command.h"
#include "cli/logits_command.h"
#include "cli/quantize_command.h"
#include "cli/serve_command.h"
#include "cli/tokenize_command.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  // A crash leaves its stack on stderr, not only "Segmentation fault".
  accullm::cli::InstallCrashReport(argv[0]);
  // Logs go to stderr: stdout carries only a command's output (generated text, ids, JSON).
  spdlog::set_default_logger(spdlog::stderr_color_mt("accullm"));
  CLI::App app{"AccuLLM: serve large language models at low-bit speed with full-precision answers"};
  app.require_subcommand(1);
  app.set_version_flag("--version", accullm::VersionString());
  app.footer("Run `accullm COMMAND --help` for a command's options. With no --model the embedded\n"
             "default model (a small Llama trained on TinyStories) is used.");
  std::function<int()> run;
  accullm::cli::AddGenerateCommand(app, run);
  accullm::cli::AddTokenizeCommand(app, run);
  accullm::cli::AddLogitsCommand(app, run);
  accullm::cli::AddBenchCommand(app, run);
  accullm::cli::AddQuantizeCommand(app, run);
  accullm::cli::AddPlanCommand(app, run);
  accullm::cli::AddEvalCommand(app, run);
  accullm::cli::AddServeCommand(app, run);
  accullm::cli::AddChatTemplateCommand(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, like every other failure.
    std::fprintf(stderr, "error: %s (see --help)\n", e.what());
    return e.get_exit_code() != 0 ? e.get_exit_code() : 2;
  }
  return run ? run() : 2;
}
