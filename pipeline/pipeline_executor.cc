#include "pipeline/pipeline_executor.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "pipeline/stall_meter.h"
#include "spdlog/spdlog.h"

namespace accullm::pipeline {

namespace {
using Clock = std::chrono::steady_clock;
using pipeline::Message;
}  // namespace

Hello StageHello(const model::ModelConfig& model, const sharding::StagePlan& plan, const PipelineConfig& config,
                 int stage) {
  pipeline::Hello h;
  h.stage = static_cast<uint32_t>(stage);
  h.num_stages = static_cast<uint32_t>(plan.stages.size());
  h.layer_begin = plan.stages[stage].layer_begin;
  h.layer_end = plan.stages[stage].layer_end;
  h.num_layers = model.num_layers;
  h.hidden = model.hidden_size;
  h.vocab = model.vocab_size;
  h.model_fingerprint = sharding::ModelFingerprint(model);
  h.kv_block_size = config.kv_block_size;
  h.kv_blocks = config.kv_blocks;
  h.kv_dtype = config.kv_dtype;
  h.context = config.context;
  h.activations = config.activations;
  h.heartbeat_ms = config.heartbeat_ms;
  h.timeout_ms = config.timeout_ms;
  h.activation_transport = config.activation_transport;
  return h;
}

absl::StatusOr<std::unique_ptr<PipelineExecutor>> PipelineExecutor::Start(transport::Transport& t,
                                                                          const model::ModelConfig& model,
                                                                          const sharding::StagePlan& plan,
                                                                          PipelineConfig config) {
  const int stages = t.size() - 1;
  if (stages < 1)
    return absl::FailedPreconditionError("a pipeline needs at least one worker rank (mpirun -np 2 or more)");
  const uint64_t fingerprint = sharding::ModelFingerprint(model);
  RETURN_IF_ERROR(sharding::ValidateStagePlan(plan, model.num_layers, stages, fingerprint));
  RETURN_IF_ERROR(CheckActivationDType(config.activations));
  if (config.timeout_ms <= config.heartbeat_ms)
    return absl::InvalidArgumentError("the stage timeout must exceed the heartbeat interval");
  const bool nccl = config.activation_transport == pipeline::ActivationTransport::kNccl;
  if (nccl && !config.join_activation_channel)
    return absl::InvalidArgumentError("--activation-transport nccl needs the MPI transport (NCCL bootstrap)");
  for (int s = 0; s < stages; ++s)
    RETURN_IF_ERROR(t.Send(s + 1, pipeline::Encode(Message{0, StageHello(model, plan, config, s)})));
  std::vector<bool> acked(static_cast<size_t>(stages + 1), false);
  int pending = stages;
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  const auto heartbeat = std::chrono::milliseconds(config.heartbeat_ms);
  auto last_beat = Clock::now();
  while (pending > 0) {
    // A stage times our silence from its ack on: keep the ones that answered hearing from
    // us while slower ones still load (ranks starved of CPU can take seconds longer).
    if (Clock::now() - last_beat >= heartbeat) {
      for (int r = 1; r <= stages; ++r)
        if (acked[r]) RETURN_IF_ERROR(t.Send(r, pipeline::Encode(Message{0, pipeline::Heartbeat{}})));
      last_beat = Clock::now();
    }
    if (Clock::now() > deadline) {
      std::string missing;
      for (int r = 1; r <= stages; ++r)
        if (!acked[r]) absl::StrAppend(&missing, missing.empty() ? "" : ",", r);
      return absl::DeadlineExceededError(
          absl::StrCat("worker rank(s) ", missing, " did not answer the hello within 120 s"));
    }
    ASSIGN_OR_RETURN(std::optional<transport::Envelope> env,
                     t.Receive(std::min(heartbeat, std::chrono::milliseconds(200))));
    if (!env.has_value()) continue;
    ASSIGN_OR_RETURN(Message m, pipeline::Decode(env->bytes.data(), env->bytes.size()));
    if (m.type() == pipeline::MessageType::kHeartbeat) continue;  // an early stage already beating
    const auto* ack = std::get_if<pipeline::HelloAck>(&m.body);
    if (ack == nullptr || env->source < 1 || env->source > stages || acked[env->source])
      return absl::FailedPreconditionError(absl::StrCat("unexpected ", pipeline::MessageTypeName(m.type()),
                                                        " from rank ", env->source, " during the handshake"));
    if (!ack->ok)
      return absl::FailedPreconditionError(absl::StrCat("worker rank ", env->source, " refused: ", ack->message));
    acked[env->source] = true;
    --pending;
  }
  if (nccl) {
    // Every stage accepted and now joins the NCCL bootstrap: so do we (the stages' early
    // heartbeats wait in the transport's inbox meanwhile).
    if (absl::Status st = config.join_activation_channel(); !st.ok())
      return absl::Status(st.code(), absl::StrCat("--activation-transport nccl: ", st.message()));
  }
  std::unique_ptr<PipelineExecutor> e(new PipelineExecutor(t, config, stages, model.vocab_size));
  e->last_heard_.assign(static_cast<size_t>(stages + 1), Clock::now());
  e->stats_.resize(static_cast<size_t>(stages));
  for (int s = 0; s < stages; ++s) e->stats_[s].rank = s + 1;
  e->monitor_ = std::thread([p = e.get()] { p->Monitor(); });
  return e;
}

PipelineExecutor::~PipelineExecutor() {
  stop_ = true;
  cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
}

void PipelineExecutor::set_on_failure(std::function<void(const std::string&)> f) {
  std::lock_guard<std::mutex> lock(mu_);
  on_failure_ = std::move(f);
}

void PipelineExecutor::Shutdown() {
  if (!failed_.load()) {
    for (int r = 1; r <= stages_; ++r) (void)t_.Send(r, pipeline::Encode(Message{0, pipeline::Shutdown{}}));
  }
  stop_ = true;
  if (monitor_.joinable()) monitor_.join();
}

std::vector<StageStats> PipelineExecutor::stage_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<StageStats> stats = stats_;
  const auto now = Clock::now();
  for (size_t s = 0; s < stats.size(); ++s)
    stats[s].heartbeat_age_seconds = std::chrono::duration<double>(now - last_heard_[s + 1]).count();
  return stats;
}

