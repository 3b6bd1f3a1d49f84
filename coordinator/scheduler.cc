#include "coordinator/scheduler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "model/end_of_sequence.h"
#include "sharding/stage_plan.h"
#include "spdlog/spdlog.h"
#include "speculative/draft_length.h"
#include "speculative/model_draft_proposer.h"
#include "speculative/ngram_draft_proposer.h"
#include "text/stop_text.h"

namespace accullm::coordinator {

using Clock = std::chrono::steady_clock;

struct Scheduler::Sequence {
  Sequence(SequenceParams p, std::shared_ptr<GenerationStream> s, int i, const text::Tokenizer* tok)
      : params(std::move(p)), stream(std::move(s)), index(i), arrival(Clock::now()) {
    if (tok != nullptr) stop_text.emplace(*tok, params.stop);
  }

  SequenceParams params;
  std::shared_ptr<GenerationStream> stream;
  int index;
  uint64_t order = 0;                       // arrival order (Submit's): the newest is preempted first
  uint64_t id = 0;                          // the executor's name for it; a new one each time it is (re)admitted
  bool opened = false;                      // known to the executor (sampler and KV live there)
  std::optional<text::StopText> stop_text;  // none without a tokenizer: ids only
  // The sequence's block table in pool_ (the stages store its rows at these ids) and, as its
  // length, the positions launched so far. Blocks are taken as the sequence grows.
  std::optional<model::KvCache> cache;
  // Tokens to prefill before decoding: the prompt, or after a preemption the prompt and every
  // token generated so far (recomputed; the last prefill row samples the next new token).
  int64_t prefill_len = 0;
  int64_t prefilled = 0;  // of those, already launched
  int64_t generated = 0;
  std::vector<int32_t> output;  // the generated ids (streamed already): what a recompute feeds
  int preemptions = 0;
  bool preempted = false;  // preempted in this iteration: goes back to the waiting queue
  // Prefix caching: the leading blocks of its table already offered to (or found in) the
  // cache, and the cached block the next one's prefix ends with (-1: none yet); `uncacheable`
  // once the chain broke (an offer refused): no later block is offered.
  int64_t cache_offered = 0;
  int32_t cache_parent = -1;
  bool uncacheable = false;
  int32_t last = 0;  // the token to feed next when decoding
  Clock::time_point arrival, last_token_time;
  bool finished = false;
  bool busy = false;  // in a micro-batch in flight
  // Speculative decoding (null when off): the proposer, its draft length, and the text so far
  // (prompt + generated, the newest last) it drafts from.
  std::unique_ptr<speculative::DraftProposer> proposer;
  std::optional<speculative::DraftLength> draft_length;
  std::vector<int32_t> context;

