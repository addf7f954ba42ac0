#!/usr/bin/env bash
# Builds the CPU-emulated libattnkit_cuda (see README.md) into ${1:-/tmp/attnkit-emu}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-/tmp/attnkit-emu}
mkdir -p "$out/src/fused" "$out/src/merge" "$out/src/sparse" "$out/src/decode"
cp "$root"/native/cuda/fused/*.cuh "$root"/native/cuda/fused/*.h "$root"/native/cuda/fused/*.cu "$out/src/fused/"
cp "$root"/native/cuda/merge/* "$out/src/merge/"
cp "$root"/native/cuda/sparse/* "$out/src/sparse/"
cp "$root"/native/cuda/decode/* "$out/src/decode/"
cp "$root/native/cuda/c_api.cu" "$out/src/"
# The only CUDA-only syntax in these sources: launches, dynamic shared memory, f16/bf16 PTX
# (decode/async_copy.cuh keeps its cp.async PTX behind __CUDA_ARCH__, which g++ never defines).
python3 - "$out/src" <<'PY'
import re, sys
src = sys.argv[1]
for f in ['c_api.cu', 'fused/attention_problem.cuh', 'fused/fused_attention_generic.cu', 'merge/merge_states.cu',
          'sparse/topk_select.cu', 'decode/decode_attention.cu', 'decode/kv_append.cu']:
    p = src + '/' + f
    s = open(p).read()
    s = re.sub(r'(\w+)<<<(.*?)>>>\((.*?)\);', r'emu_launch(\1, \2, \3);', s)
    s = s.replace('extern __shared__ float4 smem_storage[];', 'float4* smem_storage = emu_shared_memory(0);')
    s = s.replace('asm("{ .reg .f16 h; mov.b16 h, %1; cvt.f32.f16 %0, h; }" : "=f"(f) : "h"(bits));', 'f = emu_half_to_float(bits);')
    s = s.replace('asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(bits) : "f"(x));', 'bits = emu_float_to_bf16(x);')
    s = s.replace('asm("{ .reg .f16 h; cvt.rn.f16.f32 h, %1; mov.b16 %0, h; }" : "=h"(bits) : "f"(x));', 'bits = emu_float_to_half(x);')
    # cvt.rn.{bf16x2,f16x2}.f32 d, hi, lo: hi in the upper half
    s = s.replace('asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));',
                  'r = emu_float_to_bf16(lo) | (uint32_t(emu_float_to_bf16(hi)) << 16);')
    s = s.replace('asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));',
                  'r = emu_float_to_half(lo) | (uint32_t(emu_float_to_half(hi)) << 16);')
    if 'asm(' in s or '<<<' in s:
        sys.exit('emu/build.sh: %s has CUDA-only syntax the emulator does not rewrite' % f)
    open(p, 'w').write(s)
PY
# sm80 / sm90 kernels are not emulated: their placeholders (or any supports() == false) compile as is.
g++ -std=c++20 -O2 -pthread -fPIC -shared -fvisibility=hidden -I"$here/stub" -I"$out/src" -I"$root/native/include" \
  -x c++ "$out/src/c_api.cu" "$out/src/fused/fused_attention_generic.cu" "$out/src/merge/merge_states.cu" \
  "$out/src/sparse/topk_select.cu" "$out/src/decode/decode_attention.cu" "$out/src/decode/kv_append.cu" \
  "$here/emu_runtime.cpp" "$here/sm_stubs.cpp" -o "$out/libattnkit_cuda_emu.so"
echo "$out/libattnkit_cuda_emu.so"
