#include "pipeline/pipeline_stage.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <thread>
#include <unordered_map>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "pipeline/sequence_sampling.h"
#include "pipeline/stall_meter.h"
#include "pipeline/wire.h"
#include "sharding/stage_plan.h"
#include "spdlog/spdlog.h"
#include "transport/nccl_channel.h"

namespace accullm::pipeline {

namespace {

using Clock = std::chrono::steady_clock;
using pipeline::Batch;
using pipeline::Message;

// A transfer over NCCL not matched within this long fails the stage (never a hang).
constexpr std::chrono::milliseconds kNcclTimeout{60000};

}  // namespace

PipelineStage::PipelineStage(model::Transformer& m, const Hello& h, int rank)
    : model_(m), hello_(h), rank_(rank),
      storage_(h.layer_end - h.layer_begin, m.kv_format(h.kv_dtype), h.kv_block_size, h.kv_blocks, h.layer_begin),
      owners_(h.kv_blocks), last_(h.stage + 1 == h.num_stages) {}

PipelineStage::~PipelineStage() = default;

void PipelineStage::Drop(uint64_t seq) {
  auto s = seqs_.find(seq);
  if (s == seqs_.end()) return;
  const std::vector<int32_t>& blocks = s->second.table->blocks();
  const auto split = blocks.begin() + static_cast<std::ptrdiff_t>(s->second.shared);
  owners_.Unshare(std::vector<int32_t>(blocks.begin(), split));
  owners_.Free(std::vector<int32_t>(split, blocks.end()));
  seqs_.erase(s);
}

absl::Status PipelineStage::Open(const NewSequence& o) {
  if (seqs_.count(o.seq) != 0) return absl::InvalidArgumentError(absl::StrCat("sequence ", o.seq, " opened twice"));
  const int64_t prefix = static_cast<int64_t>(o.prefix_tokens.size());
  if (prefix != static_cast<int64_t>(o.prefix_blocks.size()) * hello_.kv_block_size || prefix > hello_.context)
    return absl::InvalidArgumentError(absl::StrCat("sequence ", o.seq, ": a cached prefix of ", o.prefix_blocks.size(),
                                                   " blocks and ", prefix, " tokens"));
  for (int32_t tok : o.prefix_tokens)
    if (tok >= model_.config().vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("token id ", tok, " is outside the vocabulary"));
  RETURN_IF_ERROR(owners_.Share(o.seq, o.prefix_blocks));
  Seq s;
  s.table = std::make_unique<model::KvBlockTable>(&storage_);
  s.table->Append(o.prefix_blocks);
  s.table->set_length(prefix);
  s.shared = o.prefix_blocks.size();
  if (last_) {
    s.sampling = std::make_unique<SequenceSampling>(SequenceSetup{o.seq, o.sampling, o.logprobs, {}, {}});
    s.sampling->Append(o.prefix_tokens.data(), prefix);
  }
  seqs_.emplace(o.seq, std::move(s));
  return absl::OkStatus();
}

absl::Status PipelineStage::AdmitItem(const BatchItem& it, Seq& s) {
  if (s.last_run == runs_)
    return absl::InvalidArgumentError(absl::StrCat("sequence ", it.seq, " appears twice in one batch"));
  s.last_run = runs_;
  model::KvBlockTable& table = *s.table;
  if (it.position != table.length())
    return absl::InvalidArgumentError(
        absl::StrCat("sequence ", it.seq, " at position ", it.position, ", this stage's cache holds ", table.length()));
  if (it.position + it.n_tokens > hello_.context)
    return absl::InvalidArgumentError(absl::StrCat("sequence ", it.seq, " exceeds the context"));
  // The table must end at the block of the item's last position: shorter would leave rows
  // nowhere to go, longer would hold blocks no position uses (and that a truncation, which
  // keeps ceil(length / block_size), would drop out of step with the scheduler).
  const int64_t want = (it.position + it.n_tokens + hello_.kv_block_size - 1) / hello_.kv_block_size;
  const int64_t have = table.blocks_held() + static_cast<int64_t>(it.blocks.size());
  if (have != want)
    return absl::InvalidArgumentError(absl::StrCat("sequence ", it.seq, ": positions [", it.position, ", ",
                                                   it.position + it.n_tokens, ") need a block table of ", want,
                                                   " blocks; it would have ", have, " (", table.blocks_held(),
                                                   " held + ", it.blocks.size(), " in the batch)"));
  RETURN_IF_ERROR(owners_.Claim(it.seq, it.blocks));
  table.Append(it.blocks);
  // The blocks this item's rows fill to the end: complete once the batch has run (a failed
  // batch ends the stage), so a later sequence may share them.
  std::vector<int32_t> filled;
  for (int64_t j = it.position / hello_.kv_block_size; j < (it.position + it.n_tokens) / hello_.kv_block_size; ++j)
    filled.push_back(table.blocks()[static_cast<size_t>(j)]);
  owners_.MarkComplete(filled);
  return absl::OkStatus();
}

void PipelineStage::LogStart() const {
  spdlog::info("stage {} (rank {}) runs layers [{}, {}){}{} of {}; activations {}; KV cache {}, {} blocks of {}",
               hello_.stage, rank_, hello_.layer_begin, hello_.layer_end, hello_.stage == 0 ? " +embed" : "",
               last_ ? " +head" : "", hello_.num_layers, pipeline::ActivationDTypeName(hello_.activations),
               kernels::KvDTypeName(hello_.kv_dtype), hello_.kv_blocks, hello_.kv_block_size);
}

void PipelineStage::PrepareKernels() {
  const auto t0 = std::chrono::steady_clock::now();
  model_.PrepareKernels(hello_.layer_begin, hello_.layer_end, last_);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (s >= 0.01) spdlog::info("stage {} (rank {}): kernels prepared in {:.2f} s", hello_.stage, rank_, s);
}

void PipelineStage::LogShutdown(uint64_t bytes_sent) const {
  // One line for the benchmark (bench/pipeline_bench.sh parses it).
  spdlog::info("stage {} (rank {}): shutdown after {} batches; stats rows={} compute_s={:.4f} bytes_sent={} "
               "bytes_per_row={:.1f}",
               hello_.stage, rank_, batches_done(), rows_done(), compute_seconds(), bytes_sent,
               rows_done() > 0 ? static_cast<double>(bytes_sent) / rows_done() : 0.0);
}

absl::StatusOr<Message> PipelineStage::Run(uint64_t batch_id, Batch& b) {
  const auto start = Clock::now();
  const int64_t h = model_.config().hidden_size;
  RETURN_IF_ERROR(pipeline::ValidateBatch(b, hello_.stage == 0, h, hello_.activation_transport));
  if (b.activations_over_nccl) {
    // First, before anything can fail: the previous stage's ncclSend waits for this receive.
    if (nccl_ == nullptr) return absl::FailedPreconditionError("activations over NCCL without an NCCL channel");
    b.activations.resize(pipeline::ActivationBytes(b));
    RETURN_IF_ERROR(nccl_->ReceiveHost(b.activations.data(), b.activations.size(), rank_ - 1));
  }
  ++runs_;
  for (uint64_t s : b.released) Drop(s);
  for (const auto& t : b.truncated) {
    auto s = seqs_.find(t.seq);
    if (s == seqs_.end()) return absl::InvalidArgumentError(absl::StrCat("truncation of unknown sequence ", t.seq));
    if (t.length > s->second.table->length() ||
        t.length < static_cast<int64_t>(s->second.shared) * hello_.kv_block_size)
      return absl::InvalidArgumentError(absl::StrCat("truncation of sequence ", t.seq, " to ", t.length,
                                                     " positions; this stage's cache holds ", s->second.table->length(),
                                                     ", ", s->second.shared, " of its blocks a cached prefix"));
    if (t.length % hello_.kv_block_size != 0 && t.length < s->second.table->length())
      RETURN_IF_ERROR(owners_.Reopen(s->second.table->blocks()[static_cast<size_t>(t.length / hello_.kv_block_size)]));
    owners_.Free(s->second.table->Truncate(t.length));
    if (s->second.sampling) s->second.sampling->Truncate(t.length);
  }
  for (const auto& o : b.opened) RETURN_IF_ERROR(Open(o));
  std::vector<model::BatchSegment> segments;
  for (const auto& it : b.items) {
    auto s = seqs_.find(it.seq);
    if (s == seqs_.end()) return absl::InvalidArgumentError(absl::StrCat("batch names unknown sequence ", it.seq));
    RETURN_IF_ERROR(AdmitItem(it, s->second));
    segments.push_back({s->second.table.get(), it.n_tokens});
  }
  // Every stage checks the ids it passes on: the last one indexes logits with its history.
  for (int32_t tok : b.tokens)
    if (tok >= model_.config().vocab_size)
      return absl::InvalidArgumentError(absl::StrCat("token id ", tok, " is outside the vocabulary"));
  hidden_.resize(static_cast<size_t>(b.rows * h));
  if (hello_.stage == 0) {
    RETURN_IF_ERROR(model_.Embed(b.tokens.data(), b.rows, hidden_.data()));
  } else {
    pipeline::UnpackActivations(b.activations, b.act, hidden_.data());
  }
  RETURN_IF_ERROR(model_.RunLayers(hello_.layer_begin, hello_.layer_end, hidden_.data(), segments));
  rows_done_ += static_cast<uint64_t>(b.rows);
  for (auto& seg : segments) seg.cache->set_length(seg.cache->length() + seg.n_tokens);

  if (!last_) {
    Batch next;
    next.opened = std::move(b.opened);
    next.released = std::move(b.released);
    next.truncated = std::move(b.truncated);
    next.items = std::move(b.items);
    next.tokens = std::move(b.tokens);  // for the last stage's history
    next.act = hello_.activations;
    next.rows = b.rows;
    next.width = h;
    next.activations = pipeline::PackActivations(hidden_.data(), hidden_.size(), hello_.activations);
    compute_us_ +=
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
    ++batches_done_;
    return Message{batch_id, std::move(next)};
  }
  // Last stage: the rows' tokens join their sequences' histories, then head on the rows that
  // sample, then sample.
  std::vector<size_t> sampled;
  size_t head_rows = 0;
  int64_t row = 0;
  for (size_t i = 0; i < b.items.size(); ++i) {
    const Seq& s = seqs_.at(b.items[i].seq);
    s.sampling->Append(b.tokens.data() + row, b.items[i].n_tokens);
    // The history is the tokens of the positions the KV holds, one for one.
    if (s.sampling->history_length() != s.table->length())
      return absl::InternalError(absl::StrCat("sequence ", b.items[i].seq, ": history of ",
                                              s.sampling->history_length(), " tokens for ", s.table->length(),
                                              " KV positions"));
    row += b.items[i].n_tokens;
    if (!b.items[i].sample) continue;
    // The item's last row, or a verification item's last verify + 1 rows (the newest token's
    // and each draft token's): one head pass over every sampled row of the batch.
    const int64_t n = b.items[i].verify + 1;
    rows_.resize((head_rows + n) * static_cast<size_t>(h));
    std::copy_n(hidden_.data() + (row - n) * h, n * h, rows_.data() + head_rows * h);
    sampled.push_back(i);
    head_rows += static_cast<size_t>(n);
  }
  pipeline::Result res;
  if (!sampled.empty()) {
    const int64_t vocab = model_.config().vocab_size;
    logits_.resize(head_rows * static_cast<size_t>(vocab));
    model_.Head(rows_.data(), static_cast<int64_t>(head_rows), logits_.data());
    size_t at = 0;
    for (size_t i : sampled) {
      const uint64_t seq = b.items[i].seq;
      SequenceSampling& sampling = *seqs_.at(seq).sampling;
      float* logits = logits_.data() + at * vocab;
      if (b.items[i].verify == 0) {
        res.tokens.push_back(sampling.Sample(seq, logits, vocab));
      } else {
        for (SampledToken& t : sampling.Verify(seq, logits, vocab, b.items[i].verify))
          res.tokens.push_back(std::move(t));
      }
      at += static_cast<size_t>(b.items[i].verify + 1);
    }
  }
  const double us =
      static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
  compute_us_ += static_cast<uint64_t>(us);
  res.compute_seconds = us / 1e6;
  ++batches_done_;
  return Message{batch_id, std::move(res)};
}

namespace {

// Sends what a stage produced: a result to the coordinator, a batch to the next stage (over
// NCCL: the descriptor first — the next stage posts its ncclRecv when it reads it — then the
// activations; descriptors arrive in order, so sends and receives pair up).
absl::Status SendOn(transport::Transport& t, transport::NcclChannel* nccl, Message m) {
  auto* next = std::get_if<Batch>(&m.body);
  if (next == nullptr) return t.Send(0, pipeline::Encode(m));
  if (nccl == nullptr) return t.Send(t.rank() + 1, pipeline::Encode(m));
  std::vector<uint8_t> act = std::move(next->activations);
  next->activations.clear();
  next->activations_over_nccl = true;
  RETURN_IF_ERROR(t.Send(t.rank() + 1, pipeline::Encode(m)));
  return nccl->SendHost(act.data(), act.size(), t.rank() + 1);
}

// Why this rank cannot move activations over NCCL, or "" when it can.
std::string NcclRefusal(int rank, transport::MpiTransport* mpi) {
  if (!transport::NcclBuilt())
    return absl::StrCat("--activation-transport nccl: rank ", rank,
                        " was built without NCCL (CUDA and NCCL not found at configure time)");
  if (mpi == nullptr) return absl::StrCat("--activation-transport nccl: rank ", rank, " does not run under MPI");
  if (transport::CudaDeviceCount() == 0)
    return absl::StrCat("--activation-transport nccl: rank ", rank, " has no CUDA device");
  return "";
}

}  // namespace

HelloAck CheckHello(const Hello& hello, model::Transformer& model, int rank, int size, transport::MpiTransport* mpi) {
  const model::ModelConfig& c = model.config();
  pipeline::HelloAck ack;
  ack.stage = hello.stage;
  ack.model_fingerprint = sharding::ModelFingerprint(c);
  ack.ok = true;
  if (hello.model_fingerprint != ack.model_fingerprint || hello.num_layers != c.num_layers ||
      hello.hidden != c.hidden_size || hello.vocab != c.vocab_size) {
    ack.ok = false;
    ack.message = absl::StrCat("rank ", rank, " loaded a different model (", c.num_layers, " layers, hidden ",
                               c.hidden_size, ", vocab ", c.vocab_size, ") than the coordinator's");
  } else if (static_cast<int>(hello.stage) != rank - 1 || static_cast<int>(hello.num_stages) != size - 1) {
    ack.ok = false;
    ack.message =
        absl::StrCat("rank ", rank, " of ", size, " was told it is stage ", hello.stage, " of ", hello.num_stages);
  } else if (hello.context > c.max_position_embeddings) {
    ack.ok = false;
    ack.message = absl::StrCat("context ", hello.context, " exceeds the model's ", c.max_position_embeddings);
  } else if (absl::Status st = model.CheckFiniteWeights(hello.layer_begin, hello.layer_end, hello.stage == 0,
                                                        hello.stage + 1 == hello.num_stages);
             !st.ok()) {
    // Only this stage's weights: serve loads a stage without the whole-model check, so that
    // it pages in nothing else.
    ack.ok = false;
    ack.message = std::string(st.message());
  } else if (hello.activation_transport == pipeline::ActivationTransport::kNccl) {
    ack.message = NcclRefusal(rank, mpi);
    ack.ok = ack.message.empty();
  }
  return ack;
}

namespace {

absl::StatusOr<pipeline::Hello> Handshake(transport::Transport& t, model::Transformer& model,
                                          transport::MpiTransport* mpi) {
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (Clock::now() < deadline) {
    ASSIGN_OR_RETURN(std::optional<transport::Envelope> env, t.Receive(std::chrono::milliseconds(200)));
    if (!env.has_value()) continue;
    if (env->source != 0)
      return absl::FailedPreconditionError(
          absl::StrCat("a message from rank ", env->source, " before the coordinator's hello"));
    ASSIGN_OR_RETURN(Message m, pipeline::Decode(env->bytes.data(), env->bytes.size()));
    if (m.type() == pipeline::MessageType::kShutdown) return absl::CancelledError("shut down before starting");
    const auto* hello = std::get_if<pipeline::Hello>(&m.body);
    if (hello == nullptr)
      return absl::FailedPreconditionError(absl::StrCat("expected hello, got ", pipeline::MessageTypeName(m.type())));
    const pipeline::HelloAck ack = CheckHello(*hello, model, t.rank(), t.size(), mpi);
    RETURN_IF_ERROR(t.Send(0, pipeline::Encode(Message{0, ack})));
    if (!ack.ok) return absl::FailedPreconditionError(ack.message);
    return *hello;
  }
  return absl::DeadlineExceededError("no hello from the coordinator within 120 s");
}

}  // namespace

int RunPipelineStage(transport::Transport& t, model::Transformer& model, transport::MpiTransport* mpi,
                     StageActivity* activity) {
  auto hello = Handshake(t, model, mpi);
  if (!hello.ok()) {
    spdlog::error("stage rank {}: {}", t.rank(), std::string(hello.status().message()));
    return 1;
  }
  StageActivity unused;
  StageActivity& act = activity != nullptr ? *activity : unused;
  act.last_coordinator_us = StageActivity::NowUs();
  act.stage = static_cast<int>(hello->stage);
  std::atomic<bool> stop{false};
  std::mutex hb_mu;
  std::condition_variable hb_cv;
  // Heartbeats from their own thread: a long batch does not look like a dead stage. They start
  // right after the ack, before anything else this stage does: the coordinator times this
  // stage's silence from the end of the handshake on.
  std::thread heartbeat([&] {
    std::unique_lock<std::mutex> lock(hb_mu);
    while (!stop.load()) {
      pipeline::Heartbeat hb{hello->stage, act.batches.load(), static_cast<double>(act.compute_us.load()) / 1e6};
      if (!t.Send(0, pipeline::Encode(Message{0, hb})).ok()) break;
      hb_cv.wait_for(lock, std::chrono::milliseconds(hello->heartbeat_ms), [&] { return stop.load(); });
    }
  });
  // Stopped on every way out, a throw included (a KV pool larger than memory): a joinable
  // thread's destructor would terminate the process before the exception is reported.
  absl::Cleanup heartbeat_stops = [&] {
    {
      std::lock_guard<std::mutex> lock(hb_mu);
      stop = true;
    }
    hb_cv.notify_all();
    heartbeat.join();
  };
  PipelineStage stage(model, *hello, t.rank());
  act.kv_blocks_total = stage.kv_blocks_total();
  stage.LogStart();
  std::unique_ptr<transport::NcclChannel> nccl;
  if (hello->activation_transport == pipeline::ActivationTransport::kNccl) {
    // Right after the handshake, before any batch, in the same order on every rank (the
    // coordinator joins the bootstrap broadcast once every stage accepted its hello).
    const int count = transport::CudaDeviceCount();
    const int device = count > 0 ? transport::LocalRank(t.rank()) % count : 0;
    auto ch = transport::NcclChannel::Create(*mpi, device, kNcclTimeout);
    if (!ch.ok()) {
      const std::string why = absl::StrCat("stage ", hello->stage, " (rank ", t.rank(), "): NCCL setup on CUDA device ",
                                           device, ": ", ch.status().message());
      spdlog::error("{}", why);
      pipeline::Result r;
      r.ok = false;
      r.error = why;
      (void)t.Send(0, pipeline::Encode(Message{0, std::move(r)}));
      return 4;
    }
    nccl = std::move(*ch);
    stage.set_nccl(nccl.get());
    spdlog::info("stage {} (rank {}): activations over NCCL on CUDA device {} of {}", hello->stage, t.rank(), device,
                 count);
  }
  // This stage's low-bit linears laid out for the integer kernels before the first batch
  // (while the heartbeats above already flow), so that no request waits for the repack.
  stage.PrepareKernels();
  constexpr auto kPoll = std::chrono::milliseconds(50);
  // The coordinator judges liveness and takes the job down. A stage gives up on a silent
  // coordinator only so as never to hang, and later than the coordinator would judge a stage,
  // so that a coordinator starved of CPU for a little over one timeout is not abandoned.
  const auto give_up = 2 * std::chrono::milliseconds(hello->timeout_ms);
  StallMeter stall(kPoll + std::chrono::milliseconds(hello->heartbeat_ms));
  auto last_from_coordinator = Clock::now();
  while (true) {
    const auto wait_start = Clock::now();
    auto env = t.Receive(kPoll);
    act.wait_us +=
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - wait_start).count());
    // Time this stage was not listening (a batch running, or no CPU at all) is not the
    // coordinator's silence: its messages waited in the inbox meanwhile.
    const auto now = Clock::now();
    last_from_coordinator = StallMeter::Excuse(last_from_coordinator, stall.Look(now), now);
    if (!env.ok()) {
      spdlog::error("stage {} (rank {}): {}", hello->stage, t.rank(), std::string(env.status().message()));
      return 2;
    }
    if (!env->has_value()) {
      if (now - last_from_coordinator > give_up) {
        spdlog::error("stage {} (rank {}): the coordinator (rank 0) has been silent for {} ms (twice the heartbeat "
                      "timeout): exiting",
                      hello->stage, t.rank(),
                      std::chrono::duration_cast<std::chrono::milliseconds>(now - last_from_coordinator).count());
        return 2;
      }
      continue;
    }
    const int source = (*env)->source;
    act.bytes_received += (*env)->bytes.size();
    if (source == 0) {
      last_from_coordinator = now;
      act.last_coordinator_us = StageActivity::NowUs();
    }
    // A message this stage refuses ends it, and the coordinator hears why at once (naming the
    // sender) instead of only noticing this stage's silence a heartbeat timeout later.
    auto refuse = [&](const std::string& what) {
      const std::string why = absl::StrCat("stage ", hello->stage, " (rank ", t.rank(), ") refused ", what);
      spdlog::error("{}", why);
      pipeline::Result r;
      r.ok = false;
      r.error = why;
      (void)t.Send(0, pipeline::Encode(Message{0, std::move(r)}));
      return 3;
    };
    auto m = pipeline::Decode((*env)->bytes.data(), (*env)->bytes.size());
    if (!m.ok()) {
      return refuse(absl::StrCat("a malformed message (", (*env)->bytes.size(), " bytes) from rank ", source, ": ",
                                 m.status().message()));
    }
    if (m->type() == pipeline::MessageType::kShutdown && source == 0) {
      stage.LogShutdown(t.bytes_sent());
      return 0;
    }
    if (m->type() == pipeline::MessageType::kHeartbeat && source == 0) continue;
    auto* batch = std::get_if<Batch>(&m->body);
    const int expected_source = hello->stage == 0 ? 0 : t.rank() - 1;
    if (batch == nullptr || source != expected_source)
      return refuse(
          absl::StrCat("an unexpected ", pipeline::MessageTypeName(m->type()), " message from rank ", source));
    absl::StatusOr<Message> out = stage.Run(m->batch_id, *batch);
    const auto send_start = Clock::now();
    absl::Status st = out.ok() ? SendOn(t, nccl.get(), std::move(*out)) : out.status();
    act.send_us +=
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - send_start).count());
    act.batches = stage.batches_done();
    act.rows = stage.rows_done();
    act.compute_us = static_cast<uint64_t>(stage.compute_seconds() * 1e6);
    act.bytes_sent = t.bytes_sent();
    act.kv_blocks_used = stage.kv_blocks_used();
    act.sequences = stage.sequences();
    if (!st.ok()) {
      // Tell the coordinator (it fails the pipeline, naming this rank) and stop.
      spdlog::error("stage {} (rank {}): batch {}: {}", hello->stage, t.rank(), m->batch_id, std::string(st.message()));
      pipeline::Result r;
      r.ok = false;
      r.error = absl::StrCat("stage ", hello->stage, " (rank ", t.rank(), "): ", st.message());
      (void)t.Send(0, pipeline::Encode(Message{m->batch_id, std::move(r)}));
      return 4;
    }
  }
}

}  // namespace accullm::pipeline
