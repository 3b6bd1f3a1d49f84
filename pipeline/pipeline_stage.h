// A pipeline stage (ranks 1..N under mpirun): owns a contiguous layer range and the KV
// rows of those layers, stored in the blocks the scheduler names (wire.h BatchItem::blocks:
// the scheduler's pool is the one allocator, the stage keeps each sequence's block table over
// its KvBlockStorage and an owner per block), runs its part of every micro-batch in arrival
// order, forwards the activations to the next stage; the last stage applies final norm + LM
// head, samples, and sends only token ids (and logprobs when asked) back to the coordinator
// (rank 0).
// With --activation-transport nccl the activations go over NCCL (host -> device -> ncclSend,
// ncclRecv -> device -> host) and only the batch descriptor over the transport.
// A heartbeat thread reports to the coordinator every Hello::heartbeat_ms; a coordinator
// silent for twice Hello::timeout_ms ends the stage (never a hang; time the stage itself was
// not running does not count, see stall_meter.h).
//
// The stage's work on one message is PipelineStage::Run; RunPipelineStage is the loop around
// it for a stage that is a rank of its own (MPI, or a thread over the in-process transport).
// The embedded default calls Run directly on the scheduler's thread (embedded_pipeline.h):
// one stage, nothing to hand the batch to.
#pragma once

#include <atomic>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "model/kv_cache.h"
#include "model/transformer.h"
#include "pipeline/kv_block_owners.h"
#include "pipeline/stage_activity.h"
#include "pipeline/wire.h"
#include "transport/mpi_transport.h"
#include "transport/nccl_channel.h"
#include "transport/transport.h"

namespace accullm::pipeline {

class SequenceSampling;

class PipelineStage {
 public:
  // `hello` must have been accepted (CheckHello); `rank` is this stage's rank (stage + 1).
  PipelineStage(model::Transformer& model, const Hello& hello, int rank);
  ~PipelineStage();
  PipelineStage(const PipelineStage&) = delete;
  PipelineStage& operator=(const PipelineStage&) = delete;

  // Runs this stage's part of one micro-batch (`b` is consumed) and returns the message it
  // produces: the Batch for the next stage (activations inline; the caller moves them over
  // NCCL when the hello says so), or, on the last stage, the Result for the coordinator.
  // An error means the batch was refused or failed: the stage must not run again. Refused
  // before anything runs: an unknown sequence, an item not at its sequence's length, past the
  // context, or whose block ids lie outside this stage's pool, are held by a live sequence, or
  // do not make the table end exactly at the item's last position's block.
  absl::StatusOr<Message> Run(uint64_t batch_id, Batch& b);

  // Activations from the previous stage arrive over `c` (not owned) instead of inline.
  void set_nccl(transport::NcclChannel* c) { nccl_ = c; }
  uint64_t batches_done() const { return batches_done_.load(); }
  uint64_t rows_done() const { return rows_done_.load(); }
  double compute_seconds() const { return compute_us_.load() / 1e6; }
  // KV blocks held by live sequences, blocks in the storage, live sequences (stage thread only).
  int64_t kv_blocks_used() const { return owners_.held(); }
  int64_t kv_blocks_total() const { return storage_.num_blocks(); }
  int64_t sequences() const { return static_cast<int64_t>(seqs_.size()); }
  // The stage's start and shutdown log lines (the same in every mode; the shutdown line's
  // stats are what bench/pipeline_bench.sh reads). `bytes_sent`: what this stage sent.
  void LogStart() const;
  // Lays out this stage's low-bit linears for the integer kernels (layers and, on the last
  // stage, the head), logging the time taken; a no-op for what is already laid out.
  void PrepareKernels();
  void LogShutdown(uint64_t bytes_sent) const;

 private:
  struct Seq {
    std::unique_ptr<model::KvBlockTable> table;
    std::unique_ptr<SequenceSampling> sampling;  // last stage only
    uint64_t last_run = 0;                       // the Run that last named it in an item
    size_t shared = 0;                           // its table's first blocks are a cached prefix it reads, never writes
  };
  // Creates sequence `o` (on its cached prefix, if any).
  absl::Status Open(const NewSequence& o);
  // Forgets `seq` (if known) and frees its blocks.
  void Drop(uint64_t seq);
  // Checks item `it` of the current batch against its sequence and appends its block ids.
  absl::Status AdmitItem(const BatchItem& it, Seq& s);
  model::Transformer& model_;
  Hello hello_;
  int rank_;
  transport::NcclChannel* nccl_ = nullptr;
  model::KvBlockStorage storage_;  // this stage's layers only
  KvBlockOwners owners_;
  bool last_;
  std::unordered_map<uint64_t, Seq> seqs_;
  uint64_t runs_ = 0;
  std::vector<float> hidden_, rows_, logits_;
  std::atomic<uint64_t> batches_done_{0}, rows_done_{0};
  std::atomic<uint64_t> compute_us_{0};
};

// This stage's answer to `hello`, as rank `rank` of `size` with `model` loaded: refused (with
// the reason) when the model, the place in the pipeline, the context or the stage's weights
// do not fit, or when NCCL is asked for and this rank cannot do it (`mpi`: see below).
HelloAck CheckHello(const Hello& hello, model::Transformer& model, int rank, int size, transport::MpiTransport* mpi);

// Returns the process exit status: 0 after Shutdown, non-zero on failure (logged).
// `mpi` (the same transport, when it is MPI) is needed for --activation-transport nccl: the
// stage then refuses the hello unless this build has NCCL and this host a CUDA device, and
// after the handshake joins the NCCL bootstrap (transport/nccl_channel.h).
// `activity` (optional, not owned) is kept up to date for another thread to read (metrics).
int RunPipelineStage(transport::Transport& transport, model::Transformer& model, transport::MpiTransport* mpi = nullptr,
                     StageActivity* activity = nullptr);

}  // namespace accullm::pipeline
