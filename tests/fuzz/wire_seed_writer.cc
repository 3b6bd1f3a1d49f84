// Writes the wire fuzzer's seed corpus: one well-formed message of every type (raw mode: the
// byte 0x01, then the message), so that libFuzzer starts from valid headers and bodies.
// Usage: wire_seed_writer DIR (run once; the files are in tests/fuzz/corpus/wire).
#include <cstdio>
#include <fstream>
#include <string>

#include "pipeline/wire.h"

using namespace accullm;
using namespace accullm::pipeline;

static void Write(const std::string& dir, const std::string& name, const Message& m) {
  const auto bytes = Encode(m);
  std::ofstream f(dir + "/" + name, std::ios::binary);
  f.put(1);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: wire_seed_writer DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  Hello h;
  h.stage = 1, h.num_stages = 2, h.layer_begin = 4, h.layer_end = 8, h.num_layers = 8, h.hidden = 64, h.vocab = 512;
  h.model_fingerprint = 0x1234, h.kv_block_size = 16, h.kv_blocks = 64, h.context = 256;
  h.heartbeat_ms = 1000, h.timeout_ms = 10000;
  Write(dir, "hello", {1, h});
  Write(dir, "hello_ack", {1, HelloAck{1, 0x1234, false, "model mismatch"}});
  Batch b;
  NewSequence s;
  s.seq = 3;
  s.logprobs = 2;
  b.opened.push_back(s);
  b.released = {1};
  b.truncated.push_back({2, 5});
  BatchItem item;
  item.seq = 3, item.position = 0, item.n_tokens = 2, item.sample = true, item.blocks = {0};
  b.items.push_back(item);
  BatchItem verify;
  verify.seq = 2, verify.position = 5, verify.n_tokens = 2, verify.sample = true, verify.verify = 1;
  b.items.push_back(verify);
  b.tokens = {10, 11, 12, 13};
  b.rows = 4, b.width = 2, b.act = DType::kF16;
  const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  b.activations = PackActivations(x, 8, DType::kF16);
  Write(dir, "batch", {2, b});
  Batch first;
  first.items.push_back(item);
  first.tokens = {10, 11};
  first.rows = 2;
  Write(dir, "batch_first_stage", {3, first});
  Result r;
  r.tokens.push_back({3, 42, -0.5f, {{42, -0.5f}, {7, -1.5f}}});
  r.compute_seconds = 0.25;
  Write(dir, "result", {2, r});
  Result failed;
  failed.ok = false;
  failed.error = "stage 1: out of KV blocks";
  Write(dir, "result_error", {2, failed});
  Write(dir, "heartbeat", {0, Heartbeat{1, 10, 1.5}});
  Write(dir, "shutdown", {0, Shutdown{}});
  return 0;
}