  bool decoding() const { return prefilled == prefill_len; }
  bool idle() const { return !busy && !finished && !preempted; }
  int64_t positions() const { return static_cast<int64_t>(params.prompt.size()) + params.max_tokens; }
  // Positions whose rows hold final tokens: every prefilled one, and once decoding every one
  // before the newest token (fed by the next item; rows past it are unverified drafts).
  int64_t committed() const {
    if (!decoding()) return prefilled;
    return std::min(cache->length(), static_cast<int64_t>(params.prompt.size()) + generated - 1);
  }
  // The token fed at `position` by a prefill: the prompt's, then the generated ones.
  int32_t token_at(int64_t position) const {
    const int64_t n = static_cast<int64_t>(params.prompt.size());
    return position < n ? params.prompt[static_cast<size_t>(position)] : output[static_cast<size_t>(position - n)];
  }
};

namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::CreateEmbedded(model::Transformer& model,
                                                                     const text::Tokenizer* tokenizer,
                                                                     model::KvBlockPool& pool, SchedulerConfig config,
                                                                     monitoring::ServingMetrics* metrics) {
  pipeline::PipelineConfig pc;
  pc.kv_block_size = pool.block_size();
  pc.kv_blocks = pool.num_blocks();
  pc.kv_dtype = pool.storage().format().dtype;  // the stage stores rows as the pool counts them
  pc.context = config.context > 0 ? config.context : model.config().max_position_embeddings;
  ASSIGN_OR_RETURN(std::unique_ptr<pipeline::EmbeddedPipeline> embedded, pipeline::EmbeddedPipeline::Start(model, pc));
  std::unique_ptr<Scheduler> s(new Scheduler(*embedded, model.config(), tokenizer, pool, config, metrics));
  s->embedded_ = std::move(embedded);
  return s;
}

Scheduler::Scheduler(pipeline::BatchExecutor& executor, const model::ModelConfig& model_config,
                     const text::Tokenizer* tokenizer, model::KvBlockPool& pool, SchedulerConfig config,
                     monitoring::ServingMetrics* metrics)
    : executor_(executor), tokenizer_(tokenizer), pool_(pool), config_(config), metrics_(metrics) {
  const model::ModelConfig& mc = model_config;
  if (config_.context <= 0) config_.context = mc.max_position_embeddings;
  config_.max_num_seqs = std::max(1, config_.max_num_seqs);
  config_.max_batch_tokens = std::max<int64_t>(config_.max_batch_tokens, config_.max_num_seqs);
  config_.prefill_chunk = std::max<int64_t>(1, config_.prefill_chunk);
  // vLLM's default watermark: 1% of the pool.
  watermark_ = std::max<int64_t>(1, pool_.num_blocks() / 100);
  if (config_.enable_prefix_caching) {
    // The key's salt: the model's geometry and the KV layout (rows of another dtype or block
    // size are other bytes). One scheduler serves one model for its lifetime; the cache dies
    // with it.
    const kernels::KvRowFormat& f = pool_.storage().format();
    const uint64_t salt = sharding::ModelFingerprint(mc) ^ (static_cast<uint64_t>(f.dtype) << 56) ^
                          (static_cast<uint64_t>(pool_.block_size()) << 32) ^ 0x5052454649584b56ull;
    prefix_cache_ = std::make_unique<PrefixCache>(salt, pool_.block_size());
  }
  eos_ = model::EndOfSequenceIds(mc, tokenizer);
}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::Start() {
  UpdateGauges();  // the pool's real size on /metrics before the first iteration (not 0 free blocks)
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  // Collect what is still in the stages (an executor that failed answers at once) so no
  // cache is released under a running micro-batch.
  while (!in_flight_.empty()) {
    InFlight& mb = in_flight_.front();
    if (mb.ticket.ok()) (void)executor_.Wait(*mb.ticket);
    for (Sequence* s : mb.owners) s->busy = false;
    in_flight_.pop_front();
  }
  // Nothing runs any more: abort whatever is left so every consumer gets its last event.
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& s : incoming_) waiting_.push_back(std::move(s));
    incoming_.clear();
  }
  for (auto& s : waiting_) Finish(*s, "abort");
  for (auto& s : running_) Finish(*s, "abort");
  waiting_.clear();
  running_.clear();
  num_waiting_ = 0;
  num_running_ = 0;
  // Nothing will start on a cached block again: every block goes back to the pool (and one a
  // leaked reference still held would show as missing from it).
  while (prefix_cache_ && prefix_cache_->evictable() > 0) pool_.allocator().Free(prefix_cache_->Evict());
}

void Scheduler::Wake() {
  { std::lock_guard<std::mutex> lock(mu_); }
  cv_.notify_all();
}

