#!/usr/bin/env python3
"""The PyTorch side of the GPU benchmark: SDPA (flash and cuDNN backends) and FlexAttention on the
issue's shapes, timed with CUDA events (median of many runs after warm-up, inputs rotated so no
run sees a warm L2 from the previous one, implementations interleaved in rotating rounds), and attnkit on the very same torch tensors through its
C ABI (bench/gpu/attnkit_ctypes.py) when the library path is given, in two rows:
  attnkit       attention_on_stream on torch's current stream, timed by the same CUDA events as the
                torch peers: the like-for-like comparison, and what the speed-up ratios use;
  attnkit_call  the blocking `attention` (the library's own stream and its wait): the cost of a
                whole library call; call_overhead_ms = attnkit_call - attnkit.
A tiny shape (B1 H1 S128 D64) is there for the per-call overhead only (informational: no ratios).
Writes JSON.

  python3 bench/gpu/peers.py [--lib build/Release/libattnkit_cuda.so] [--out results.json] [--quick]
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import cuda_times_ms  # noqa: E402

REPS = 15
ROUNDS = 3


def median_ms(fn, inputs):
    """Median time of fn(*inputs[i % len]) in ms, CUDA events around each call."""
    return statistics.median(cuda_times_ms(lambda i: fn(*inputs[i % len(inputs)]), REPS))


def time_side_by_side(impls, inputs):
    """{label: ms}: each implementation timed in ROUNDS rounds, the order rotated every round so
    none always runs right after the others have heated the GPU; the best round's median counts."""
    best = {label: None for label in impls}
    labels = list(impls)
    for r in range(ROUNDS):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            try:
                ms = median_ms(impls[label], inputs)
            except Exception as e:  # noqa: BLE001
                print(f"  {label} failed: {str(e).splitlines()[0]}")
                impls[label] = None
                labels.remove(label)
                break
            best[label] = ms if best[label] is None else min(best[label], ms)
    return best


def attention_flops(b, h, sq, sk, d, causal, window_left=None):
    if window_left is not None:  # causal sliding window: each row sees at most window_left + 1 keys
        visible = sum(min(i + 1, window_left + 1) for i in range(sq)) if sq <= 65536 else sq * (window_left + 1)
        return 4.0 * b * h * visible * d
    f = 4.0 * b * h * sq * sk * d
    return f / 2 if causal else f


def make_inputs(b, h, s, d, sets, dtype=torch.bfloat16):
    g = torch.Generator(device="cuda").manual_seed(0)
    out = []
    for _ in range(sets):
        q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=dtype, generator=g) for _ in range(3))
        out.append((q, k, v))
    return out


def window_block_states(nb, block, window):
    """uint8 [nb, nb] states of causal + window [window, 0] over square blocks: 2 where every pair
    is visible, 0 where none is, 1 otherwise (what BlockMask.slidingWindow builds)."""
    qb = torch.arange(nb, device="cuda").view(-1, 1) * block
    kb = torch.arange(nb, device="cuda").view(1, -1) * block
    i_lo, i_hi, j_lo, j_hi = qb, qb + block - 1, kb, kb + block - 1
    full = (j_hi <= i_lo) & (i_hi - j_lo <= window)
    none = (j_lo > i_hi) | (i_lo - j_hi > window)
    return torch.where(full, 2, torch.where(none, 0, 1)).to(torch.uint8)


def add_flex(impls, flex, make_mask):
    """impls["flex"]: compiled flex_attention over the BlockMask make_mask(create_block_mask)
    builds once; a failure to build it is printed and leaves Flex out of the row."""
    compiled, create_block_mask = flex
    try:
        bm = make_mask(create_block_mask)
        impls["flex"] = lambda q, k, v: compiled(q, k, v, block_mask=bm)
    except Exception as e:  # noqa: BLE001
        print(f"  flex failed: {str(e).splitlines()[0]}")


def report_sparse_row(row, computed):
    """Adds the speed-up over Flex to a sparse row and prints it on one line."""
    ms = row["ms"]
    if ms.get("attnkit") and ms.get("flex"):
        row["speedup_vs_flex"] = ms["flex"] / ms["attnkit"]
    line = f"{row['name']:60s} computed {computed:.3f}"
    for k_, v_ in ms.items():
        if v_:
            line += f"  {k_} {v_:7.3f} ms"
    if "time_over_density_x_dense" in row:
        line += f"  time / (d x dense) {row['time_over_density_x_dense']:.2f}"
    if "speedup_vs_flex" in row:
        line += f"  vs flex {row['speedup_vs_flex']:.2f}x"
    if "max_abs_diff_vs_masked_sdpa" in row:
        line += f"  max diff {row['max_abs_diff_vs_masked_sdpa']:.1e}"
    print(line, flush=True)


