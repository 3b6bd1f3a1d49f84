#include "transport/nccl_channel.h"

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include "absl/strings/str_cat.h"

namespace accullm::transport {

struct NcclChannel::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
};

namespace {
absl::Status Nccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", ncclGetErrorString(r)));
}
absl::Status Cuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}
}  // namespace

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

absl::StatusOr<std::unique_ptr<NcclChannel>> NcclChannel::Create(MpiTransport& mpi, int device) {
  if (CudaDeviceCount() == 0) return absl::FailedPreconditionError("NCCL channel: no CUDA device on this host");
  std::unique_ptr<NcclChannel> ch(new NcclChannel());
  ch->state_ = std::make_unique<State>();
  ch->rank_ = mpi.rank();
  if (absl::Status s = Cuda(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) return s;
  ncclUniqueId id;
  if (mpi.rank() == 0) {
    if (absl::Status s = Nccl(ncclGetUniqueId(&id), "ncclGetUniqueId"); !s.ok()) return s;
  }
  // The transport's progress thread also calls MPI: this collective runs before any traffic
  // (at startup, before the first Send), which keeps the calls serialized in practice.
  MPI_Comm comm = *static_cast<MPI_Comm*>(mpi.communicator());
  if (MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm) != MPI_SUCCESS)
    return absl::UnavailableError("NCCL bootstrap: MPI_Bcast of the unique id failed");
  if (absl::Status s = Nccl(ncclCommInitRank(&ch->state_->comm, mpi.size(), id, mpi.rank()), "ncclCommInitRank"); !s.ok())
    return s;
  if (absl::Status s = Cuda(cudaStreamCreate(&ch->state_->stream), "cudaStreamCreate"); !s.ok()) return s;
  return ch;
}

NcclChannel::~NcclChannel() {
  if (state_ == nullptr) return;
  if (state_->comm != nullptr) ncclCommDestroy(state_->comm);
  if (state_->stream != nullptr) cudaStreamDestroy(state_->stream);
}

absl::Status NcclChannel::Send(const void* buf, size_t bytes, int peer) {
  return Nccl(ncclSend(buf, bytes, ncclUint8, peer, state_->comm, state_->stream), "ncclSend");
}

absl::Status NcclChannel::Receive(void* buf, size_t bytes, int peer) {
  return Nccl(ncclRecv(buf, bytes, ncclUint8, peer, state_->comm, state_->stream), "ncclRecv");
}

absl::Status NcclChannel::Synchronize() { return Cuda(cudaStreamSynchronize(state_->stream), "cudaStreamSynchronize"); }

}  // namespace accullm::transport