absl::Status Scheduler::Submit(std::vector<SequenceParams> choices, std::shared_ptr<GenerationStream> stream) {
  const int64_t block = pool_.block_size();
  for (const auto& c : choices) {
    if (c.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
    if (c.max_tokens < 1) return absl::InvalidArgumentError("max_tokens must be at least 1");
    if (!c.stop.empty() && tokenizer_ == nullptr) return absl::InvalidArgumentError("stop sequences need a tokenizer");
    for (const auto& s : c.stop)
      if (s.empty()) return absl::InvalidArgumentError("stop sequences must not be empty");
    const int64_t need = static_cast<int64_t>(c.prompt.size()) + c.max_tokens;
    if (need > config_.context) {
      return absl::InvalidArgumentError(absl::StrCat("prompt (", c.prompt.size(), " tokens) + max_tokens (",
                                                     c.max_tokens, ") exceeds the context of ", config_.context,
                                                     " tokens"));
    }
    if ((need + block - 1) / block > pool_.num_blocks()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the request needs ", need, " KV positions; the server's cache holds ", pool_.num_blocks() * block));
    }
    RETURN_IF_ERROR(c.sampling.Validate());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::UnavailableError("the server is shutting down");
    const int n = static_cast<int>(choices.size());
    if (num_waiting_.load() + n > config_.max_waiting) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the request queue is full (", config_.max_waiting, " sequences waiting); retry later"));
    }
    for (int i = 0; i < n; ++i) {
      incoming_.push_back(std::make_unique<Sequence>(std::move(choices[i]), stream, i, tokenizer_));
      incoming_.back()->order = next_order_++;
      incoming_.back()->prefill_len = static_cast<int64_t>(incoming_.back()->params.prompt.size());
    }
    num_waiting_ += n;
  }
  cv_.notify_all();
  return absl::OkStatus();
}

void Scheduler::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock,
               [&] { return stop_ || !incoming_.empty() || !waiting_.empty() || !running_.empty() || abort_all_; });
      if (stop_) return;
      for (auto& s : incoming_) waiting_.push_back(std::move(s));
      incoming_.clear();
    }
    Iterate();
  }
}

void Scheduler::Finish(Sequence& s, const std::string& reason, std::string text, const std::string& error) {
  if (s.finished) return;
  s.finished = true;
  // Its rows are complete and final up to committed(): the cache keeps them for whoever
  // starts the same way (not after an executor error: the rows may never have been written).
  if (reason == "stop" || reason == "length") CacheFullBlocks(s);
  ReleaseBlocks(s);
  if (s.opened) executor_.Release(s.id);
  StreamEvent e;
  e.index = s.index;
  e.text = std::move(text);
  e.finish_reason = reason;
  e.error = error;
  e.prompt_tokens = static_cast<int64_t>(s.params.prompt.size());
  e.completion_tokens = s.generated;
  s.stream->Push(std::move(e));
  if (metrics_ != nullptr && !s.params.internal) {
    metrics_->RequestFinished(reason);
    metrics_->e2e_request_latency_seconds().Observe(Seconds(Clock::now() - s.arrival));
  }
}

void Scheduler::DropCancelled() {
  if (abort_all_.exchange(false)) abort_requested_ = true;
  // A sequence in flight is finished when its micro-batch comes back: the stages may still
  // be writing its KV cache.
  auto gone = [&](std::unique_ptr<Sequence>& s) {
    if (!s->busy && (abort_requested_ || s->stream->cancelled())) Finish(*s, "abort");
    return s->finished && !s->busy;
  };
  waiting_.erase(std::remove_if(waiting_.begin(), waiting_.end(), gone), waiting_.end());
  running_.erase(std::remove_if(running_.begin(), running_.end(), gone), running_.end());
  if (in_flight_.empty()) abort_requested_ = false;
}