def sparse_rows(attnkit, flex, b=1, h=16, s=16384, d=128, block=128):
    """Block-sparse rows: random full-block masks at densities 0.5 / 0.25 / 0.1 (attnkit's block-
    sparse call against its own dense call on the same inputs: the target is <= 1.25 x density x
    dense, and against FlexAttention with the same blocks), and the causal window [1024, 0] as a
    block mask (BlockMask.slidingWindow's states) with the window option, against Flex."""
    rows = []
    inputs = make_inputs(b, h, s, d, 2)
    out = torch.empty_like(inputs[0][0])
    stream = torch.cuda.current_stream()
    nb = s // block
    dense = {id(q): attnkit.prepare(q, k, v, out, stream=stream) for q, k, v in inputs}
    g = torch.Generator(device="cuda").manual_seed(1)
    cases = [("density %.2f" % dens, dens) for dens in (0.5, 0.25, 0.1)] + [("window[1024,0]", None)]
    for label, dens in cases:
        if dens is not None:
            states = ((torch.rand(1, h, nb, nb, device="cuda", generator=g) < dens).to(torch.uint8) * 2).contiguous()
            opts = {}
        else:
            states = window_block_states(nb, block, 1024).view(1, 1, nb, nb).expand(1, h, nb, nb).contiguous()
            opts = dict(causal=True, window=(1024, 0))
        computed = float((states > 0).float().mean())
        name = f"bf16 B{b} H{h} S{s} D{d} block-sparse {block}x{block} {label}"
        row = {"name": name, "density": computed, "ms": {}}
        impls = {}
        sparse = {id(q): attnkit.prepare(q, k, v, out, stream=stream, blocks=states, block_size=(block, block), **opts)
                  for q, k, v in inputs}
        impls["attnkit"] = lambda q, k, v: sparse[id(q)]()
        if dens is not None:
            impls["attnkit_dense"] = lambda q, k, v: dense[id(q)]()
        if flex is not None:
            def flex_mask(create_block_mask, states=states, dens=dens):
                if dens is not None:
                    # Flex's BlockMask from the very same blocks, all full (no mask_mod needed);
                    # create_block_mask from a tensor-indexing mask_mod materialised [H, S, S].
                    from torch.nn.attention.flex_attention import BlockMask as FlexBlockMask
                    full = states == 2
                    full_num = full.sum(-1, dtype=torch.int32)
                    full_idx = torch.argsort((~full).to(torch.int8), dim=-1, stable=True).to(torch.int32)
                    zeros_num = torch.zeros_like(full_num)
                    return FlexBlockMask.from_kv_blocks(zeros_num, torch.zeros_like(full_idx), full_num, full_idx,
                                                        BLOCK_SIZE=block)

                def mask_mod(bb, hh, qi, kj):
                    return (qi >= kj) & (qi - kj <= 1024)
                return create_block_mask(mask_mod, None, None, s, s, device="cuda", BLOCK_SIZE=block)
            add_flex(impls, flex, flex_mask)
        # spot check: the block-sparse result equals dense attention under the equivalent mask
        q, k, v = inputs[0]
        sparse[id(q)]()
        torch.cuda.synchronize()
        if dens is not None:
            # two heads, the first 2048 rows: the element mask stays small (64 MiB)
            keep = states[0, :2, :2048 // block].repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :2048, :s] > 0
            ref = F.scaled_dot_product_attention(q[0, :2, :2048].float(), k[0, :2].float(), v[0, :2].float(), attn_mask=keep)
            visible_rows = keep.any(-1, keepdim=True)
            diff = (out[0, :2, :2048].float() - ref.nan_to_num()) * visible_rows
            row["max_abs_diff_vs_masked_sdpa"] = float(diff.abs().max())
        row["ms"] = time_side_by_side(impls, inputs)
        ms = row["ms"]
        if ms.get("attnkit") and ms.get("attnkit_dense"):
            row["time_over_density_x_dense"] = ms["attnkit"] / (computed * ms["attnkit_dense"])
        report_sparse_row(row, computed)
        rows.append(row)
    del inputs
    torch.cuda.empty_cache()
    return rows


def neighborhood_visible(hh, ww, kernel, qi, kj):
    """NATTEN's 2D rule on flat token indices (tensors): the kernel x kernel window around the
    query, shifted inward at the borders. The same expression serves Flex's mask_mod and the
    dense mask attnkit's bitmaps are built from, so both run the same pattern."""
    half = kernel // 2
    qy, qx, ky, kx = qi // ww, qi % ww, kj // ww, kj % ww
    sy = (qy - half).clamp(0, hh - kernel)
    sx = (qx - half).clamp(0, ww - kernel)
    return (ky >= sy) & (ky < sy + kernel) & (kx >= sx) & (kx < sx + kernel)


def neighborhood_blocks(hh, ww, kernel, block):
    """attnkit's element-bitmap block mask for 2D neighborhood attention, built on the GPU from the
    dense [N, N] rule (what BlockMask.neighborhood builds on the host): states [1, 1, nb, nb],
    index [1, 1, nb, nb] (-1 or the bitmap of a partial block), bits [n, block, block / 32]."""
    n = hh * ww
    nb = n // block
    idx = torch.arange(n, device="cuda")
    dense = neighborhood_visible(hh, ww, kernel, idx.view(-1, 1), idx.view(1, -1))
    tiles = dense.view(nb, block, nb, block).permute(0, 2, 1, 3)  # [qb, kb, r, c]
    count = tiles.sum((2, 3))
    states = torch.where(count == 0, 0, torch.where(count == block * block, 2, 1)).to(torch.uint8)
    partial = states == 1
    index = torch.full((nb, nb), -1, dtype=torch.int32, device="cuda")
    index[partial] = torch.arange(int(partial.sum()), dtype=torch.int32, device="cuda")
    weights = (2 ** torch.arange(32, device="cuda", dtype=torch.int64))
    words = (tiles[partial].view(-1, block, block // 32, 32).to(torch.int64) * weights).sum(-1)
    bits = torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32).contiguous()
    return states.view(1, 1, nb, nb), index.view(1, 1, nb, nb), bits, dense


def neighborhood_rows(attnkit, flex, b=1, h=8, hh=128, ww=128, d=64, kernel=13, block=128):
    """2D neighborhood attention (a 128 x 128 map, kernel 13, D64, H8, bf16): attnkit's block-
    sparse call with element bitmaps against FlexAttention with the equivalent mask_mod (its
    create_block_mask at the same block size), plus a spot check against masked SDPA."""
    n = hh * ww
    inputs = make_inputs(b, h, n, d, 3)
    out = torch.empty_like(inputs[0][0])
    stream = torch.cuda.current_stream()
    states, index, bits, dense = neighborhood_blocks(hh, ww, kernel, block)
    name = f"bf16 B{b} H{h} {hh}x{ww} D{d} neighborhood 2D kernel {kernel}"
    row = {"name": name, "density": float((states > 0).float().mean()), "ms": {},
           "flops": 4.0 * b * h * n * kernel * kernel * d}
    impls = {}
    calls = {id(q): attnkit.prepare(q, k, v, out, stream=stream, blocks=states, block_size=(block, block),
                                    elements=(index, bits)) for q, k, v in inputs}
    impls["attnkit"] = lambda q, k, v: calls[id(q)]()
    if flex is not None:
        def mask_mod(bb, hh_, qi, kj):
            return neighborhood_visible(hh, ww, kernel, qi, kj)
        add_flex(impls, flex, lambda create_block_mask: create_block_mask(mask_mod, None, None, n, n, device="cuda",
                                                                          BLOCK_SIZE=block))
    q, k, v = inputs[0]
    calls[id(q)]()
    torch.cuda.synchronize()
    ref = F.scaled_dot_product_attention(q[0, :2].float(), k[0, :2].float(), v[0, :2].float(), attn_mask=dense)
    row["max_abs_diff_vs_masked_sdpa"] = float((out[0, :2].float() - ref).abs().max())
    del dense
    row["ms"] = time_side_by_side(impls, inputs)
    report_sparse_row(row, row["density"])
    del inputs
    torch.cuda.empty_cache()
    return [row]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", default=None, help="libattnkit_cuda.so: also time attnkit through its C ABI")
    ap.add_argument("--out", default="gpu-latest.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-flex", action="store_true")
    args = ap.parse_args()

    attnkit = None
    if args.lib:
        import attnkit_ctypes
        attnkit = attnkit_ctypes.AttnkitCuda(args.lib)

    dev = torch.cuda.get_device_properties(0)
    results = {"device": dev.name, "torch": torch.__version__, "cuda": torch.version.cuda, "rows": []}
    print(f"device {dev.name}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)

    shapes = []
    for d in (128, 64):
        for s in (4096, 16384):
            for causal in (False, True):
                shapes.append(dict(b=32768 // s, h=16, s=s, d=d, causal=causal, window=None))
    shapes.append(dict(b=1, h=16, s=16384, d=128, causal=True, window=1024))
    if args.quick:
        shapes = shapes[:2] + shapes[-1:]
    # A kernel of a few microseconds: the time here is mostly per-call cost, not attention.
    shapes.append(dict(b=1, h=1, s=128, d=64, causal=False, window=None, informational=True))

    flex = None
    if not args.no_flex:
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            flex = (torch.compile(flex_attention), create_block_mask)
        except Exception as e:  # noqa: BLE001
            print(f"flex attention unavailable: {e}")

    for sh in shapes:
        b, h, s, d, causal, window = sh["b"], sh["h"], sh["s"], sh["d"], sh["causal"], sh["window"]
        informational = sh.get("informational", False)
        sets = max(2, min(4, int(2e9 // (3 * b * h * s * d * 2))))
        inputs = make_inputs(b, h, s, d, sets)
        flops = attention_flops(b, h, s, s, d, causal, window)
        name = f"bf16 B{b} H{h} S{s} D{d}" + (" causal" if causal else "") + (f" window[{window},0]" if window else "")
        row = {"name": name, **sh, "flops": flops, "ms": {}}

        def sdpa(backend):
            def run(q, k, v):
                with sdpa_kernel(backend):
                    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            return run

        impls = {}
        if window is None:
            impls["torch_flash"] = sdpa(SDPBackend.FLASH_ATTENTION)
            impls["torch_cudnn"] = sdpa(SDPBackend.CUDNN_ATTENTION)
        if flex is not None and (window is not None or (causal and s == 16384 and d == 128)):
            if window is not None:
                def mask_mod(bb, hh, qi, kj):
                    return (qi >= kj) & (qi - kj <= window)
            else:
                def mask_mod(bb, hh, qi, kj):
                    return qi >= kj
            add_flex(impls, flex, lambda create_block_mask: create_block_mask(mask_mod, None, None, s, s, device="cuda"))
        if attnkit is not None:
            out = torch.empty_like(inputs[0][0])
            opts = dict(causal=causal, window=(window, 0) if window is not None else None)
            stream = torch.cuda.current_stream()  # the stream median_ms records its events on
            prepared = {id(q): attnkit.prepare(q, k, v, out, stream=stream, **opts) for q, k, v in inputs}
            blocking = {id(q): attnkit.prepare(q, k, v, out, **opts) for q, k, v in inputs}
            impls["attnkit"] = lambda q, k, v: prepared[id(q)]()
            impls["attnkit_call"] = lambda q, k, v: blocking[id(q)]()
            # correctness spot check against the flash backend on the same inputs
            q, k, v = inputs[0]
            prepared[id(q)]()
            if window is None:
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                row["max_abs_diff_vs_flash"] = float((out.float() - ref.float()).abs().max())
        row["ms"] = time_side_by_side(impls, inputs)
        ms = row["ms"]
        if ms.get("attnkit"):
            for peer in ("torch_flash", "torch_cudnn", "flex"):
                if ms.get(peer) and not informational:
                    row[f"speedup_vs_{peer}"] = ms[peer] / ms["attnkit"]
            if ms.get("attnkit_call"):
                row["call_overhead_ms"] = ms["attnkit_call"] - ms["attnkit"]
        line = f"{name:44s}"
        for label, ms in row["ms"].items():
            if ms:
                line += f"  {label} {ms:7.3f} ms {flops / ms / 1e9:6.1f} TF/s"
        if "call_overhead_ms" in row:
            line += f"  call overhead {row['call_overhead_ms'] * 1e3:.1f} us"
        print(line, flush=True)
        results["rows"].append(row)
        del inputs
        torch.cuda.empty_cache()

    if attnkit is not None and not args.quick:
        results["sparse_rows"] = sparse_rows(attnkit, flex)
    if attnkit is not None:
        results["neighborhood_rows"] = neighborhood_rows(attnkit, flex)

    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
