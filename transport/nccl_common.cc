// The parts of nccl_channel.h every build has: the coordinator's side of the bootstrap, the
// local rank, and (without NCCL) the refusals.
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "transport/nccl_channel.h"

namespace accullm::transport {

int LocalRank(int fallback) {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"}) {
    const char* s = std::getenv(v);
    if (s == nullptr || *s == '\0') continue;
    char* end = nullptr;
    const long r = std::strtol(s, &end, 10);
    if (*end == '\0' && r >= 0 && r < (1 << 20)) return static_cast<int>(r);
  }
  return fallback;
}

absl::Status JoinNcclBootstrap(MpiTransport& mpi, std::chrono::milliseconds timeout) {
  if (mpi.size() < 2) return absl::FailedPreconditionError("NCCL bootstrap: no stage ranks");
  unsigned char id[kNcclUniqueIdBytes] = {};
  absl::Status st = mpi.Broadcast(id, sizeof(id), /*root=*/1, timeout);
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat("NCCL bootstrap (unique id from rank 1): ", st.message()));
  return absl::OkStatus();
}

#ifndef ACCULLM_HAVE_NCCL

bool NcclBuilt() { return false; }
int CudaDeviceCount() { return 0; }

struct NcclChannel::State {};

absl::StatusOr<std::unique_ptr<NcclChannel>> NcclChannel::Create(MpiTransport&, int, std::chrono::milliseconds) {
  return absl::FailedPreconditionError("this build has no NCCL (CUDA and NCCL were not found at configure time)");
}
NcclChannel::~NcclChannel() = default;
absl::Status NcclChannel::Send(const void*, size_t, int) {
  return absl::FailedPreconditionError("no NCCL in this build");
}
absl::Status NcclChannel::Receive(void*, size_t, int) { return absl::FailedPreconditionError("no NCCL in this build"); }
absl::Status NcclChannel::Synchronize() { return absl::FailedPreconditionError("no NCCL in this build"); }
absl::Status NcclChannel::SendHost(const void*, size_t, int) {
  return absl::FailedPreconditionError("no NCCL in this build");
}
absl::Status NcclChannel::ReceiveHost(void*, size_t, int) {
  return absl::FailedPreconditionError("no NCCL in this build");
}

#endif

}  // namespace accullm::transport
