// CPU feature checks shared by the SIMD kernels' dispatch, and the one switch that compiles
// them in: x86-64 intrinsics are built only where ACCULLM_HAVE_X86_SIMD is 1 (x86-64 and not
// configured with -DACCULLM_SIMD=OFF); everywhere else only the scalar references exist.
#pragma once

#if defined(__x86_64__) && !defined(ACCULLM_NO_SIMD)
#define ACCULLM_HAVE_X86_SIMD 1
#include <immintrin.h>
#else
#define ACCULLM_HAVE_X86_SIMD 0
#endif

namespace accullm::kernels {

// AVX2 + FMA + F16C: what every AVX2 kernel path here needs (checked once).
inline bool CpuHasAvx2Fma() {
#if ACCULLM_HAVE_X86_SIMD
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
#else
  return false;
#endif
}

}  // namespace accullm::kernels