void Scheduler::Admit() {
  const int64_t block = pool_.block_size();
  while (static_cast<int>(running_.size()) < config_.max_num_seqs && !waiting_.empty()) {
    Sequence& s = *waiting_.front();
    // The blocks its prefill writes are taken now; decode blocks as it grows. Beside others,
    // `watermark_` blocks stay free after admission so the running sequences can grow a while
    // before anyone is preempted; alone it may take everything (Submit checked it fits).
    // First come, first served: a head that does not fit waits (no overtaking, so a long
    // request cannot starve).
    // The choices of one request share their prompt's blocks: a later choice waits until an
    // earlier one has prefilled it (its blocks then are in the prefix cache).
    if (prefix_cache_ && std::any_of(running_.begin(), running_.end(), [&](const auto& r) {
          return r->stream == s.stream && r->preemptions == 0 && !r->decoding();
        }))
      break;
    // Prefix caching: the longest cached run of whole blocks of what it prefills, leaving at
    // least one position to compute (its row gives the next token).
    std::vector<int32_t> hit;
    std::vector<int32_t> source;
    if (prefix_cache_) {
      source.reserve(static_cast<size_t>(s.prefill_len));
      for (int64_t p = 0; p < s.prefill_len; ++p) source.push_back(s.token_at(p));
      hit = prefix_cache_->Lookup(source, (s.prefill_len - 1) / block);
    }
    const int64_t cached = static_cast<int64_t>(hit.size()) * block;
    const int64_t need = (s.prefill_len + block - 1) / block - static_cast<int64_t>(hit.size());
    if (Available() - need < (running_.empty() ? 0 : watermark_)) {
      for (int32_t id : hit) prefix_cache_->Unref(id);
      break;
    }
    MakeFree(need);
    s.cache.emplace(&pool_, config_.context);
    s.cache->Adopt(hit, cached);
    if (!s.cache->Reserve(s.prefill_len).ok()) {  // cannot happen: Available() counted them
      ReleaseBlocks(s);
      break;
    }
    s.prefilled = cached;
    s.cache_offered = static_cast<int64_t>(hit.size());
    s.cache_parent = hit.empty() ? -1 : hit.back();
    s.uncacheable = false;
    if (metrics_ != nullptr && prefix_cache_ && !s.params.internal) {
      metrics_->prefix_cache_queries_total().Increment(static_cast<double>(s.prefill_len));
      metrics_->prefix_cache_hits_total().Increment(static_cast<double>(cached));
    }
    if (metrics_ != nullptr && !s.params.internal && s.preemptions == 0)
      metrics_->request_queue_time_seconds().Observe(Seconds(Clock::now() - s.arrival));
    const SpeculationOptions& spec = config_.speculation;
    if (s.proposer != nullptr) {
      // Readmitted after a preemption: the proposer (and the draft model's private cache) kept
      // its state; its context is still the prompt and every generated token.
    } else if (spec.mode == SpeculationOptions::Mode::kDraft && spec.draft != nullptr) {
      // Its own KV cache for the sequence's positions (the draft's rows, on this process).
      s.proposer = std::make_unique<speculative::ModelDraftProposer>(*spec.draft, s.params.sampling, s.positions());
    } else if (spec.mode == SpeculationOptions::Mode::kNgram) {
      s.proposer = std::make_unique<speculative::NgramDraftProposer>();
    }
    if (s.proposer != nullptr && !s.draft_length) {
      const double floor =
          spec.pause_below.value_or(speculative::DefaultPauseBelow(spec.mode == SpeculationOptions::Mode::kNgram));
      s.draft_length.emplace(spec.max_draft_tokens, /*adaptive=*/true, floor);
      s.context = s.params.prompt;
    }
    s.id = ++next_seq_id_;
    s.opened = true;
    source.resize(static_cast<size_t>(cached));
    executor_.Open(pipeline::SequenceSetup{s.id, s.params.sampling, s.params.logprobs, hit, std::move(source)});
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

bool Scheduler::Grow(Sequence& s, int64_t n) {
  while (true) {
    const absl::Status st = s.cache->Reserve(n);
    if (st.ok()) return true;
    if (!absl::IsResourceExhausted(st)) {  // past the context: Submit's checks make it unreachable
      Finish(s, "error", {}, std::string(st.message()));
      return false;
    }
    if (prefix_cache_ && prefix_cache_->evictable() > 0) {  // an unused cached block first
      pool_.allocator().Free(prefix_cache_->Evict());
      continue;
    }
    // The pool is out of blocks: preempt the newest idle sequence (this one if it is the
    // newest). One in flight cannot be touched (the stages are using its blocks): if only
    // those are newer, `s` waits for them to come back.
    Sequence* victim = nullptr;
    for (auto& r : running_)
      if (r->idle() && (victim == nullptr || r->order > victim->order)) victim = r.get();
    if (victim == nullptr) return false;
    Preempt(*victim);
    if (victim == &s) return false;
  }
}

void Scheduler::Preempt(Sequence& s) {
  // vLLM's recompute policy: drop the KV rows everywhere and prefill the prompt and the tokens
  // generated so far again on readmission. Nothing streamed is sent again: the stream and its
  // stop-text state stay, and sampling is keyed by position (model/sampler.h), so the token
  // the recompute samples is the one the sequence would have sampled next.
  ReleaseBlocks(s);
  executor_.Release(s.id);  // before the next micro-batch, whose items may take its blocks
  s.opened = false;
  s.prefilled = 0;
  s.prefill_len = static_cast<int64_t>(s.params.prompt.size()) + s.generated;
  s.preempted = true;
  ++s.preemptions;
  ++preemptions_;
  if (metrics_ != nullptr) metrics_->num_preemptions_total().Increment();
  spdlog::debug("sequence {} preempted after {} tokens (KV pool full); {} positions to recompute", s.id, s.generated,
                s.prefill_len);
}

int64_t Scheduler::Available() const { return pool_.free_blocks() + (prefix_cache_ ? prefix_cache_->evictable() : 0); }

void Scheduler::MakeFree(int64_t n) {
  while (prefix_cache_ && pool_.free_blocks() < n && prefix_cache_->evictable() > 0)
    pool_.allocator().Free(prefix_cache_->Evict());
}

void Scheduler::ReleaseBlocks(Sequence& s) {
  if (!s.cache) return;
  for (int32_t id : s.cache->Disown()) {
    if (prefix_cache_ && prefix_cache_->Holds(id)) prefix_cache_->Unref(id);
    else pool_.allocator().Free(id);
  }
}

void Scheduler::CacheFullBlocks(Sequence& s) {
  if (!prefix_cache_ || !s.cache || s.uncacheable) return;
  const int64_t block = pool_.block_size();
  const int64_t full = s.committed() / block;
  std::vector<int32_t> tokens(static_cast<size_t>(block));
  for (; s.cache_offered < full; ++s.cache_offered) {
    const int64_t j = s.cache_offered;
    for (int64_t p = 0; p < block; ++p) tokens[static_cast<size_t>(p)] = s.token_at(j * block + p);
    const int32_t id = s.cache->blocks()[static_cast<size_t>(j)];
    const int32_t cached = prefix_cache_->Insert(s.cache_parent, tokens, id);
    if (cached < 0) {
      s.uncacheable = true;
      return;
    }
    s.cache_parent = cached;  // its own block, or the one holding the same rows already
  }
}

void Scheduler::RequeuePreempted() {
  for (auto& r : running_) {
    if (!r->preempted) continue;
    r->preempted = false;
    // Back in arrival order: preempted sequences are older than most waiting ones, so they
    // are readmitted first.
    auto at = std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& w) { return w->order > r->order; });
    waiting_.insert(at, std::move(r));
  }
  running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
}

