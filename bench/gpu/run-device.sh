#!/usr/bin/env bash
# Everything the GPU machine runs in one call: the kernel checks through the C ABI (attention,
# decode), the node GPU suite, the kernel probe (and probe variants, A/B), and the side-by-side
# benchmarks against PyTorch (attention; decode over a paged KV cache). Logs and JSON go to $OUT
# (or ./gpu-out). Prepare here first:
#   npm run build:ts && npx cmake-js compile --CDATTNKIT_CUDA=ON --CDATTNKIT_CUDA_GENCODE="arch=compute_90a,code=sm_90a"
#   bench/gpu/build-probe.sh && ../shared/device/pack.sh
#   mkdir -p build/carry && tar -C build -cf - probe Release/libattnkit_cuda.so Release/attnkit.node | xz -T2 > build/carry/bundle.tar.xz
# (the binaries travel compressed: the device tool carries 64 MiB at most), then call the device
# tool with carry [".device", "build/carry", "dist", "node_modules/node-gyp-build"] and the
# command `bash bench/gpu/run-device.sh [quick | linear]`. `linear`: only linear attention (its
# kernel checks, the GPU suite's linear tests and bench/gpu/linear.py against flash-linear-attention,
# whose source must be carried in build/fla_src; never committed).
set -uo pipefail
cd "$(dirname "$0")/../.."
[[ -f build/carry/bundle.tar.xz ]] && tar -C build -xJf build/carry/bundle.tar.xz
out=${OUT:-gpu-out}
mkdir -p "$out"
lib=build/Release/libattnkit_cuda.so
quick=${1:-}
status=0
source .device/env.sh || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader | tee "$out/gpu.txt"

linear_bench() {
  echo "== linear attention vs flash-linear-attention (bench/gpu/linear.py)"
  PYTHONUNBUFFERED=1 timeout 200 python3 bench/gpu/linear.py --lib $lib --fla build/fla_src --out "$out/linear.json" \
    2>&1 | grep -v -i warn | tee "$out/linear.log" || status=1
}
if [[ $quick == linear ]]; then
  echo "== kernels_check (linear)"
  timeout 120 python3 test/gpu/kernels_check.py $lib --linear-only > "$out/kernels_check.log" 2>&1 || status=1
  grep -v "^ok" "$out/kernels_check.log" | tail -15
  echo "== node test/gpu/run.js --filter linear"
  timeout 200 node test/gpu/run.js --filter linear > "$out/node_gpu.log" 2>&1 || status=1
  grep -E "FAIL|GPU:" "$out/node_gpu.log" | head -30
  linear_bench
  exit $status
fi

echo "== kernels_check"
timeout 240 python3 test/gpu/kernels_check.py $lib ${quick:+--quick} > "$out/kernels_check.log" 2>&1 || status=1
grep -v "^ok" "$out/kernels_check.log" | tail -15

echo "== decode_check (decode attention and KV append through the C ABI)"
timeout 120 python3 test/gpu/decode_check.py --lib $lib ${quick:+--quick} > "$out/decode_check.log" 2>&1 || status=1
grep -v "^ok" "$out/decode_check.log" | tail -8

echo "== node test/gpu/run.js"
timeout 300 node test/gpu/run.js > "$out/node_gpu.log" 2>&1 || status=1
grep -E "FAIL|✗|GPU:" "$out/node_gpu.log" | tail -15

if [[ -x build/probe/kernel_probe ]]; then
  echo "== kernel probe"
  timeout 120 build/probe/kernel_probe ${quick:+check} > "$out/probe.log" 2>&1 || status=1
  grep -v "^ok" "$out/probe.log"
fi

# Variants built with PROBE_NAME=kernel_probe_<name> (build-probe.sh): timed in alternation with
# the main probe, two rounds, so a before/after comparison shares one machine state.
variants=(build/probe/kernel_probe_*)
if [[ -x build/probe/kernel_probe && -x ${variants[0]} ]]; then
  echo "== probe A/B"
  for round in 1 2; do
    for bin in build/probe/kernel_probe "${variants[@]}"; do
      echo "-- $(basename "$bin") round $round" >> "$out/probe_ab.log"
      timeout 60 "$bin" time >> "$out/probe_ab.log" 2>&1 || status=1
    done
  done
  grep -E "^--|^time" "$out/probe_ab.log"
fi

# ATTNKIT_SKIP_PEERS=1: leave out the fused / sparse peers (~4 minutes) when their kernels did not
# change, to fit the rest in one call.
if [[ -z ${ATTNKIT_SKIP_PEERS:-} ]]; then
  echo "== peers (PyTorch SDPA flash / cuDNN, FlexAttention) and attnkit through the C ABI"
  PYTHONUNBUFFERED=1 timeout 420 python3 bench/gpu/peers.py --lib $lib --out "$out/gpu-latest.json" ${quick:+--quick} \
    2>&1 | grep -v -i warn | tee "$out/peers.log" | tail -12 || status=1
fi
linear_bench
echo "== decode over a paged KV cache vs copy bandwidth and SDPA (bench/gpu/decode.py)"
PYTHONUNBUFFERED=1 timeout 150 python3 bench/gpu/decode.py --lib $lib --out "$out/decode.json" ${quick:+--quick} \
  2>&1 | grep -v -i warn | tee "$out/decode.log" | tail -20 || status=1
exit $status
