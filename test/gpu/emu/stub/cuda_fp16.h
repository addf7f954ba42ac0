#pragma once
#include "cuda_runtime.h"
struct __half { unsigned short bits; };
inline __half __ushort_as_half(unsigned short b) { return __half{b}; }
inline float __half2float(__half h) { return emu_half_to_float(h.bits); }
