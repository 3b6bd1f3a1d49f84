// The one CPU instruction-set dispatch seam. Every kernel entry point asks ActiveIsa() which
// variant to run instead of probing CPU features itself, so adding an ISA (or forcing one for
// a comparison) touches this file and the kernels, never model code (CTranslate2's
// "one dispatch seam" idea).
//
// The level is detected once, on first use, from the CPU's features:
//   kAvx2   = AVX2 + FMA + F16C (what every AVX2 kernel here needs)
//   kAvx512 = kAvx2 + AVX-512 F/BW/VL/VNNI (VNNI because the INT8 dot products that will
//             justify AVX-512 kernels need it; a Skylake-X without it runs AVX2)
// and can be lowered with the environment variable ACCULLM_ISA=scalar|avx2|avx512 (e.g. to
// compare against the scalar references on a production machine). Asking for more than the
// CPU has clamps down to what it has, with one warning on stderr. An unknown value is
// reported on stderr and ignored (the detected level runs): the level is resolved lazily on
// the first kernel call, where there is no Status to return and aborting a running server
// would be worse than running the fastest correct kernels.
//
// Without ACCULLM_HAVE_X86_SIMD (non-x86 or -DACCULLM_SIMD=OFF) the detected level is always
// kScalar. A kernel without an AVX-512 variant runs its AVX2 one at kAvx512.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace accullm::kernels {

// Ordered: a level includes every level below it.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// "scalar", "avx2", "avx512" (the ACCULLM_ISA spellings).
const char* IsaName(Isa isa);
// The inverse of IsaName (ASCII case-insensitive); nullopt for anything else.
std::optional<Isa> ParseIsa(std::string_view name);

// The best level this CPU (and this build) supports, probed once.
Isa DetectedIsa();

// What ACCULLM_ISA's value does on a CPU whose best level is `detected`: `env_value` null or
// empty keeps `detected`. `warning` is non-empty when the value was clamped or not understood
// (the text printed on stderr). Pure, for tests.
struct IsaResolution {
  Isa isa = Isa::kScalar;
  std::string warning;
};
IsaResolution ResolveIsa(const char* env_value, Isa detected);

// The level every kernel entry point dispatches on: DetectedIsa() lowered by ACCULLM_ISA,
// resolved on the first call (which prints the warning, if any, once).
Isa ActiveIsa();

// Every level this CPU can run, lowest first (tests run each kernel at each of them).
std::vector<Isa> SupportedIsas();

// Test hook: makes ActiveIsa() return `isa`, clamped to DetectedIsa() so a test can never
// run instructions the CPU lacks; returns the level now active.
Isa SetActiveIsaForTesting(Isa isa);

// Sets the level for a scope and restores the previous one (tests).
class ScopedIsaForTesting {
 public:
  explicit ScopedIsaForTesting(Isa isa) : previous_(ActiveIsa()) { SetActiveIsaForTesting(isa); }
  ~ScopedIsaForTesting() { SetActiveIsaForTesting(previous_); }
  ScopedIsaForTesting(const ScopedIsaForTesting&) = delete;
  ScopedIsaForTesting& operator=(const ScopedIsaForTesting&) = delete;

 private:
  Isa previous_;
};

}  // namespace accullm::kernels
