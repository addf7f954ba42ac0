#!/usr/bin/env python3
"""Decode attention over a paged KV cache on the GPU, side by side in one process (issue 6):
attnkit's decode_attention (through its C ABI, ctypes) vs a device-to-device copy of a buffer as
large as the KV cache (the bandwidth ceiling) vs PyTorch SDPA (cuDNN, flash) on contiguous K / V.

Shapes: bf16, Hq 32, Hkv 8, D 128, one new query; B 32 x 8192 keys and B 1 x 131072 keys; page
sizes 16 and 64 (pages shuffled in the pool, as a long-running server's are). Bandwidth = KV bytes
read / time for attention, (read + written) / time for the copy. Every time is the median of
`--reps` event-timed batches of calls after a warm-up.

    python3 bench/gpu/decode.py --lib build/Release/libattnkit_cuda.so [--out decode.json] [--quick]
"""
import argparse
import ctypes
import json
import math
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "gpu"))
import attnkit_abi as abi  # noqa: E402
from timing import cuda_times_ms  # noqa: E402


def time_ms(fn, reps, inner):
    """Median, min and max over `reps` batches of `inner` calls, per call, in ms."""
    times = cuda_times_ms(lambda _: fn(), reps, inner)
    return statistics.median(times), min(times), max(times)


class PagedKV:
    def __init__(self, B, Hkv, S, D, P, dtype, gen, shuffled=True):
        pages_per_seq = (S + P - 1) // P
        self.pages = B * pages_per_seq
        self.k = torch.randn(self.pages, Hkv, P, D, dtype=dtype, device="cuda", generator=gen)
        self.v = torch.randn(self.pages, Hkv, P, D, dtype=dtype, device="cuda", generator=gen)
        perm = torch.randperm(self.pages, device="cuda", generator=gen).to(torch.int32)
        if not shuffled:  # a diagnostic: each sequence's pages in pool order
            perm = torch.arange(self.pages, device="cuda", dtype=torch.int32)
        self.table = perm.view(B, pages_per_seq).contiguous()
        self.lengths = torch.full((B,), S, dtype=torch.int32, device="cuda")
        self.B, self.Hkv, self.S, self.D, self.P, self.width = B, Hkv, S, D, P, pages_per_seq

    def contiguous(self):
        """K, V as [B, Hkv, S, D] (for SDPA), gathered through the table."""
        idx = self.table.long()  # [B, pages]
        k = self.k[idx].permute(0, 2, 1, 3, 4).reshape(self.B, self.Hkv, -1, self.D)[:, :, :self.S]
        v = self.v[idx].permute(0, 2, 1, 3, 4).reshape(self.B, self.Hkv, -1, self.D)[:, :, :self.S]
        return k.contiguous(), v.contiguous()


def attnkit_call(api, kv, q, out, splits=0, stream=None):
    a = abi.DecodeArgs()
    a.device = q.device.index or 0
    a.q = abi.as_cuda_tensor(q, abi.BF16)
    a.out = abi.as_cuda_tensor(out, abi.BF16)
    a.k_pool, a.v_pool, a.pool_pages = kv.k.data_ptr(), kv.v.data_ptr(), kv.pages
    a.page_table, a.table_width, a.lengths = kv.table.data_ptr(), kv.width, kv.lengths.data_ptr()
    a.max_length = kv.S
    a.batch, a.heads_q, a.seq_q, a.head_dim = q.shape
    a.heads_kv, a.page_size = kv.Hkv, kv.P
    a.scale = 1.0 / math.sqrt(q.shape[3])
    a.window_left = a.window_right = -1
    a.splits = splits
    call = abi.Call()
    handle = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream if stream is None else stream)
    fn = api.decode_attention
    ref = ctypes.byref(a)

    def run():
        status, msg = call(fn, ref, handle, 0)
        if status != abi.OK:
            raise RuntimeError("decode_attention: %s" % msg)
    run.keep = a
    return run


def reference(q, k, v):
    """float32 attention of q [B, Hq, 1, D] over k, v [B, Hkv, S, D] (GQA by reshaping, no copies per head)."""
    B, Hq, _, D = q.shape
    Hkv = k.shape[1]
    qg = q.float().view(B, Hkv, Hq // Hkv, D)
    s = torch.matmul(qg, k.float().transpose(2, 3)) / math.sqrt(D)
    out = torch.matmul(torch.softmax(s, dim=-1), v.float())
    return out.view(B, Hq, 1, D).double()


def sdpa_runner(q, k, v, backend, Hq):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    be = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
          "efficient": SDPBackend.EFFICIENT_ATTENTION}[backend]
    G = Hq // k.shape[1]
    tries = [("enable_gqa", k, v, {"enable_gqa": True})]
    if G > 1:
        tries.append(("expanded", k.repeat_interleave(G, 1), v.repeat_interleave(G, 1), {}))
    errors = []
    for how, kk, vv, kw in tries:
        def run(kk=kk, vv=vv, kw=kw):
            with sdpa_kernel([be]):
                return F.scaled_dot_product_attention(q, kk, vv, **kw)
        try:
            out = run()
            torch.cuda.synchronize()
            return run, how, out
        except Exception as e:  # noqa: BLE001 - report and try the next form
            errors.append("%s: %s" % (how, str(e).split("\n")[0][:160]))
    return None, "; ".join(errors), None


