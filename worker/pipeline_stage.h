// A pipeline stage (ranks 1..N under mpirun): owns a contiguous layer range and the KV
// caches of those layers, runs its part of every micro-batch in arrival order, forwards the
// activations to the next stage; the last stage applies final norm + LM head, samples, and
// sends only token ids (and logprobs when asked) back to the coordinator (rank 0).
// A heartbeat thread reports to the coordinator every Hello::heartbeat_ms; a coordinator
// silent for Hello::timeout_ms ends the stage (never a hang).
#pragma once

#include "model/transformer.h"
#include "transport/transport.h"

namespace accullm::worker {

// Returns the process exit status: 0 after Shutdown, non-zero on failure (logged).
int RunPipelineStage(transport::Transport& transport, Transformer& model);

}  // namespace accullm::worker
