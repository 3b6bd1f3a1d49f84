// NCCL between GPU stages: activations move device-to-device (NVLink / InfiniBand GPUDirect)
// while the batch descriptors keep travelling over the MPI transport. The communicator spans
// the stage ranks only (world ranks 1..N; the coordinator, rank 0, needs no GPU): it is
// bootstrapped over MPI by a broadcast on the transport's communicator in which every rank
// takes part (rank 1 creates the ncclUniqueId; rank 0 joins with JoinNcclBootstrap), then
// ranks 1..N call ncclCommInitRank (nranks N, NCCL rank = world rank - 1).
// The NCCL code is built only when CUDA and NCCL are found (ACCULLM_HAVE_NCCL); without them
// NcclBuilt() is false and Create refuses. Needs one GPU per stage rank at run time.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "transport/mpi_transport.h"

namespace accullm::transport {

inline constexpr size_t kNcclUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES (checked in nccl_channel.cc)

// True when this binary was built with NCCL.
bool NcclBuilt();

// Number of CUDA devices visible (0 without a GPU, a driver, or a CUDA build).
int CudaDeviceCount();

// This process's rank among the ranks on its host (OMPI_COMM_WORLD_LOCAL_RANK, MPICH's
// MPI_LOCALRANKID, SLURM_LOCALID), or `fallback` when the launcher says nothing.
int LocalRank(int fallback);

// Rank 0's part of the bootstrap: the broadcast of the unique id (it needs neither a GPU
// nor NCCL). Call it where the stages call NcclChannel::Create, after the same messages.
absl::Status JoinNcclBootstrap(MpiTransport& mpi, std::chrono::milliseconds timeout);

class NcclChannel {
 public:
  // Collective over every rank of `mpi` (rank 0 calls JoinNcclBootstrap instead); called on
  // ranks 1..size-1 with this rank's CUDA `device`. `timeout` bounds the bootstrap broadcast
  // and every transfer (Synchronize): a peer that never matches is an error, not a hang.
  static absl::StatusOr<std::unique_ptr<NcclChannel>> Create(MpiTransport& mpi, int device,
                                                             std::chrono::milliseconds timeout);
  ~NcclChannel();

  // `peer` is a world rank (1..size-1). Device buffers; both return when the transfer is
  // enqueued on the channel's stream and Synchronize() waits for it. bytes must match on
  // both sides (the descriptor says how many).
  absl::Status Send(const void* device_buffer, size_t bytes, int peer);
  absl::Status Receive(void* device_buffer, size_t bytes, int peer);
  // Waits for the stream up to the channel's timeout; past it the communicator is aborted
  // (ncclCommAbort) and every later call fails.
  absl::Status Synchronize();

  // Host memory in and out, through reusable device buffers (grown as needed): the host
  // bytes go to the device (cudaMemcpyAsync), ncclSend to `peer`, and the call returns when
  // the peer received them; SendHost's peer must call ReceiveHost with the same size (NCCL
  // receive into the device buffer, then device → host).
  absl::Status SendHost(const void* host, size_t bytes, int peer);
  absl::Status ReceiveHost(void* host, size_t bytes, int peer);

  int rank() const { return rank_; }      // world rank
  int device() const { return device_; }  // CUDA device

 private:
  NcclChannel() = default;
  struct State;
  std::unique_ptr<State> state_;
  int rank_ = 0, size_ = 0, device_ = 0;
  std::chrono::milliseconds timeout_{0};
};

}  // namespace accullm::transport