def bench_shape(api, name, B, S, P_list, args, gen, rows, copy_bw):
    Hq, Hkv, D = 32, 8, 128
    kv_bytes = 2 * B * Hkv * S * D * 2
    q = torch.randn(B, Hq, 1, D, dtype=torch.bfloat16, device="cuda", generator=gen)
    reps, inner = (5, 10) if args.quick else (15, 20)
    sdpa_ref = None
    kv0 = None
    for P in P_list:
        P, shuffled = (P, True) if isinstance(P, int) else P
        kv = PagedKV(B, Hkv, S, D, P, torch.bfloat16, gen, shuffled)
        out = torch.full_like(q, float("nan"))
        run = attnkit_call(api, kv, q, out)
        run()
        torch.cuda.synchronize()
        k, v = kv.contiguous()
        ref = reference(q, k, v)
        err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
        if sdpa_ref is None:  # SDPA runs on the first page size's contents
            sdpa_ref, kv0 = ref, (k, v)
        else:
            del k, v
        splits_list = [0] + ([] if args.quick or not shuffled else ([2] if B * Hkv >= 132 else [16, 66, 264]))
        for splits in splits_list:
            run = attnkit_call(api, kv, q, out, splits=splits)
            med, lo, hi = time_ms(run, reps, inner)
            bw = kv_bytes / (med * 1e-3) / 1e12
            rows.append({"shape": name, "impl": "attnkit", "page_size": P, "pages": "shuffled" if shuffled else "in order",
                         "splits": splits or "auto", "ms": med,
                         "ms_min": lo, "ms_max": hi, "TBps": bw, "x_copy": bw / copy_bw, "rel_err": err})
            print("%-10s attnkit P%-3d%s splits %-4s %8.3f ms  %5.2f TB/s  %.2fx copy  err %.1e" %
                  (name, P, " " if shuffled else "c", splits or "auto", med, bw, bw / copy_bw, err), flush=True)
        del kv
        torch.cuda.empty_cache()
    k, v = kv0
    for backend in ("cudnn", "flash"):
        run, how, out = sdpa_runner(q, k, v, backend, Hq)
        if run is None:
            rows.append({"shape": name, "impl": "sdpa-" + backend, "error": how})
            print("%-10s sdpa %-6s unavailable: %s" % (name, backend, how), flush=True)
            continue
        med, lo, hi = time_ms(run, reps, inner)
        bw = kv_bytes / (med * 1e-3) / 1e12
        err = ((out.double() - sdpa_ref).abs().max() / sdpa_ref.abs().max()).item()
        rows.append({"shape": name, "impl": "sdpa-" + backend, "how": how, "ms": med, "ms_min": lo, "ms_max": hi,
                     "TBps": bw, "x_copy": bw / copy_bw, "rel_err": err})
        print("%-10s sdpa %-6s (%s) %8.3f ms  %5.2f TB/s  %.2fx copy" % (name, backend, how, med, bw, bw / copy_bw),
              flush=True)
    del k, v, kv0
    torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lib", default="build/Release/libattnkit_cuda.so")
    parser.add_argument("--out", default="decode.json")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    _, api = abi.load_api(args.lib)
    gen = torch.Generator(device="cuda").manual_seed(7)
    rows = []
    # The ceiling: a copy of a buffer as large as the B32 case's K + V (1 GiB), read + written.
    nbytes = 2 * 32 * 8 * 8192 * 128 * 2
    src = torch.randn(nbytes // 2, dtype=torch.bfloat16, device="cuda", generator=gen)
    dst = torch.empty_like(src)
    med, lo, hi = time_ms(lambda: dst.copy_(src), 10, 10)
    copy_bw = 2 * nbytes / (med * 1e-3) / 1e12
    print("copy %d MiB: %.3f ms  %.2f TB/s (read + written)" % (nbytes >> 20, med, copy_bw), flush=True)
    rows.append({"shape": "copy", "impl": "torch copy_", "bytes": nbytes, "ms": med, "TBps": copy_bw})
    del src, dst
    torch.cuda.empty_cache()
    # (64, False): pages in pool order, to tell the kernel's pace from the scattered pages' cost.
    bench_shape(api, "B32x8k", 32, 8192, [16, 64, (64, False)], args, gen, rows, copy_bw)
    bench_shape(api, "B1x128k", 1, 131072, [16, 64, (64, False)], args, gen, rows, copy_bw)
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "copy_TBps": copy_bw, "rows": rows}
    with open(args.out, "w") as f:
        json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
