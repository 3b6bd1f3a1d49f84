// acc + the four-byte dot products of unsigned a and signed b per 32-bit lane (vpdpbusd),
// written in inline assembly. With the _mm512_dpbusd_epi32 intrinsic GCC 12 copies the
// accumulator into a fresh register and back around every use in the kernels' loops (two
// extra register moves per multiply-add, a third of the hot loop's instructions in the sparse
// rows kernel); tied to one register ("+v"), the accumulator stays put. Same instruction,
// same bits.
#pragma once

#include "kernels/cpu/cpu_features.h"

#if ACCULLM_HAVE_X86_SIMD
namespace accullm::kernels {

__attribute__((target("avx512f,avx512vnni"))) inline __m512i DotBytes512(__m512i acc, __m512i a, __m512i b) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

}  // namespace accullm::kernels
#endif
