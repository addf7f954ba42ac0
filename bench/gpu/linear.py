#!/usr/bin/env python3
"""Linear attention on the GPU (issue 5), side by side in one process: attnkit's linear_attention
(through its C ABI, on torch's stream) against flash-linear-attention's chunked kernels on the very
same tensors, bf16, [B, T, H, D] memory (fla's layout; attnkit reads it as a [B, H, T, D] view),
forward with the final state:
  - per-step log gates: fla chunk_simple_gla; per-dimension log gates (GLA): fla chunk_gla;
  - attnkit's scaling: time(S=65536) / time(S=8192);
  - attnkit linear vs attnkit causal softmax attention at S=32768.
fla's source is not part of the repository: pass its directory with --fla (a checkout with fla/).
Each timing is the median of CUDA-event times of back-to-back calls after warm-up. Also reports
attnkit's output and final state against fla's (max|a - b| / max|b|), so both time the same math.

  python3 bench/gpu/linear.py --lib build/Release/libattnkit_cuda.so --fla build/fla_src --out gpu-out/linear.json
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attnkit_ctypes import AttnkitCuda  # noqa: E402
from timing import median_ms as bench  # noqa: E402


def rel(a, b):
    a, b = a.float(), b.float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--fla", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    chunk_simple_gla = chunk_gla = None
    if args.fla:
        sys.path.insert(0, args.fla)
        try:
            from fla.ops.simple_gla import chunk_simple_gla
            from fla.ops.gla import chunk_gla
        except Exception as e:  # fla is optional: attnkit's own rows still run
            print("fla import failed:", repr(e)[:300], flush=True)
    ak = AttnkitCuda(args.lib)
    stream = torch.cuda.current_stream()
    B, H, D = 4, 16, 128
    scale = 1.0 / math.sqrt(D)
    rows, res = [], {"device": torch.cuda.get_device_name(), "shape": f"B{B} H{H} D{D} bf16"}

    def row(name, ms, **extra):
        rows.append(dict(name=name, ms=round(ms, 4), **extra))
        print(f"{name:58s} {ms:9.3f} ms " + " ".join(f"{k}={v}" for k, v in extra.items()), flush=True)

    def inputs(S):
        torch.manual_seed(S)
        q = torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn_like(q) * 0.3
        v = torch.randn_like(q)
        g = -torch.rand(B, S, H, device="cuda", dtype=torch.float32) * 0.1
        gk = -torch.rand(B, S, H, D, device="cuda", dtype=torch.float32) * 0.1
        return q, k, v, g, gk

    view = lambda t: t.transpose(1, 2)  # [B, T, H, D] -> [B, H, T, D], no copy
    # attnkit first (fla's first calls compile and autotune for a while), then fla on the same inputs.
    lengths = (8192, 65536) if not args.quick else (8192,)
    for S in lengths:
        reps = 20 if S <= 8192 else 5
        q, k, v, g, gk = inputs(S)
        out = torch.empty_like(q)
        state = torch.empty(B, H, D, D, device="cuda", dtype=torch.float32)
        for kind, gates in (("scalar", g), ("GLA", gk)):
            call = ak.prepare_linear(view(q), view(k), view(v), view(out), gates=view(gates), state_out=state, scale=scale, stream=stream)
            ms = bench(call, reps)
            res[f"attnkit {kind} S{S}"] = ms
            row(f"attnkit linear_attention {kind} gates S{S}", ms)
        del q, k, v, g, gk, out, state
        torch.cuda.empty_cache()
    for kind in ("scalar", "GLA"):
        if f"attnkit {kind} S65536" in res:
            r = res[f"attnkit {kind} S65536"] / res[f"attnkit {kind} S8192"]
            res[f"attnkit {kind} S65536/S8192"] = r
            print(f"attnkit {kind}: time(S65536) / time(S8192) = {r:.2f} (target <= 9)", flush=True)

    if not args.quick:
        S = 32768
        q = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn_like(q) * 0.3
        v = torch.randn_like(q)
        out = torch.empty_like(q)
        soft = bench(ak.prepare(q, k, v, out, causal=True, stream=stream), 3)
        row(f"attnkit causal softmax attention S{S}", soft)
        g = -torch.rand(B, H, S, device="cuda", dtype=torch.float32) * 0.1
        state = torch.empty(B, H, D, D, device="cuda", dtype=torch.float32)
        lin = bench(ak.prepare_linear(q, k, v, out, gates=g, state_out=state, scale=scale, stream=stream), 10)
        row(f"attnkit linear_attention scalar gates S{S}", lin, speedup_vs_softmax=round(soft / lin, 2))
        res[f"attnkit softmax causal S{S}"] = soft
        res[f"attnkit linear scalar S{S}"] = lin
        del q, k, v, out, g, state
        torch.cuda.empty_cache()

    S = 8192
    q, k, v, g, gk = inputs(S)
    out = torch.empty_like(q)
    state = torch.empty(B, H, D, D, device="cuda", dtype=torch.float32)
    for kind, gates, fla_fn in (("scalar", g, chunk_simple_gla), ("GLA", gk, chunk_gla)):
        if fla_fn is None:
            continue
        fo, fs = fla_fn(q, k, v, g=gates, scale=scale, output_final_state=True)
        ak.prepare_linear(view(q), view(k), view(v), view(out), gates=view(gates), state_out=state, scale=scale, stream=stream)()
        torch.cuda.synchronize()
        fms = bench(lambda: fla_fn(q, k, v, g=gates, scale=scale, output_final_state=True), 20)
        res[f"fla {fla_fn.__name__} S{S}"] = fms
        mine = res[f"attnkit {kind} S{S}"]
        row(f"fla {fla_fn.__name__} S{S}", fms, attnkit_speedup=round(fms / mine, 3),
            attnkit_out_vs_fla=f"{rel(out, fo):.2e}", attnkit_state_vs_fla=f"{rel(state, fs):.2e}")
    res["rows"] = rows
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
