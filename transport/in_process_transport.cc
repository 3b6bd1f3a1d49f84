#include <atomic>

#include "absl/strings/str_cat.h"
#include "transport/transport.h"

namespace accullm::transport {

class InProcessTransport final : public Transport {
 public:
  InProcessTransport(InProcessHub& hub, int rank) : hub_(hub), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return hub_.size(); }
  absl::Status Send(int dest, std::vector<uint8_t> bytes) override {
    if (dest < 0 || dest >= hub_.size()) return absl::InvalidArgumentError(absl::StrCat("no rank ", dest));
    bytes_sent_ += bytes.size();
    auto& box = *hub_.boxes_[dest];
    {
      std::lock_guard<std::mutex> lock(box.mu);
      box.queue.push_back(Envelope{rank_, std::move(bytes)});
    }
    box.cv.notify_all();
    return absl::OkStatus();
  }
  absl::StatusOr<std::optional<Envelope>> Receive(std::chrono::milliseconds timeout) override {
    auto& box = *hub_.boxes_[rank_];
    std::unique_lock<std::mutex> lock(box.mu);
    if (!box.cv.wait_for(lock, timeout, [&] { return !box.queue.empty(); })) return std::optional<Envelope>();
    Envelope e = std::move(box.queue.front());
    box.queue.pop_front();
    return std::optional<Envelope>(std::move(e));
  }
  uint64_t bytes_sent() const override { return bytes_sent_.load(); }

 private:
  InProcessHub& hub_;
  int rank_;
  std::atomic<uint64_t> bytes_sent_{0};
};

InProcessHub::InProcessHub(int size) {
  for (int r = 0; r < size; ++r) boxes_.push_back(std::make_unique<Box>());
  for (int r = 0; r < size; ++r) transports_.push_back(std::make_unique<InProcessTransport>(*this, r));
}

Transport& InProcessHub::at(int rank) { return *transports_.at(rank); }

}  // namespace accullm::transport