int64_t PipelineExecutor::micro_batches_in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(in_flight_.size());
}

void PipelineExecutor::Fail(const std::string& why) {
  std::function<void(const std::string&)> cb;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_.empty()) return;
    error_ = why;
    failed_ = true;
    cb = on_failure_;
  }
  cv_.notify_all();
  spdlog::error("pipeline failed: {}", why);
  if (cb) cb(why);
}

void PipelineExecutor::Open(SequenceSetup s) { assembler_.Open(s); }

void PipelineExecutor::Release(uint64_t seq) { assembler_.Release(seq); }

void PipelineExecutor::Truncate(uint64_t seq, int64_t length) { assembler_.Truncate(seq, length); }

absl::StatusOr<uint64_t> PipelineExecutor::Launch(std::vector<int32_t> tokens, std::vector<ExecItem> items) {
  if (failed_.load()) {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::UnavailableError(error_);
  }
  pipeline::Batch b = assembler_.Take(std::move(tokens), items, config_.activations);
  const uint64_t id = ++next_batch_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_[id] = Clock::now();
  }
  if (absl::Status st = t_.Send(1, pipeline::Encode(Message{id, std::move(b)})); !st.ok()) {
    Fail(absl::StrCat("sending to stage 0 (rank 1): ", st.message()));
    return absl::UnavailableError(st.message());
  }
  return id;
}

absl::StatusOr<std::vector<SampledToken>> PipelineExecutor::Wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return results_.count(ticket) != 0 || !error_.empty(); });
  if (!error_.empty()) return absl::UnavailableError(error_);
  auto r = std::move(results_[ticket]);
  results_.erase(ticket);
  return r;
}

void PipelineExecutor::Monitor() {
  constexpr auto kPoll = std::chrono::milliseconds(20);
  constexpr int kMaxPerLook = 256;  // messages handled between two liveness checks
  const auto heartbeat = std::chrono::milliseconds(config_.heartbeat_ms);
  StallMeter stall(kPoll + heartbeat);
  auto last_beat_sent = Clock::now() - std::chrono::hours(1);
  while (!stop_.load()) {
    const auto now = Clock::now();
    if (!failed_.load() && now - last_beat_sent > heartbeat) {
      for (int r = 1; r <= stages_; ++r) (void)t_.Send(r, pipeline::Encode(Message{0, pipeline::Heartbeat{}}));
      last_beat_sent = now;
    }
    auto env = t_.Receive(kPoll);
    ExcuseOwnStall(stall.Look(Clock::now()));
    // Everything already received before anyone is judged: after a stall, every stage's
    // heartbeat is waiting here.
    int handled = 0;
    while (env.ok() && env->has_value()) {
      Handle((*env)->source, (*env)->bytes);
      if (++handled == kMaxPerLook) break;
      env = t_.Receive(std::chrono::milliseconds(0));
    }
    if (!env.ok()) {
      Fail(std::string(env.status().message()));
      break;
    }
    if (failed_.load()) continue;
    ExcuseOwnStall(stall.Look(Clock::now()));
    if (std::string why = CheckLiveness(); !why.empty()) Fail(why);
  }
}

void PipelineExecutor::ExcuseOwnStall(std::chrono::steady_clock::duration stalled) {
  if (stalled <= Clock::duration::zero()) return;
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& heard : last_heard_) heard = StallMeter::Excuse(heard, stalled, now);
  for (auto& [id, since] : in_flight_) since = StallMeter::Excuse(since, stalled, now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(stalled).count();
  if (ms > config_.timeout_ms / 2)
    spdlog::warn("pipeline monitor: this process was not running for {} ms (CPU starvation, stopped or paused): "
                 "not counted as the stages' silence",
                 ms);
}