void Scheduler::UpdateGauges() {
  num_waiting_ = static_cast<int>(waiting_.size()) + [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(incoming_.size());
  }();
  num_running_ = static_cast<int>(running_.size());
  if (metrics_ == nullptr) return;
  metrics_->num_requests_waiting().Set(num_waiting_.load());
  metrics_->num_requests_running().Set(num_running_.load());
  // Cached blocks no sequence uses count as free (as vLLM's usage): the pool takes them back
  // on demand.
  const int64_t free = Available();
  metrics_->kv_cache_free_blocks().Set(static_cast<double>(free));
  metrics_->kv_cache_used_blocks().Set(static_cast<double>(pool_.num_blocks() - free));
  metrics_->kv_cache_usage_perc().Set(pool_.num_blocks() > 0 ? 1.0 - static_cast<double>(free) / pool_.num_blocks()
                                                             : 0);
}

void Scheduler::Iterate() {
  DropCancelled();
  Admit();
  UpdateGauges();
  // Keep the pipeline full: launch micro-batches of idle sequences until `depth` are in
  // flight, then take the oldest result. Its sequences become idle and go out again in the
  // next micro-batch while the others are still in the stages — no drain between
  // iterations, so no pipeline bubble beyond the first fill. In-process (depth 1) this is
  // one batch of every running sequence per iteration.
  const size_t depth = static_cast<size_t>(std::max(1, executor_.micro_batches()));
  while (in_flight_.size() < depth && LaunchMicroBatch(depth)) {
  }
  RequeuePreempted();
  if (in_flight_.empty()) return;
  CompleteOldest();
  running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->finished; }),
                 running_.end());
  UpdateGauges();
}

