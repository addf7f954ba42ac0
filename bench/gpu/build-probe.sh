#!/usr/bin/env bash
# Builds bench/gpu/kernel_probe (kernels + probe, no Node, no C ABI) into build/probe/ for sm_90a.
# Extra arguments are passed to nvcc (e.g. -DATTNKIT_SM90_PINGPONG=0) and PROBE_NAME names the
# binary, so variants can be timed side by side in one device call; PROBE_SM90_SOURCE swaps in
# another copy of fused_attention_sm90.cu (e.g. the last commit's, for a before/after A/B).
# Run here (nvcc, no GPU needed); carry build/probe to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
mkdir -p build/probe
"$NVCC" -std=c++17 -O3 -lineinfo --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a \
  -I native/include "$@" -o "build/probe/${PROBE_NAME:-kernel_probe}" bench/gpu/kernel_probe.cu \
  "${PROBE_SM90_SOURCE:-native/cuda/fused/fused_attention_sm90.cu}" native/cuda/fused/fused_attention_sm80.cu
echo "built build/probe/${PROBE_NAME:-kernel_probe}"
