// The MPI transport: host-memory messages between the processes of one mpirun job.
//
// Only the progress thread talks to MPI after initialization (MPI_THREAD_SERIALIZED or
// better is required): it starts queued non-blocking sends (MPI_Isend), completes them
// (MPI_Test), and receives with matched probes (MPI_Improbe + MPI_Mrecv) so a message's
// size is known before its buffer is allocated, and refused above kMaxMessageBytes. The
// communicator is a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN: an MPI failure
// becomes an error from Receive naming the call, never an abort inside the library.
// MPI has no authentication: run it on a private network only (docs/cluster.md).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "transport/transport.h"

namespace accullm::transport {

// True when this process was started by an MPI launcher (OpenMPI, MPICH, PMI).
bool LaunchedByMpi();

class MpiTransport final : public Transport {
 public:
  // Initializes MPI (once per process) and starts the progress thread.
  static absl::StatusOr<std::unique_ptr<MpiTransport>> Create();
  ~MpiTransport() override;  // flushes queued sends (bounded), stops the thread, finalizes MPI

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  absl::Status Send(int dest, std::vector<uint8_t> bytes) override;
  absl::StatusOr<std::optional<Envelope>> Receive(std::chrono::milliseconds timeout) override;
  uint64_t bytes_sent() const override { return bytes_sent_.load(); }

  // Ends every process of the job (after a peer failed: MPI_Finalize could wait forever).
  [[noreturn]] void Abort(int code);
  // The host name of this process (logs: which rank runs where).
  const std::string& host() const { return host_; }
  // The duplicated world communicator as an opaque handle.
  void* communicator() { return comm_handle_; }
  // Collective: every rank calls it once, in the same order, with the same `bytes` and
  // `root`; `data` ends up holding root's bytes everywhere (the NCCL bootstrap's unique id).
  // The progress thread runs it (MPI_Ibcast, tested beside the point-to-point traffic), so
  // MPI stays single-threaded and heartbeats keep flowing meanwhile. DeadlineExceeded when
  // this rank's part did not complete within `timeout` (never a hang). Not a barrier: the
  // root, or a rank that needs nothing from a late one, may return before every rank joined.
  absl::Status Broadcast(void* data, size_t bytes, int root, std::chrono::milliseconds timeout);

 private:
  MpiTransport() = default;
  void Progress();
  void Fail(const std::string& what);
  struct Collective;

  int rank_ = 0, size_ = 0;
  std::string host_;
  void* comm_handle_ = nullptr;  // MPI_Comm*, kept opaque so mpi.h stays out of this header
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;  // wakes the progress thread (sends) and receivers (inbox)
  std::deque<std::pair<int, std::vector<uint8_t>>> outbox_;
  std::deque<Envelope> inbox_;
  std::string error_;                       // guarded by mu_; set once
  std::shared_ptr<Collective> collective_;  // guarded by mu_: the broadcast asked for, until done
  std::thread thread_;
};

}  // namespace accullm::transport