bool Scheduler::LaunchMicroBatch(size_t depth) {
  // A fair share of the running sequences and of the token budget per micro-batch, so the
  // micro-batches in flight are about equal and every stage has work.
  const size_t share = (running_.size() + depth - 1) / depth;
  int64_t budget = std::max<int64_t>(1, config_.max_batch_tokens / static_cast<int64_t>(depth));
  InFlight mb;
  std::vector<int32_t> tokens;
  std::vector<pipeline::ExecItem> items;
  // Draft tokens come out of the budget left after one decode row for every sequence that
  // decodes in this micro-batch: drafts never crowd a sequence out of its decode step.
  int64_t decoders = 0;
  for (auto& s : running_)
    if (s->idle() && s->decoding()) ++decoders;
  int64_t spare = budget - std::min<int64_t>({decoders, static_cast<int64_t>(share), budget});
  const int64_t block = pool_.block_size();
  // Decode tokens first, one per idle decoding sequence. Three passes, so that the sequences
  // draft together (one draft-model pass per position for all of them): choose the
  // sequences and how many tokens each may draft, draft, then reserve and queue the items.
  std::vector<Sequence*> decoders_chosen;
  std::vector<int64_t> limits;
  int64_t promised = 0;  // blocks the chosen sequences' drafts may take, not reserved yet
  for (auto& s : running_) {
    if (!s->idle() || !s->decoding()) continue;
    if (decoders_chosen.size() >= share || budget <= 0) break;
    // A block for the decode row (preempting newer sequences when the pool is out), then a
    // draft no longer than its blocks and the free ones above the watermark can take: a
    // guess never preempts anyone.
    const int64_t length = s->cache->length();
    if (!Grow(*s, length + 1)) continue;
    const int64_t room =
        (s->cache->blocks_held() + std::max<int64_t>(0, Available() - watermark_ - promised)) * block - (length + 1);
    const int64_t limit = DraftLimit(*s, std::min(spare, room));
    promised += std::max<int64_t>(0, (length + 1 + limit + block - 1) / block - s->cache->blocks_held());
    spare -= limit;
    budget -= 1 + limit;
    s->busy = true;  // taken: neither a victim nor a second item of this micro-batch
    decoders_chosen.push_back(s.get());
    limits.push_back(limit);
  }
  const std::vector<std::vector<int32_t>> drafts = Draft(decoders_chosen, limits);
  for (size_t i = 0; i < decoders_chosen.size(); ++i) {
    Sequence* s = decoders_chosen[i];
    std::vector<int32_t> draft = drafts[i];
    // A later sequence's decode row may have taken a block promised above (Grow preempts
    // only when the pool is out): the draft is then cut to what is left, still a draft.
    const int64_t length = s->cache->length();
    const int64_t room =
        (s->cache->blocks_held() + std::max<int64_t>(0, Available() - watermark_)) * block - (length + 1);
    if (static_cast<int64_t>(draft.size()) > std::max<int64_t>(0, room))
      draft.resize(static_cast<size_t>(std::max<int64_t>(0, room)));
    const int64_t verify = static_cast<int64_t>(draft.size());
    MakeFree((length + 1 + verify + block - 1) / block - s->cache->blocks_held());
    if (!s->cache->Reserve(length + 1 + verify).ok()) {  // cannot happen: room counted it
      s->busy = false;
      budget += 1 + limits[i];
      continue;
    }
    budget += limits[i] - verify;  // what a shorter draft left to the prefill chunks
    tokens.push_back(s->last);
    tokens.insert(tokens.end(), draft.begin(), draft.end());
    items.push_back({s->id, &*s->cache, 1 + verify, true, verify});
    mb.owners.push_back(s);
  }
  int64_t prefill_tokens = 0;
  for (auto& s : running_) {  // then prefill chunks with what is left (their blocks were taken at admission)
    if (!s->idle() || s->decoding() || budget <= 0) continue;
    const int64_t chunk = std::min({s->prefill_len - s->prefilled, config_.prefill_chunk, budget});
    for (int64_t p = s->prefilled; p < s->prefilled + chunk; ++p) tokens.push_back(s->token_at(p));
    // The last chunk yields the next token (the first, or a recomputed sequence's next).
    items.push_back({s->id, &*s->cache, chunk, s->prefilled + chunk == s->prefill_len});
    mb.owners.push_back(s.get());
    s->busy = true;
    budget -= chunk;
    // The prompt as clients sent it, once: a preempted sequence's recompute is not counted.
    if (!s->params.internal && s->preemptions == 0) prefill_tokens += chunk;
  }
  if (items.empty()) return false;
  for (size_t i = 0; i < items.size(); ++i) {
    mb.n_tokens.push_back(items[i].n_tokens);
    mb.sample.push_back(items[i].sample);
    mb.verify.push_back(items[i].verify);
  }
  if (metrics_ != nullptr) {
    metrics_->iterations_total().Increment();
    metrics_->iteration_tokens().Observe(static_cast<double>(tokens.size()));
    metrics_->prompt_tokens_total().Increment(static_cast<double>(prefill_tokens));
  }
  mb.ticket = executor_.Launch(std::move(tokens), std::move(items));
  in_flight_.push_back(std::move(mb));
  return true;
}

