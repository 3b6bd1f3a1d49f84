#include "transport/nccl_channel.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <thread>

#include "absl/strings/str_cat.h"

namespace accullm::transport {

static_assert(sizeof(ncclUniqueId) == kNcclUniqueIdBytes, "kNcclUniqueIdBytes must match NCCL_UNIQUE_ID_BYTES");

struct NcclChannel::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  void* send_buf = nullptr;
  void* recv_buf = nullptr;
  size_t send_cap = 0, recv_cap = 0;
  bool aborted = false;
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
// A device buffer of at least `bytes` (grown, never shrunk).
absl::Status Reserve(void*& buf, size_t& cap, size_t bytes) {
  if (bytes <= cap) return absl::OkStatus();
  if (buf != nullptr) cudaFree(buf);
  buf = nullptr;
  cap = 0;
  if (absl::Status s = Cuda(cudaMalloc(&buf, bytes), "cudaMalloc (NCCL activation buffer)"); !s.ok()) return s;
  cap = bytes;
  return absl::OkStatus();
}
}  // namespace

bool NcclBuilt() { return true; }

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

absl::StatusOr<std::unique_ptr<NcclChannel>> NcclChannel::Create(MpiTransport& mpi, int device,
                                                                 std::chrono::milliseconds timeout) {
  if (mpi.rank() < 1) return absl::InvalidArgumentError("NCCL channel: rank 0 joins with JoinNcclBootstrap");
  std::unique_ptr<NcclChannel> ch(new NcclChannel());
  ch->state_ = std::make_unique<State>();
  ch->rank_ = mpi.rank();
  ch->size_ = mpi.size();
  ch->device_ = device;
  ch->timeout_ = timeout;
  const int nranks = mpi.size() - 1, nccl_rank = mpi.rank() - 1;
  if (CudaDeviceCount() == 0)
    return absl::FailedPreconditionError(absl::StrCat("NCCL channel: rank ", mpi.rank(), " has no CUDA device"));
  if (absl::Status s = Cuda(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) return s;
  ncclUniqueId id{};
  if (mpi.rank() == 1) {
    if (absl::Status s = Nccl(ncclGetUniqueId(&id), "ncclGetUniqueId"); !s.ok()) return s;
  }
  // Collective with every rank (rank 0 too) on the transport's communicator; its progress
  // thread runs it, so MPI stays serialized while heartbeats keep flowing.
  if (absl::Status s = mpi.Broadcast(&id, sizeof(id), /*root=*/1, timeout); !s.ok())
    return absl::Status(s.code(), absl::StrCat("NCCL bootstrap (unique id from rank 1): ", s.message()));
  if (absl::Status s = Nccl(ncclCommInitRank(&ch->state_->comm, nranks, id, nccl_rank), "ncclCommInitRank"); !s.ok())
    return s;
  if (absl::Status s = Cuda(cudaStreamCreateWithFlags(&ch->state_->stream, cudaStreamNonBlocking), "cudaStreamCreate");
      !s.ok())
    return s;
  return ch;
}

NcclChannel::~NcclChannel() {
  if (state_ == nullptr) return;
  if (state_->comm != nullptr) (state_->aborted ? ncclCommAbort(state_->comm) : ncclCommDestroy(state_->comm));
  if (state_->stream != nullptr) cudaStreamDestroy(state_->stream);
  if (state_->send_buf != nullptr) cudaFree(state_->send_buf);
  if (state_->recv_buf != nullptr) cudaFree(state_->recv_buf);
}

absl::Status NcclChannel::Send(const void* buf, size_t bytes, int peer) {
  if (state_->aborted) return absl::UnavailableError("NCCL channel aborted after a timeout");
  if (peer < 1 || peer >= size_ || peer == rank_)
    return absl::InvalidArgumentError(absl::StrCat("NCCL send to rank ", peer));
  return Nccl(ncclSend(buf, bytes, ncclUint8, peer - 1, state_->comm, state_->stream), "ncclSend");
}

absl::Status NcclChannel::Receive(void* buf, size_t bytes, int peer) {
  if (state_->aborted) return absl::UnavailableError("NCCL channel aborted after a timeout");
  if (peer < 1 || peer >= size_ || peer == rank_)
    return absl::InvalidArgumentError(absl::StrCat("NCCL receive from rank ", peer));
  return Nccl(ncclRecv(buf, bytes, ncclUint8, peer - 1, state_->comm, state_->stream), "ncclRecv");
}

absl::Status NcclChannel::Synchronize() {
  if (state_->aborted) return absl::UnavailableError("NCCL channel aborted after a timeout");
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  while (true) {
    const cudaError_t e = cudaStreamQuery(state_->stream);
    if (e == cudaSuccess) return absl::OkStatus();
    if (e != cudaErrorNotReady) return Cuda(e, "NCCL channel stream");
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(state_->comm, &async) == ncclSuccess && async != ncclSuccess && async != ncclInProgress) {
      state_->aborted = true;
      return Nccl(async, "NCCL communicator");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      state_->aborted = true;  // the destructor aborts the communicator (a pending op never finishes)
      return absl::DeadlineExceededError(
          absl::StrCat("NCCL transfer on rank ", rank_, " not matched by its peer within ", timeout_.count(), " ms"));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

absl::Status NcclChannel::SendHost(const void* host, size_t bytes, int peer) {
  if (absl::Status s = Reserve(state_->send_buf, state_->send_cap, bytes); !s.ok()) return s;
  if (absl::Status s = Cuda(cudaMemcpyAsync(state_->send_buf, host, bytes, cudaMemcpyHostToDevice, state_->stream),
                            "cudaMemcpyAsync host->device");
      !s.ok())
    return s;
  if (absl::Status s = Send(state_->send_buf, bytes, peer); !s.ok()) return s;
  return Synchronize();
}

absl::Status NcclChannel::ReceiveHost(void* host, size_t bytes, int peer) {
  if (absl::Status s = Reserve(state_->recv_buf, state_->recv_cap, bytes); !s.ok()) return s;
  if (absl::Status s = Receive(state_->recv_buf, bytes, peer); !s.ok()) return s;
  if (absl::Status s = Cuda(cudaMemcpyAsync(host, state_->recv_buf, bytes, cudaMemcpyDeviceToHost, state_->stream),
                            "cudaMemcpyAsync device->host");
      !s.ok())
    return s;
  return Synchronize();
}

}  // namespace accullm::transport
