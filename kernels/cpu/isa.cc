#include "kernels/cpu/isa.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "common/enum_names.h"
#include "kernels/cpu/cpu_features.h"

#if ACCULLM_HAVE_X86_SIMD
#include <cpuid.h>
#endif

namespace accullm::kernels {

namespace {

// The ACCULLM_ISA spellings (parsed ASCII case-insensitively).
constexpr EnumName<Isa> kIsaNames[] = {{Isa::kScalar, "scalar"}, {Isa::kAvx2, "avx2"}, {Isa::kAvx512, "avx512"}};
static_assert(NamesEveryValue(kIsaNames, Isa::kScalar, Isa::kAvx512));

Isa ProbeCpu() {
#if ACCULLM_HAVE_X86_SIMD
  __builtin_cpu_init();
  // F16C from CPUID leaf 1 (ECX bit 29): clang before 15 has no "f16c" for __builtin_cpu_supports.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (!avx2) return Isa::kScalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return avx512 ? Isa::kAvx512 : Isa::kAvx2;
#else
  return Isa::kScalar;
#endif
}

Isa ResolveFromEnvironment() {
  IsaResolution r = ResolveIsa(std::getenv("ACCULLM_ISA"), DetectedIsa());
  if (!r.warning.empty()) std::fprintf(stderr, "accullm: warning: %s\n", r.warning.c_str());
  return r.isa;
}

// Relaxed loads suffice: the value is one enum, and a test that changes it does so between
// kernel calls on its own thread.
std::atomic<Isa>& ActiveIsaSlot() {
  static std::atomic<Isa> slot{ResolveFromEnvironment()};
  return slot;
}

}  // namespace

const char* IsaName(Isa isa) { return NameOf(kIsaNames, isa); }

std::optional<Isa> ParseIsa(std::string_view name) {
  std::string lower(name);
  for (char& ch : lower) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  absl::StatusOr<Isa> isa = ParseName(kIsaNames, lower, "ISA");
  if (!isa.ok()) return std::nullopt;
  return *isa;
}

Isa DetectedIsa() {
  static const Isa detected = ProbeCpu();
  return detected;
}

IsaResolution ResolveIsa(const char* env_value, Isa detected) {
  if (env_value == nullptr || *env_value == '\0') return {detected, ""};
  const std::optional<Isa> requested = ParseIsa(env_value);
  if (!requested.has_value()) {
    return {detected, std::string("ACCULLM_ISA=\"") + env_value + "\" is not one of " + NameList(kIsaNames) +
                          "; using the detected level " + IsaName(detected)};
  }
  if (*requested > detected) {
    return {detected, std::string("ACCULLM_ISA=") + IsaName(*requested) + " but this CPU (or build) supports at most " +
                          IsaName(detected) + "; using " + IsaName(detected)};
  }
  return {*requested, ""};
}

Isa ActiveIsa() { return ActiveIsaSlot().load(std::memory_order_relaxed); }

std::vector<Isa> SupportedIsas() {
  std::vector<Isa> levels;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (isa <= DetectedIsa()) levels.push_back(isa);
  }
  return levels;
}

Isa SetActiveIsaForTesting(Isa isa) {
  const Isa effective = isa <= DetectedIsa() ? isa : DetectedIsa();
  ActiveIsaSlot().store(effective, std::memory_order_relaxed);
  return effective;
}

}  // namespace accullm::kernels