void PipelineExecutor::Handle(int src, const std::vector<uint8_t>& bytes) {
  // Every failure below names the rank as "worker rank N (stage S)", as the liveness checks do.
  const std::string who = absl::StrCat("worker rank ", src, " (stage ", src - 1, ")");
  auto m = pipeline::Decode(bytes.data(), bytes.size());
  if (!m.ok()) {
    Fail(absl::StrCat(who, " sent a malformed message (", bytes.size(), " bytes): ", m.status().message()));
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (src >= 1 && src <= stages_) {
    const auto now = Clock::now();
    const auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard_[src]).count();
    // A near miss: the operator sees it before a starved stage is declared dead.
    if (silent > config_.timeout_ms / 2)
      spdlog::warn("worker rank {} (stage {}) was silent for {} ms (heartbeat timeout {} ms): late, but alive", src,
                   src - 1, silent, config_.timeout_ms);
    last_heard_[src] = now;
  }
  if (auto* hb = std::get_if<pipeline::Heartbeat>(&m->body); hb != nullptr && src >= 1 && src <= stages_) {
    stats_[src - 1].batches = hb->batches_done;
    stats_[src - 1].compute_seconds = hb->compute_seconds;
  } else if (auto* res = std::get_if<pipeline::Result>(&m->body); res != nullptr) {
    std::string wrong;
    if (!res->ok) {
      wrong = res->error;  // the stage's own report: it names itself (and any rank it refused)
    } else if (src != stages_) {
      wrong = absl::StrCat(who, " sent a result; only the last stage (rank ", stages_, ") samples");
    } else if (in_flight_.count(m->batch_id) == 0) {
      wrong = absl::StrCat(who, " returned a result for unknown batch ", m->batch_id);
    } else {
      for (const SampledToken& tok : res->tokens) {
        bool in_vocab = tok.id < vocab_;
        for (const auto& [id, lp] : tok.top) in_vocab = in_vocab && id < vocab_ && !std::isnan(lp);
        if (!in_vocab || std::isnan(tok.logprob)) {
          wrong = absl::StrCat(who, " returned an invalid result for batch ", m->batch_id, ": token ", tok.id,
                               " (logprob ", tok.logprob, ") for vocabulary size ", vocab_);
          break;
        }
      }
    }
    if (!wrong.empty()) {
      lock.unlock();
      Fail(wrong);
      return;
    }
    in_flight_.erase(m->batch_id);
    results_[m->batch_id] = std::move(res->tokens);
    lock.unlock();
    cv_.notify_all();
  } else if (m->type() != pipeline::MessageType::kHeartbeat) {
    // A hello-ack, batch, hello or shutdown from a stage after the handshake: ignoring it
    // would leave its micro-batch waiting until batch_timeout_ms.
    lock.unlock();
    Fail(absl::StrCat(who, " sent an unexpected ", pipeline::MessageTypeName(m->type()), " message (batch ",
                      m->batch_id, ")"));
  }
}

std::string PipelineExecutor::CheckLiveness() {
  // Every stage heard from recently; no micro-batch stuck.
  std::string why;
  std::lock_guard<std::mutex> lock(mu_);
  const auto t = Clock::now();
  // A dead rank stalls its neighbours (their sends to it block, and their heartbeats
  // queue behind), so several go silent within about one heartbeat of each other and the
  // order of their last heartbeats cannot tell which died: name them all.
  // Once one rank passes the timeout, every rank silent for over half of it is a suspect
  // (a live rank is never silent much beyond one heartbeat interval).
  int64_t worst_ms = 0;
  std::vector<std::pair<int, int64_t>> silent;
  for (int r = 1; r <= stages_; ++r) {
    const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - last_heard_[r]).count();
    if (ms > config_.timeout_ms / 2) silent.emplace_back(r, ms);
    worst_ms = std::max(worst_ms, ms);
  }
  if (worst_ms <= config_.timeout_ms) {
    silent.clear();
  } else if (silent.size() == 1) {
    const int r = silent[0].first;
    why = absl::StrCat("worker rank ", r, " (stage ", r - 1, ") sent nothing for ", silent[0].second,
                       " ms (heartbeat timeout ", config_.timeout_ms, " ms): it died or hangs");
  } else if (!silent.empty()) {
    std::string ranks, stages;
    for (const auto& [r, ms] : silent) {
      absl::StrAppend(&ranks, ranks.empty() ? "" : ", ", r);
      absl::StrAppend(&stages, stages.empty() ? "" : ", ", r - 1);
    }
    why = absl::StrCat("worker ranks ", ranks, " (stages ", stages, ") sent nothing for up to ", worst_ms,
                       " ms (heartbeat timeout ", config_.timeout_ms,
                       " ms): one of them died or hangs and stalled the others");
  }
  for (const auto& [id, since] : in_flight_) {
    if (!why.empty()) break;
    const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(t - since).count();
    if (age > config_.batch_timeout_ms) why = absl::StrCat("micro-batch ", id, " got no result in ", age, " ms");
  }
  return why;
}

}  // namespace accullm::pipeline
