#include "coordinator/canary_monitor.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "coordinator/generation_stream.h"
#include "quant/evaluation.h"
#include "spdlog/spdlog.h"

namespace accullm::coordinator {

absl::StatusOr<std::vector<Canary>> LoadCanaries(const model::Transformer& model) {
  std::vector<Canary> out;
  if (!model.pack().has_value()) return out;
  const int64_t vocab = model.config().vocab_size;
  for (const model::PackCanary& c : model.pack()->canaries) {
    if (c.ids.empty() || static_cast<int64_t>(c.ids.size()) >= model.config().max_position_embeddings)
      return absl::InvalidArgumentError(absl::StrCat("canary \"", c.prompt, "\" has ", c.ids.size(), " ids"));
    for (int32_t id : c.ids)
      if (id < 0 || id >= vocab)
        return absl::InvalidArgumentError(
            absl::StrCat("canary \"", c.prompt, "\": id ", id, " outside the vocabulary"));
    ASSIGN_OR_RETURN(model::TensorView t, model.tensors().Get(c.logits_tensor));
    if (t.dtype != DType::kF32 || t.shape != std::vector<int64_t>{vocab})
      return absl::InvalidArgumentError(absl::StrCat(c.logits_tensor, " must be F32 [", vocab, "]"));
    ASSIGN_OR_RETURN(std::vector<float> logits, model::TensorToF32(t, vocab));
    out.push_back(Canary{c.prompt, c.ids, std::move(logits)});
  }
  return out;
}

CanaryOutcome CompareWithReference(const std::vector<float>& reference_logits,
                                   const std::vector<std::pair<int32_t, float>>& served) {
  CanaryOutcome r;
  const int64_t vocab = static_cast<int64_t>(reference_logits.size());
  // The served log-probabilities by id; an id the answer does not cover (it should cover all)
  // leaves NaN, which fails the check like any non-finite value.
  std::vector<double> lp_served(static_cast<size_t>(vocab), std::nan(""));
  int32_t served_top = -1;
  float best = -std::numeric_limits<float>::infinity();
  for (const auto& [id, lp] : served) {
    if (id < 0 || id >= vocab) continue;
    lp_served[static_cast<size_t>(id)] = lp;
    if (lp > best || (lp == best && id < served_top)) best = lp, served_top = id;
  }
  r.finite = quant::AllFinite(reference_logits.data(), vocab);
  for (double v : lp_served) r.finite = r.finite && std::isfinite(v);
  if (!r.finite) {
    r.kl = std::numeric_limits<double>::infinity();
    return r;
  }
  std::vector<double> lp_reference;
  quant::LogSoftmax(reference_logits.data(), vocab, lp_reference);
  r.kl = quant::KlDivergence(lp_reference, lp_served);
  const int64_t ref_top = std::max_element(reference_logits.begin(), reference_logits.end()) - reference_logits.begin();
  r.top1_match = ref_top == served_top;
  return r;
}

CanaryMonitor::CanaryMonitor(Scheduler& scheduler, std::vector<Canary> canaries, int64_t vocab, double kl_threshold,
                             monitoring::ServingMetrics& metrics)
    : scheduler_(scheduler), canaries_(std::move(canaries)), vocab_(vocab), kl_threshold_(kl_threshold),
      metrics_(metrics), last_passing_(canaries_.size(), -1) {}

CanaryMonitor::~CanaryMonitor() { Stop(); }

absl::StatusOr<bool> CanaryMonitor::CheckOnce(double timeout_s) {
  bool all_pass = true;
  for (size_t i = 0; i < canaries_.size(); ++i) {
    const Canary& c = canaries_[i];
    SequenceParams p;
    p.prompt = c.ids;
    p.max_tokens = 1;
    p.ignore_eos = true;
    p.logprobs = static_cast<int>(vocab_);  // the whole distribution
    p.internal = true;
    auto stream = std::make_shared<GenerationStream>(1);
    std::mutex mu;
    std::condition_variable cv;
    bool woke = false;
    stream->SetNotifier([&] {
      std::lock_guard<std::mutex> lock(mu);
      woke = true;
      cv.notify_all();
    });
    RETURN_IF_ERROR(scheduler_.Submit({p}, stream));
    std::vector<std::pair<int32_t, float>> served;
    std::string finish, error;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (finish.empty()) {
      {
        std::unique_lock<std::mutex> lock(mu);
        if (!cv.wait_until(lock, deadline, [&] { return woke; })) break;
        woke = false;
      }
      for (StreamEvent& e : stream->Drain()) {
        for (TokenLogprob& t : e.tokens)
          if (served.empty()) served = std::move(t.top);
        if (!e.finish_reason.empty()) finish = e.finish_reason, error = e.error;
      }
    }
    stream->SetNotifier({});
    if (finish.empty()) stream->Cancel();  // timed out: the scheduler drops it at its next iteration
    CanaryOutcome o;
    const bool answered = !(finish.empty() || finish == "error" || finish == "abort" || served.empty());
    if (!answered) {
      o.finite = false;
      o.kl = std::numeric_limits<double>::infinity();
      spdlog::error("canary {} \"{}\": no answer from the pipeline ({})", i, c.prompt,
                    finish.empty() ? "timed out" : absl::StrCat(finish, error.empty() ? "" : ": ", error));
    } else {
      o = CompareWithReference(c.logits, served);
    }
    const bool pass = o.finite && o.kl <= kl_threshold_;
    all_pass = all_pass && pass;
    metrics_.SetCanary(static_cast<int>(i), o.kl, o.top1_match);
    // Every result the first time, then only changes (and every failure): a check every few
    // minutes would otherwise fill the log with the same lines.
    const int state = pass ? 1 : 0;
    if (!answered) {
      // Logged above, with the pipeline's reason: no logits came, so none were checked.
    } else if (!pass && !o.finite) {
      spdlog::error("canary {} \"{}\": FAILED: the logits are not finite (NaN or Inf), KL {} against "
                    "full precision, top-1 0; this model answers garbage (broken weights or kernels)",
                    i, c.prompt, o.kl);
    } else if (!pass) {
      spdlog::error("canary {} \"{}\": FAILED: KL {:.6f} against full precision is over --canary-kl-threshold {}, "
                    "top-1 {}",
                    i, c.prompt, o.kl, kl_threshold_, o.top1_match ? "agrees" : "DIFFERS");
    } else if (last_passing_[i] != state) {
      spdlog::info("canary {} \"{}\": KL {:.6f} against full precision, top-1 {}", i, c.prompt, o.kl,
                   o.top1_match ? "agrees" : "DIFFERS");
    }
    last_passing_[i] = state;
  }
  metrics_.SetCanaryPassing(all_pass);
  metrics_.CanaryChecked();
  return all_pass;
}

void CanaryMonitor::StartPeriodic(double interval_s) {
  if (interval_s <= 0 || canaries_.empty() || thread_.joinable()) return;
  thread_ = std::thread([this, interval_s] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::duration<double>(interval_s), [&] { return stop_; })) {
      lock.unlock();
      auto r = CheckOnce();
      if (!r.ok()) spdlog::warn("canary check not run: {}", std::string(r.status().message()));
      lock.lock();
    }
  });
}

void CanaryMonitor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace accullm::coordinator
