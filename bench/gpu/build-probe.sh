#!/usr/bin/env bash
# Builds bench/gpu/kernel_probe (kernels + probe, no Node, no C ABI) into build/probe/ for sm_90a.
# Run here (nvcc, no GPU needed); carry build/probe to the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
mkdir -p build/probe
"$NVCC" -std=c++17 -O3 -lineinfo --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a \
  -I native/include -o build/probe/kernel_probe bench/gpu/kernel_probe.cu \
  native/cuda/fused/fused_attention_sm90.cu native/cuda/fused/fused_attention_sm80.cu
echo "built build/probe/kernel_probe"
