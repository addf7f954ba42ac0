#include "cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define ATTNKIT_X86 1
#endif

namespace attnkit {
namespace {

#ifdef ATTNKIT_X86
unsigned long long read_xcr0() {
  unsigned int eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

Isa parse_isa_env() {
  const char* env = std::getenv("ATTNKIT_ISA");
  if (!env) return Isa::Avx512;
  if (!std::strcmp(env, "scalar")) return Isa::Scalar;
  if (!std::strcmp(env, "avx2")) return Isa::Avx2;
  return Isa::Avx512;
}

Isa initial_isa() {
  const Isa best = detect_best_isa();
  const Isa cap = parse_isa_env();
  return static_cast<int>(cap) < static_cast<int>(best) ? cap : best;
}

std::atomic<int> g_active{-1};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Scalar: return "scalar";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "scalar";
}

Isa detect_best_isa() {
#ifdef ATTNKIT_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::Scalar;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29), avx = c & (1u << 28);
  if (!(osxsave && avx && fma && f16c)) return Isa::Scalar;
  const unsigned long long xcr0 = read_xcr0();
  if ((xcr0 & 0x6) != 0x6) return Isa::Scalar;  // OS saves xmm and ymm state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Isa::Scalar;
  const bool avx2 = b & (1u << 5), avx512f = b & (1u << 16);
  if (!avx2) return Isa::Scalar;
  if (avx512f && (xcr0 & 0xe6) == 0xe6) return Isa::Avx512;  // OS saves opmask and zmm state
  return Isa::Avx2;
#else
  return Isa::Scalar;
#endif
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(initial_isa());
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) {
  const Isa best = detect_best_isa();
  g_active.store(static_cast<int>(isa) < static_cast<int>(best) ? static_cast<int>(isa) : static_cast<int>(best));
}

}  // namespace attnkit
