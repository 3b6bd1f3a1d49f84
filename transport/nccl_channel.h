// NCCL between GPU stages: activations move device-to-device (NVLink / InfiniBand GPUDirect)
// while the batch descriptors keep travelling over the MPI transport. The communicator is
// bootstrapped over MPI: rank 0 creates the ncclUniqueId and broadcasts it (MPI_Bcast on
// the MPI transport's communicator), then every rank calls ncclCommInitRank.
// Built only when CUDA is found (ACCULLM_HAVE_CUDA); needs one GPU per rank at run time.
#pragma once

#include <cstddef>
#include <memory>

#include "absl/status/statusor.h"
#include "transport/mpi_transport.h"

namespace accullm::transport {

class NcclChannel {
 public:
  // Collective over every rank of `mpi`; `device` is this rank's CUDA device.
  static absl::StatusOr<std::unique_ptr<NcclChannel>> Create(MpiTransport& mpi, int device);
  ~NcclChannel();

  // Device buffers; both return when the transfer is enqueued on the channel's stream and
  // Synchronize() waits for it. bytes must match on both sides (the descriptor says how many).
  absl::Status Send(const void* device_buffer, size_t bytes, int peer);
  absl::Status Receive(void* device_buffer, size_t bytes, int peer);
  absl::Status Synchronize();
  int rank() const { return rank_; }

 private:
  NcclChannel() = default;
  struct State;
  std::unique_ptr<State> state_;
  int rank_ = 0;
};

// Number of CUDA devices visible (0 without a GPU or a driver).
int CudaDeviceCount();

}  // namespace accullm::transport
