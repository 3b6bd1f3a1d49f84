#include "cli/build_info.h"

#include "build_info.inc"
#include "kernels/cpu/isa.h"
#include "transport/nccl_channel.h"

namespace accullm {

std::string VersionString() { return std::string("accullm ") + ACCULLM_VERSION + " (commit " + ACCULLM_COMMIT + ")"; }

std::map<std::string, std::string> BuildInfoLabels() {
  return {{"version", ACCULLM_VERSION},
          {"commit", ACCULLM_COMMIT},
          {"isa", kernels::IsaName(kernels::ActiveIsa())},
          {"mpi", "true"},  // every build links OpenMPI (the pipeline's transport)
          {"nccl", transport::NcclBuilt() ? "true" : "false"},
          {"cuda", ACCULLM_CUDA_BUILT ? "true" : "false"}};
}

}  // namespace accullm