int64_t Scheduler::DraftLimit(Sequence& s, int64_t budget) const {
  if (s.proposer == nullptr) return 0;
  // Every token a step produces must be one the sequence may still generate: at most
  // max_tokens - generated, the draft's tokens and the target's own one after them (so the
  // rows also stay within prompt + max_tokens, which Submit checked against the context).
  return std::max<int64_t>(0, std::min({s.draft_length->Take(), s.params.max_tokens - s.generated - 1, budget}));
}

std::vector<std::vector<int32_t>> Scheduler::Draft(const std::vector<Sequence*>& seqs,
                                                   const std::vector<int64_t>& limits) {
  std::vector<speculative::DraftRequest> requests;
  std::vector<size_t> owner;  // the index in seqs of each request
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (limits[i] <= 0) continue;
    requests.push_back({seqs[i]->proposer.get(), seqs[i]->context, limits[i], {}, {}});
    owner.push_back(i);
  }
  std::vector<std::vector<int32_t>> drafts(seqs.size());
  if (requests.empty()) return drafts;
  const int64_t passes = speculative::ProposeBatch(absl::MakeSpan(requests));
  if (passes > 0) {
    draft_forward_passes_.fetch_add(passes);
    draft_launches_.fetch_add(1);
  }
  for (size_t r = 0; r < requests.size(); ++r) {
    Sequence& s = *seqs[owner[r]];
    if (!requests[r].status.ok()) {
      // A draft is only a guess: without one the step is a plain decode step, same tokens.
      spdlog::warn("sequence {}: {} draft failed ({}); decoding without a draft", s.id, s.proposer->name(),
                   std::string(requests[r].status.message()));
      continue;
    }
    std::vector<int32_t>& d = requests[r].draft;
    if (static_cast<int64_t>(d.size()) > limits[owner[r]]) d.resize(static_cast<size_t>(limits[owner[r]]));
    drafts[owner[r]] = std::move(d);
  }
  return drafts;
}

