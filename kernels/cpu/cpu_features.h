// Runtime CPU feature checks shared by the SIMD kernels' dispatch.
#pragma once

namespace accullm::kernels {

// AVX2 + FMA + F16C: what every AVX2 kernel path here needs (checked once).
inline bool CpuHasAvx2Fma() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

}  // namespace accullm::kernels
