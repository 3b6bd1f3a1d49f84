// The one switch that compiles the x86-64 SIMD kernels in: intrinsics are built only where
// ACCULLM_HAVE_X86_SIMD is 1 (x86-64 and not configured with -DACCULLM_SIMD=OFF); everywhere
// else only the scalar references exist. Which compiled-in variant runs is decided at run
// time by kernels/cpu/isa.h (ActiveIsa), never by a kernel probing the CPU itself.
#pragma once

#if defined(__x86_64__) && !defined(ACCULLM_NO_SIMD)
#define ACCULLM_HAVE_X86_SIMD 1
#include <immintrin.h>
#else
#define ACCULLM_HAVE_X86_SIMD 0
#endif