void Scheduler::CompleteOldest() {
  InFlight mb = std::move(in_flight_.front());
  in_flight_.pop_front();
  for (Sequence* s : mb.owners) s->busy = false;
  absl::StatusOr<std::vector<pipeline::SampledToken>> sampled =
      mb.ticket.ok() ? executor_.Wait(*mb.ticket)
                     : absl::StatusOr<std::vector<pipeline::SampledToken>>(mb.ticket.status());
  // Each sampling item's tokens: one, or a verification's 1 .. verify + 1, consecutive and
  // all carrying its sequence's id.
  std::vector<std::pair<size_t, size_t>> range(mb.owners.size());
  if (sampled.ok()) {
    size_t next = 0;
    for (size_t i = 0; i < mb.owners.size() && sampled.ok(); ++i) {
      if (!mb.sample[i]) continue;
      size_t end = next;
      const size_t most = static_cast<size_t>(mb.verify[i]) + 1;
      while (end < sampled->size() && end - next < most && (*sampled)[end].seq == mb.owners[i]->id) ++end;
      if (end == next)
        sampled = absl::InternalError(absl::StrCat("the executor returned no token for sequence ", mb.owners[i]->id));
      range[i] = {next, end};
      next = end;
    }
    if (sampled.ok() && next != sampled->size())
      sampled = absl::InternalError(
          absl::StrCat("the executor returned ", sampled->size(), " tokens; the items take ", next));
  }
  if (!sampled.ok()) {
    // Unavailable: the executor is gone (a pipeline stage died): the request is aborted
    // (503), not failed by its own fault.
    const bool gone = absl::IsUnavailable(sampled.status());
    for (Sequence* s : mb.owners) Finish(*s, gone ? "abort" : "error", {}, std::string(sampled.status().message()));
    return;
  }
  const auto now = Clock::now();
  for (size_t i = 0; i < mb.owners.size(); ++i) {
    Sequence& s = *mb.owners[i];
    if (!s.decoding()) {
      s.prefilled += mb.n_tokens[i];
      if (!s.decoding()) continue;  // more prompt chunks to come
    }
    if (s.finished) continue;  // cancelled while in flight: its tokens are dropped
    const auto [begin, end] = range[i];
    Deliver(s, mb, i, absl::MakeConstSpan(sampled->data() + begin, end - begin), now);
  }
  for (Sequence* s : mb.owners)
    if (!s->finished) CacheFullBlocks(*s);
}

void Scheduler::Deliver(Sequence& s, const InFlight& mb, size_t i, absl::Span<const pipeline::SampledToken> tokens,
                        Clock::time_point now) {
  const int64_t verify = mb.verify[i];
  if (verify > 0) {
    const int64_t accepted = static_cast<int64_t>(tokens.size()) - 1;
    s.draft_length->Update(verify, accepted);
    if (metrics_ != nullptr && !s.params.internal)
      metrics_->spec_decode(config_.speculation.max_draft_tokens).Step(verify, accepted);
  }
  for (const pipeline::SampledToken& t : tokens) {
    const int32_t id = t.id;
    if (metrics_ != nullptr && !s.params.internal) {
      if (s.generated == 0) metrics_->time_to_first_token_seconds().Observe(Seconds(now - s.arrival));
      else metrics_->inter_token_latency_seconds().Observe(Seconds(now - s.last_token_time));
    }
    s.last_token_time = now;
    const bool is_eos = !s.params.ignore_eos && std::find(eos_.begin(), eos_.end(), id) != eos_.end();
    if (is_eos) {
      Finish(s, "stop", s.stop_text ? s.stop_text->Finish() : std::string());
      return;
    }
    ++s.generated;
    s.output.push_back(id);
    s.last = id;
    if (s.proposer != nullptr) s.context.push_back(id);
    if (metrics_ != nullptr && !s.params.internal) metrics_->generation_tokens_total().Increment();
    text::StopText::Piece piece = s.stop_text ? s.stop_text->Push(id) : text::StopText::Piece{};
    StreamEvent e;
    e.index = s.index;
    e.prompt_tokens = static_cast<int64_t>(s.params.prompt.size());
    e.completion_tokens = s.generated;
    e.tokens.push_back(TokenLogprob{id, t.logprob, t.top});
    if (piece.stopped) {
      e.text = std::move(piece.text);
      s.stream->Push(std::move(e));
      Finish(s, "stop");
      return;
    }
    if (s.generated >= s.params.max_tokens) {
      e.text = std::move(piece.text) + (s.stop_text ? s.stop_text->Finish() : std::string());
      s.stream->Push(std::move(e));
      Finish(s, "length");
      return;
    }
    e.text = std::move(piece.text);
    s.stream->Push(std::move(e));
  }
  // The rows kept: every position up to the newest token's and the accepted draft tokens'
  // (the target's own token is fed by the next item). The rejected draft rows are cut from
  // the stages' caches and the last stage's history before the next micro-batch, and the
  // blocks past ceil(keep / block_size) go back to the pool here as the stages drop them there.
  const int64_t rejected = verify - (static_cast<int64_t>(tokens.size()) - 1);
  if (rejected > 0) {
    const int64_t keep = s.cache->length() - rejected;
    s.cache->Truncate(keep);
    executor_.Truncate(s.id, keep);
  }
}

}  // namespace accullm::coordinator
