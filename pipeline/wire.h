// The fixed-schema wire format between the coordinator and pipeline stages.
//
// Every message is a 24-byte header (magic "ACLM", version, type, flags, body size, batch
// id) followed by a body whose layout is fixed per type. Decoding trusts nothing: the body
// size must equal the bytes received minus the header, every count is checked against the
// bytes that remain before anything is allocated, every enum and range is validated, and
// trailing bytes are refused. Nothing generic (no pickling, no type tags chosen by the
// sender) is ever deserialized. Integers are little-endian, floats IEEE-754 binary32/64.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "kernels/kv_row_format.h"
#include "model/sampler.h"
#include "transport/transport.h"

namespace accullm::pipeline {

inline constexpr uint32_t kWireMagic = 0x4D4C4341;  // "ACLM" little-endian
// 2: hello.activation_transport, batch.activations_over_nccl; 3: batch.truncated; 4: opened
// sequences carry no prompt, every stage's batch carries its rows' token ids, a truncation no
// next token (the last stage's history is the tokens its KV positions were fed); 5: item.blocks
// (the scheduler owns the block table, the stages store the rows where it says); 6:
// hello.kv_dtype (the stages store KV rows in the coordinator's dtype: one byte, KvDType's
// stable values, after kv_blocks); 7: item.verify (speculative decoding: the last stage
// samples every row of a verification item); 8: opened.prefix_blocks and prefix_tokens (prefix
// caching: a sequence starts on cached blocks other sequences may read too).
inline constexpr uint16_t kWireVersion = 8;
inline constexpr size_t kHeaderBytes = 24;
using transport::kMaxMessageBytes;
// Alternatives a sequence may ask for per token. The API allows far fewer (its own limit); the
// coordinator's drift canaries ask for the whole distribution (vocab entries) to measure KL
// through the live pipeline. A Result's counts are bounded by its bytes as well.
inline constexpr int64_t kMaxTopLogprobs = 1 << 20;

enum class MessageType : uint16_t { kHello = 1, kHelloAck = 2, kBatch = 3, kResult = 4, kHeartbeat = 5, kShutdown = 6 };
const char* MessageTypeName(MessageType t);

// Activations on the wire are a DType restricted to F32 (the default, bit-identical to
// single-process), F16 or BF16 (half the bytes per hop, rounded at stage boundaries). Any
// other DType is refused where it enters: the --activations parser, the executor's config
// (CheckActivationDType) and the decoder. Each travels as one byte that wire version 3 fixed
// (0 F32, 1 F16, 2 BF16), mapped explicitly in wire.cc, not DType's own numbering.
absl::Status CheckActivationDType(DType t);
const char* ActivationDTypeName(DType t);  // the --activations spelling: "f32", "f16", "bf16"
absl::StatusOr<DType> ParseActivationDType(std::string_view name);

// How activations travel between stages: inline in the Batch over MPI (host memory), or over
// the NCCL channel (device buffers; only the descriptor goes over MPI). See docs/cluster.md.
enum class ActivationTransport : uint8_t { kMpi = 0, kNccl = 1 };
const char* ActivationTransportName(ActivationTransport t);
absl::StatusOr<ActivationTransport> ParseActivationTransport(std::string_view name);

// Coordinator → stage at startup: what this stage runs and what it must agree with.
struct Hello {
  uint32_t stage = 0, num_stages = 0;
  int64_t layer_begin = 0, layer_end = 0;
  int64_t num_layers = 0, hidden = 0, vocab = 0;
  uint64_t model_fingerprint = 0;
  int64_t kv_block_size = 0, kv_blocks = 0, context = 0;
  // How every stage stores its KV rows: the coordinator's --kv-cache-dtype, so no stage can
  // hold another dtype (its pool's bytes per block follow it).
  kernels::KvDType kv_dtype = kernels::KvDType::kF32;
  DType activations = DType::kF32;
  uint32_t heartbeat_ms = 0, timeout_ms = 0;
  ActivationTransport activation_transport = ActivationTransport::kMpi;
};

// Stage → coordinator: accepted, or refused with a reason (mismatched model, ...).
struct HelloAck {
  uint32_t stage = 0;
  uint64_t model_fingerprint = 0;
  bool ok = false;
  std::string message;
};

// A sequence joining the batch: the last stage needs its sampling state. No prompt: the
// prompt reaches the last stage as the token ids of the rows that prefill it, so it crosses
// each hop once, chunk by chunk, instead of whole in the opening batch.
// Prefix caching: a sequence may start on `prefix_blocks`, full blocks of positions
// [0, prefix_tokens.size()) that some sequence wrote earlier (the scheduler's cache found them
// by a hash of exactly these tokens). The stages take them read-only (shared with whoever else
// reads them; a stage refuses one it does not hold complete), the sequence's first item starts
// at prefix_tokens.size(), and the last stage's history starts with prefix_tokens (4 bytes a
// token, once per sequence: the penalties and the positions count them).
struct NewSequence {
  uint64_t seq = 0;
  model::SamplingParams sampling;
  int32_t logprobs = -1;
  std::vector<int32_t> prefix_blocks;
  std::vector<int32_t> prefix_tokens;  // prefix_blocks.size() × kv_block_size of them
};

// Rolls a sequence back: every stage keeps KV positions [0, length) and the first
// ceil(length / block_size) entries of the sequence's block table (the ids past them are free
// again: the scheduler sends a truncation only once no micro-batch in flight uses them), and the
// last stage's history (the tokens those positions were fed) its first `length` tokens. The
// token fed at position `length` next (speculative decoding's correction, or a preempted
// sequence's next input) comes as the next item's row, like any other.
struct Truncation {
  uint64_t seq = 0;
  int64_t length = 0;
};

// The scheduler owns every sequence's block table (which KV block ids hold its positions:
// position p is in the table's entry p / block_size); the stages store the rows there. An item
// carries the ids newly appended to the table for its rows: after it the table has exactly
// ceil((position + n_tokens) / block_size) entries, so a decode item carries one id every
// block_size steps and none otherwise. A stage refuses, before running, an id outside its pool
// (the decoder cannot know the pool: Hello::kv_blocks), an id some live sequence already
// holds (one request would read another's KV), and a table that does not end exactly there.
struct BatchItem {
  uint64_t seq = 0;
  int64_t position = 0;  // first position of this item's rows (the cache length before)
  int64_t n_tokens = 0;
  bool sample = false;          // the last stage samples a token after this item's last row
  std::vector<int32_t> blocks;  // block ids appended to the sequence's table, in order
  // Speculative decoding: the item's last `verify` rows are draft tokens (its rows are the
  // newest token, then the draft), and the last stage samples each of the last verify + 1
  // rows at its position and keeps the longest prefix of the draft equal to its own samples
  // (speculative/draft_verification.h): the result holds 1 .. verify + 1 tokens for the item,
  // the accepted draft tokens and the target's own next token. Needs `sample`, and
  // verify < n_tokens. The stage keeps every row; the scheduler sends the Truncation.
  int64_t verify = 0;
};

// One micro-batch on its way through the pipeline. Every stage receives the rows' token ids
// (`tokens`, one per row): stage 0 embeds them, later stages pass them on, and the last stage
// appends them to each sequence's history (what the repetition / presence / frequency
// penalties count): 4 bytes a row beside the activations' hidden × 2–4. Later stages also
// receive `activations` [rows, width] in `act` precision.
struct Batch {
  std::vector<NewSequence> opened;    // sequences to create before running (KV + sampler)
  std::vector<uint64_t> released;     // sequences to drop before running
  std::vector<Truncation> truncated;  // rollbacks to apply before running (after `released`)
  std::vector<BatchItem> items;
  std::vector<int32_t> tokens;
  DType act = DType::kF32;
  int64_t rows = 0, width = 0;
  bool activations_over_nccl = false;
  std::vector<uint8_t> activations;  // rows * width * size(act) bytes, or empty
};

struct SampledToken {
  uint64_t seq = 0;
  int32_t id = 0;
  float logprob = 0.f;
  std::vector<std::pair<int32_t, float>> top;
};

// Last stage → coordinator: the sampled tokens of one micro-batch, or why it failed: one per
// sampling item in item order, except a verification item's 1 .. verify + 1 consecutive
// tokens (all with its seq; a sequence has at most one item per batch).
struct Result {
  bool ok = true;
  std::string error;
  std::vector<SampledToken> tokens;
  double compute_seconds = 0;  // summed over stages, for the benchmark
};

struct Heartbeat {
  uint32_t stage = 0;
  uint64_t batches_done = 0;
  double compute_seconds = 0;  // this stage's total compute time so far
};

struct Shutdown {};

using Body = std::variant<Hello, HelloAck, Batch, Result, Heartbeat, Shutdown>;

struct Message {
  uint64_t batch_id = 0;
  Body body;
  MessageType type() const;
};

std::vector<uint8_t> Encode(const Message& m);
// Refuses (InvalidArgument, naming the problem) anything that is not exactly one well-formed
// message of a known type in `size` bytes.
absl::StatusOr<Message> Decode(const uint8_t* data, size_t size);

// Batch consistency beyond the byte layout: items cover exactly `rows` rows, every batch
// carries one token per row, a later stage's (`first_stage` false) activations are
// [rows, width]: inline when `transport` is kMpi, announced as following over NCCL (and not
// inline) when kNccl; stage 0 takes no activations.
absl::Status ValidateBatch(const Batch& b, bool first_stage, int64_t width,
                           ActivationTransport transport = ActivationTransport::kMpi);
// Bytes of the batch's activations (inline or over NCCL): rows * width * size(act).
size_t ActivationBytes(const Batch& b);

// Activation (de)serialization: FP32 rows → wire bytes in `t`, and back.
// `t` must be an activation dtype (CheckActivationDType).
std::vector<uint8_t> PackActivations(const float* x, size_t n, DType t);
void UnpackActivations(const std::vector<uint8_t>& bytes, DType t, float* out);

}  // namespace accullm::pipeline
