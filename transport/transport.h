// How pipeline stages and the coordinator exchange messages: ranks 0..size-1, ordered
// point-to-point byte messages (what they mean is the pipeline's business: pipeline/wire.h). Send never blocks on
// the peer (it queues); Receive waits up to a timeout. Implementations: InProcessTransport
// (threads of one process: the embedded default and the unit tests) and MpiTransport (host
// memory between processes, progressed by a dedicated thread). Activations between GPUs use
// the NCCL channel (nccl_channel.h) beside an MPI transport that carries the descriptors.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace accullm::transport {

// Largest message anyone may send or accept (a batch of 1M rows × 8192 F32 is 32 GiB: far
// more than any configuration here; this bounds allocation from a malicious size field).
inline constexpr uint64_t kMaxMessageBytes = (uint64_t{1} << 31) - 1;  // MPI counts are int

struct Envelope {
  int source = -1;
  std::vector<uint8_t> bytes;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Queues `bytes` for `dest`; messages between two ranks arrive in the order sent.
  virtual absl::Status Send(int dest, std::vector<uint8_t> bytes) = 0;
  // The next message from any rank; nullopt after `timeout` without one. An error when the
  // transport failed (the error names the peer or the MPI error).
  virtual absl::StatusOr<std::optional<Envelope>> Receive(std::chrono::milliseconds timeout) = 0;
  // Bytes sent so far (payload only), for the benchmark.
  virtual uint64_t bytes_sent() const = 0;
};

// A mailbox per rank, shared by the transports of one process.
class InProcessHub {
 public:
  explicit InProcessHub(int size);
  // The transport of `rank` (owned by the hub; valid while the hub lives).
  Transport& at(int rank);
  int size() const { return static_cast<int>(boxes_.size()); }

 private:
  friend class InProcessTransport;
  struct Box {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Envelope> queue;
  };
  std::vector<std::unique_ptr<Box>> boxes_;
  std::vector<std::unique_ptr<Transport>> transports_;
};

}  // namespace accullm::transport
