#include "cli/logits_command.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "cli/cli_common.h"
#include "cli/model_loading.h"

namespace accullm::cli {

namespace {

struct LogitsFlags {
  std::string model, prompt_ids, out, mode = "prefill";
  int threads = 0;
  bool exact = false;
  ActQuantFlags act_quant;
  std::string sparsity = "on";
};

int RunLogits(const LogitsFlags& f) {
  auto activations_or = ActQuantFromFlags(f.act_quant, f.exact);
  if (!activations_or.ok()) return ReportError(activations_or.status());
  const kernels::ActQuantConfig activations = *activations_or;
  auto loaded = LoadModel(f.model.empty() ? DefaultModelDir() : f.model, f.threads, /*need_tokenizer=*/false,
                          {.exact = f.exact, .activations = activations, .sparsity = f.sparsity != "off"});
  if (!loaded.ok()) return ReportError(loaded.status());
  auto ids = ParseIdList(f.prompt_ids);
  if (!ids.ok()) return ReportError(ids.status());
  model::Transformer& model = *loaded->transformer;
  const int64_t vocab = model.config().vocab_size, n = static_cast<int64_t>(ids->size());
  std::vector<float> logits(static_cast<size_t>(n * vocab));
  model::KvCache cache = model.NewCache();
  if (f.mode == "prefill") {
    // The whole prompt in one batched pass.
    if (auto s = model.Forward(ids->data(), n, cache, logits.data(), /*all_positions=*/true); !s.ok())
      return ReportError(s);
  } else {
    // One token at a time through the KV cache: the decode path.
    for (int64_t i = 0; i < n; ++i) {
      if (auto s = model.Forward(ids->data() + i, 1, cache, logits.data() + i * vocab); !s.ok()) return ReportError(s);
    }
  }
  std::FILE* out = std::fopen(f.out.c_str(), "wb");
  if (out == nullptr) return ReportError(absl::PermissionDeniedError(absl::StrCat("cannot write ", f.out)));
  const size_t written = std::fwrite(logits.data(), sizeof(float), logits.size(), out);
  if (std::fclose(out) != 0 || written != logits.size()) {
    return ReportError(absl::DataLossError(absl::StrCat("short write to ", f.out)));
  }
  std::fprintf(stderr, "wrote %lld x %lld float32 logits to %s\n", static_cast<long long>(n),
               static_cast<long long>(vocab), f.out.c_str());
  return 0;
}

}  // namespace

void AddLogitsCommand(CLI::App& app, std::function<int()>& run) {
  auto flags = std::make_shared<LogitsFlags>();
  CLI::App* cmd = app.add_subcommand("logits", "Write the logits of every prompt position (raw float32)");
  cmd->footer("The output is little-endian float32 [tokens, vocab], row-major: for comparing engines.");
  cmd->add_option("--model", flags->model, "Model directory (default: the embedded model)");
  cmd->add_option("--prompt-ids", flags->prompt_ids, "Comma-separated token ids, used as given")->required();
  cmd->add_option("--out", flags->out, "Output file")->required();
  cmd->add_option("--mode", flags->mode, "prefill (one batched pass) or decode (one token at a time)")
      ->check(CLI::IsMember({"prefill", "decode"}))
      ->capture_default_str();
  AddActQuantFlags(*cmd, flags->act_quant);
  AddExactFlag(*cmd, flags->exact);
  AddSparsityFlag(*cmd, flags->sparsity);
  cmd->add_option("--threads,-t", flags->threads, "Compute threads (default: all cores)");
  cmd->callback([&run, flags] { run = [flags] { return RunLogits(*flags); }; });
}

}  // namespace accullm::cli
