// The hand-over point between the compute thread (producer) and one HTTP request (consumer):
// a locked queue of events for the request's choices, a wake-up callback, and a cancel flag
// the scheduler polls every iteration.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace accullm::coordinator {

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0.f;
  std::vector<std::pair<int32_t, float>> top;  // most likely alternatives, best first
};

struct StreamEvent {
  int index = 0;                     // which choice
  std::string text;                  // newly final text (may be empty)
  std::vector<TokenLogprob> tokens;  // tokens this event accounts for (logprobs when asked)
  std::string finish_reason;         // set on the choice's last event: stop, length, abort, error
  std::string error;                 // message when finish_reason == "error"
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;  // generated so far by this choice
};

class GenerationStream {
 public:
  explicit GenerationStream(int choices) : choices_(choices) {}

  int choices() const { return choices_; }

  // Producer side. The notifier runs under the lock, so it can be cleared safely.
  void Push(StreamEvent e) {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(e));
    if (notify_) notify_();
  }
  // Consumer side.
  std::vector<StreamEvent> Drain() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(events_, {});
  }
  // Called (under the stream's lock) after each Push; set to {} before the consumer goes away.
  void SetNotifier(std::function<void()> f) {
    std::lock_guard<std::mutex> lock(mu_);
    notify_ = std::move(f);
  }

  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

 private:
  const int choices_;
  std::mutex mu_;
  std::vector<StreamEvent> events_;
  std::function<void()> notify_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace accullm::coordinator
