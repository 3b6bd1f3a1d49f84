// The one switch that compiles the x86-64 SIMD kernels in: intrinsics are built only where
// ACCULLM_HAVE_X86_SIMD is 1 (x86-64 and not configured with -DACCULLM_SIMD=OFF); everywhere
// else only the scalar references exist. Which compiled-in variant runs is decided at run
// time by kernels/cpu/isa.h (ActiveIsa), never by a kernel probing the CPU itself.
#pragma once

#if defined(__x86_64__) && !defined(ACCULLM_NO_SIMD)
#define ACCULLM_HAVE_X86_SIMD 1
// GCC 12 reports the _mm512_undefined_*() placeholders inside its own AVX-512 intrinsics
// (_mm512_max_ps, _mm512_cvtps_epi32, ...) as (maybe-)uninitialized once they are inlined; the
// warning is located in the header, so it is silenced for the header's lines only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#define ACCULLM_HAVE_X86_SIMD 0
#endif
