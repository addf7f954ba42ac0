#!/usr/bin/env bash
# Nsight Compute on one probe shape (GPU machine, Firecracker runtime: ncu reads the counters
# there). Writes a text summary (throughputs, warp stall reasons, pipe use) and the per-SASS
# instruction stall samples of the attention kernel to $OUT, for reading back here.
#   bash bench/gpu/profile.sh "S4096 D128" [probe binary] [tag]
# The filter picks the probe's `time` shapes whose name contains it; the first attention launch
# after the warm-up is profiled (clocks left alone, as METHOD.md asks).
set -uo pipefail
cd "$(dirname "$0")/../.."
filter=${1:?shape filter, e.g. "S4096 D128"}
probe=${2:-build/probe/kernel_probe}
tag=${3:-$(echo "$filter" | tr -c 'A-Za-z0-9' '_')}
out=${OUT:-gpu-out}
mkdir -p "$out"
rep="/tmp/profile_$tag"
timeout 240 ncu --clock-control none --kernel-name regex:fused_attention_sm90 --launch-skip 3 --launch-count 1 \
  --set full --import-source yes -f -o "$rep" "$probe" time "$filter" > "$out/ncu_$tag.run.log" 2>&1
ncu --import "$rep.ncu-rep" --page details > "$out/ncu_$tag.details.txt" 2>&1
# Per-instruction samples: keep the columns that say where warps wait.
ncu --import "$rep.ncu-rep" --page source --csv --print-source sass > "/tmp/ncu_$tag.sass.csv" 2>&1
python3 - "/tmp/ncu_$tag.sass.csv" "$out/ncu_$tag.sass.txt" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
head = next((i for i, r in enumerate(rows) if "Source" in r), None)
if head is None:
    open(sys.argv[2], "w").write("".join(",".join(r) + "\n" for r in rows[:50])); sys.exit()
h = rows[head]
want = [c for c in h if c in ("Address", "Source") or "Sampling" in c or "Warp Stall" in c or c == "Instructions Executed"]
idx = [h.index(c) for c in want]
with open(sys.argv[2], "w") as f:
    f.write("\t".join(want) + "\n")
    for r in rows[head + 1:]:
        if len(r) == len(h): f.write("\t".join(r[i] for i in idx) + "\n")
EOF
echo "profile $tag: $(wc -l < "$out/ncu_$tag.sass.txt") sass rows; $(grep -c . "$out/ncu_$tag.details.txt") detail lines"
