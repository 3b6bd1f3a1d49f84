// A pipeline stage (ranks 1..N under mpirun): owns a contiguous layer range and the KV
// caches of those layers, runs its part of every micro-batch in arrival order, forwards the
// activations to the next stage; the last stage applies final norm + LM head, samples, and
// sends only token ids (and logprobs when asked) back to the coordinator (rank 0).
// With --activation-transport nccl the activations go over NCCL (host -> device -> ncclSend,
// ncclRecv -> device -> host) and only the batch descriptor over the transport.
// A heartbeat thread reports to the coordinator every Hello::heartbeat_ms; a coordinator
// silent for twice Hello::timeout_ms ends the stage (never a hang; time the stage itself was
// not running does not count, see stall_meter.h).
#pragma once

#include "model/transformer.h"
#include "transport/mpi_transport.h"
#include "transport/transport.h"

namespace accullm::pipeline {

// Returns the process exit status: 0 after Shutdown, non-zero on failure (logged).
// `mpi` (the same transport, when it is MPI) is needed for --activation-transport nccl: the
// stage then refuses the hello unless this build has NCCL and this host a CUDA device, and
// after the handshake joins the NCCL bootstrap (transport/nccl_channel.h).
int RunPipelineStage(transport::Transport& transport, Transformer& model, transport::MpiTransport* mpi = nullptr);

}  // namespace accullm::pipeline
