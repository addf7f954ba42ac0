#!/usr/bin/env python3
"""Correctness of libattnkit_cuda's decode_attention, kv_append and kv_gather entries through the C ABI
(ctypes), against a float64 reference computed with torch from the cache's contents. On a GPU,
float16 / bfloat16 with head dims 64 and 128 run the tensor-core kernel, everything else the
CUDA-core one (the emulator runs only the latter).

Fresh random pools (junk in every page no sequence uses), shuffled page tables, ragged lengths
(0, shorter than the new queries, page sizes that do not divide them), every dtype, GQA 1-8,
several new queries, every score option, lse, forced and automatic split-KV, head dims that need
padding or unaligned copies, and outputs poisoned with NaN (a strided view whose surroundings must
stay NaN). Exits 1 on any failure.

    python3 test/gpu/decode_check.py [--lib build/Release/libattnkit_cuda.so] [--quick] [--emu]

--emu: run on CPU tensors against the emulated library (test/gpu/emu/README.md)."""
import argparse
import ctypes
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attnkit_abi as abi  # noqa: E402

TOL = {abi.F32: 1e-5, abi.F16: 2e-3, abi.BF16: 1.6e-2}
TORCH_DTYPE = {abi.F32: torch.float32, abi.F16: torch.float16, abi.BF16: torch.bfloat16}
LSE_TOL = 1e-4


class PagedCache:
    """Pools [pages, Hkv, P, D] with junk everywhere, sequence b's keys in shuffled pages."""

    def __init__(self, gen, dev, dtype, B, Hkv, D, P, lengths, spare_pages=3):
        self.B, self.Hkv, self.D, self.P, self.lengths = B, Hkv, D, P, list(lengths)
        need = [(n + P - 1) // P for n in lengths]
        self.width = max(1, max(need))
        pages = sum(need) + spare_pages
        td = TORCH_DTYPE[dtype]
        self.k = (torch.randn(pages, Hkv, P, D, generator=gen) * 2).to(td).to(dev)
        self.v = (torch.randn(pages, Hkv, P, D, generator=gen) * 2).to(td).to(dev)
        order = torch.randperm(pages, generator=gen).tolist()
        table = torch.full((B, self.width), -7, dtype=torch.int32)  # unused entries: never read
        at = 0
        for b in range(B):
            for i in range(need[b]):
                table[b, i] = order[at]
                at += 1
        self.table = table.to(dev)
        self.table_host = table
        self.lengths_dev = torch.tensor(lengths, dtype=torch.int32).to(dev)
        self.pages = pages

    def contents(self, b):
        """Sequence b's keys and values as float64 [Hkv, n, D]."""
        n, P = self.lengths[b], self.P
        j = torch.arange(n)
        page = self.table_host[b, (j // P)].long()
        k = self.k.cpu().double()[page, :, j % P, :].permute(1, 0, 2)
        v = self.v.cpu().double()[page, :, j % P, :].permute(1, 0, 2)
        return k, v


def reference(q, cache, opt):
    """float64 out [B, Hq, Sq, D], lse [B, Hq, Sq] of decode attention over the cache, and each key's
    probability summed over its kv head's rows (H2O's scores): mass[b] [Hkv, length(b)]."""
    q = q.cpu().double()
    B, Hq, Sq, D = q.shape
    G = Hq // cache.Hkv
    out = torch.zeros(B, Hq, Sq, D, dtype=torch.float64)
    lse = torch.full((B, Hq, Sq), -math.inf, dtype=torch.float64)
    mass = [torch.zeros(cache.Hkv, n, dtype=torch.float64) for n in cache.lengths]
    wl, wr, sinks = opt.get("window", (-1, -1)) + (opt.get("sinks", 0),)
    for b in range(B):
        k, v = cache.contents(b)
        n = cache.lengths[b]
        for h in range(Hq):
            for i in range(Sq):
                a = n - Sq + i
                j = torch.arange(n)
                s = (q[b, h, i] * opt["scale"]) @ k[h // G].T if n else torch.zeros(0, dtype=torch.float64)
                if opt.get("softcap", 0) > 0:
                    c = opt["softcap"]
                    s = c * torch.tanh(s / c)
                if opt.get("alibi") is not None:
                    s = s - opt["alibi"][h] * (a - j).abs().double()
                visible = j <= a
                inwin = torch.ones(n, dtype=torch.bool)
                if wl >= 0:
                    inwin &= j >= a - wl
                if wr >= 0:
                    inwin &= j <= a + wr
                visible &= inwin | (j < sinks)
                s = torch.where(visible, s, torch.tensor(-math.inf, dtype=torch.float64))
                logits = s
                if opt.get("sink_logits") is not None:
                    logits = torch.cat([s, torch.tensor([float(opt["sink_logits"][h])], dtype=torch.float64)])
                if logits.numel() == 0 or torch.isinf(logits).all():
                    continue
                m = logits.max()
                e = torch.exp(logits - m)
                total = e.sum()
                lse[b, h, i] = m + torch.log(total)
                out[b, h, i] = (e[:n] / total) @ v[h // G] if n else 0
                mass[b][h // G] += e[:n] / total
    return out, lse, mass


class Results:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL %s %s" % (name, detail))
            sys.stdout.flush()


def float_ptr(values):
    if values is None:
        return None
    arr = (ctypes.c_float * len(values))(*values)
    return ctypes.cast(arr, ctypes.POINTER(ctypes.c_float)), arr


def decode_args(cache, q, out, lse, dtype, out_dtype, opt, dev_index):
    a = abi.DecodeArgs()
    a.device = dev_index
    a.q = abi.as_cuda_tensor(q, dtype)
    a.out = abi.as_cuda_tensor(out, out_dtype)
    a.k_pool, a.v_pool, a.pool_pages = cache.k.data_ptr(), cache.v.data_ptr(), cache.pages
    a.page_table, a.table_width, a.lengths = cache.table.data_ptr(), cache.width, cache.lengths_dev.data_ptr()
    a.max_length = max(cache.lengths)
    a.batch, a.heads_q, a.seq_q, a.head_dim = q.shape
    a.heads_kv, a.page_size = cache.Hkv, cache.P
    a.scale = opt["scale"]
    a.window_left, a.window_right = opt.get("window", (-1, -1))
    a.sinks = opt.get("sinks", 0)
    a.softcap = opt.get("softcap", 0.0)
    keep = []
    for field, key in (("alibi_slopes", "alibi"), ("sink_logits", "sink_logits")):
        ptr = float_ptr(opt.get(key))
        if ptr:
            setattr(a, field, ptr[0])
            keep.append(ptr[1])
    a.lse = lse.data_ptr() if lse is not None else None
    a.splits = opt.get("splits", 0)
    return a, keep


def run_case(api, res, name, dev, dev_index, gen, dtype, B, Hq, Hkv, Sq, D, P, lengths, opt, out_dtype=None,
             strided_out=False):
    out_dtype = dtype if out_dtype is None else out_dtype
    cache = PagedCache(gen, dev, dtype, B, Hkv, D, P, lengths)
    opt = dict(opt)
    opt.setdefault("scale", 1.0 / math.sqrt(D))
    q = torch.randn(B, Hq, Sq, D, generator=gen).to(TORCH_DTYPE[dtype]).to(dev)
    if strided_out:
        # out as a [B, Hq, Sq, D] view of a [B, Sq, Hq, D + 3] buffer: every other element stays NaN
        base = torch.full((B, Sq, Hq, D + 3), float("nan"), dtype=TORCH_DTYPE[out_dtype]).to(dev)
        out = base[..., :D].permute(0, 2, 1, 3)
    else:
        base = None
        out = torch.full((B, Hq, Sq, D), float("nan"), dtype=TORCH_DTYPE[out_dtype]).to(dev)
    lse = torch.full((B, Hq, Sq), float("nan"), dtype=torch.float32).to(dev) if opt.get("lse") else None
    a, keep = decode_args(cache, q, out, lse, dtype, out_dtype, opt, dev_index)
    scores = None
    if opt.get("scores"):  # H2O: added on top of what the slots hold
        scores = torch.rand(cache.pages, Hkv, P, generator=gen).to(dev)
        scores0 = scores.cpu().clone()
        a.scores = ctypes.cast(scores.data_ptr(), ctypes.POINTER(ctypes.c_float))
    status, msg = abi.Call()(api.decode_attention, ctypes.byref(a), None, 1)
    if status != abi.OK:
        res.check(name, False, "status %s: %s" % (abi.STATUS_NAMES.get(status, status), msg))
        return
    ref_out, ref_lse, ref_mass = reference(q, cache, opt)
    if scores is not None:
        want = scores0.double()
        for b in range(B):
            j = torch.arange(cache.lengths[b])
            page = cache.table_host[b, j // P].long()
            for hk in range(Hkv):
                want[page, hk, j % P] += ref_mass[b][hk]
        serr = ((scores.cpu().double() - want).abs() / want.abs().clamp(min=1e-3)).max().item()
        res.check(name + " scores", serr <= 1e-4, "scores error %s" % serr)
    got = out.cpu().double()
    scale = max(ref_out.abs().max().item(), 1e-30)
    err = (got - ref_out).abs().max().item() / scale if not torch.isnan(got).any() else float("nan")
    res.check(name, err <= TOL[max(dtype, out_dtype, key=lambda d: TOL[d])], "out error %s (tol %g)" % (err, TOL[dtype]))
    if base is not None:
        outside = base.cpu()[..., D:]
        res.check(name + " (surroundings untouched)", torch.isnan(outside.float()).all().item())
    if lse is not None:
        gl = lse.cpu().double()
        both_inf = torch.isinf(gl) & torch.isinf(ref_lse) & (gl.sign() == ref_lse.sign())
        diff = torch.where(both_inf, torch.zeros_like(gl), (gl - ref_lse).abs() / ref_lse.abs().clamp(min=1))
        lerr = diff.max().item() if not torch.isnan(diff).any() else float("nan")
        res.check(name + " lse", lerr <= LSE_TOL, "lse error %s" % lerr)


def run_append_case(api, res, dev, dev_index, gen, dtype, B, Hkv, D, P, T):
    """kv_append == the rows written one by one into a copy of the pools."""
    starts = [int(x) for x in torch.randint(0, 3 * P, (B,), generator=gen)]
    counts = [int(x) for x in torch.randint(0, T + 1, (B,), generator=gen)]
    cache = PagedCache(gen, dev, dtype, B, Hkv, D, P, [s + T for s in starts])
    k = torch.randn(B, T, Hkv, D, generator=gen).to(TORCH_DTYPE[dtype]).to(dev).permute(0, 2, 1, 3)  # strided
    v = torch.randn(B, Hkv, T, D, generator=gen).to(TORCH_DTYPE[dtype]).to(dev)
    want_k, want_v = cache.k.cpu().clone(), cache.v.cpu().clone()
    for b in range(B):
        for t in range(counts[b]):
            pos = starts[b] + t
            page = int(cache.table_host[b, pos // P])
            want_k[page, :, pos % P] = k[b, :, t].cpu()
            want_v[page, :, pos % P] = v[b, :, t].cpu()
    a = abi.KvRowsArgs()
    a.device = dev_index
    a.k, a.v = abi.as_cuda_tensor(k, dtype), abi.as_cuda_tensor(v, dtype)
    a.k_pool, a.v_pool, a.pool_pages = cache.k.data_ptr(), cache.v.data_ptr(), cache.pages
    a.page_table, a.table_width = cache.table.data_ptr(), cache.width
    c_counts, c_starts = (ctypes.c_int32 * B)(*counts), (ctypes.c_int32 * B)(*starts)
    a.counts, a.index = c_counts, c_starts
    a.batch, a.heads_kv, a.head_dim, a.page_size = B, Hkv, D, P
    status, msg = abi.Call()(api.kv_append, ctypes.byref(a), None, 1)
    name = "kv_append %s B%d Hkv%d D%d P%d T%d" % (abi.DTYPE_NAMES[dtype], B, Hkv, D, P, T)
    if status != abi.OK:
        res.check(name, False, msg)
        return
    res.check(name, torch.equal(cache.k.cpu(), want_k) and torch.equal(cache.v.cpu(), want_v), "pools differ")


def run_gather_case(api, res, dev, dev_index, gen, dtype, B, Hkv, D, P, T):
    """kv_gather == the rows read one by one out of the pools, into a strided view whose other
    elements stay NaN."""
    lengths = [int(x) for x in torch.randint(T, 4 * P + T, (B,), generator=gen)]
    cache = PagedCache(gen, dev, dtype, B, Hkv, D, P, lengths)
    counts = [int(x) for x in torch.randint(0, T + 1, (B,), generator=gen)]
    positions = [[int(x) for x in torch.randperm(lengths[b], generator=gen)[:T]] for b in range(B)]
    base = torch.full((B, T, Hkv, D + 2), float("nan"), dtype=TORCH_DTYPE[dtype]).to(dev)
    k = base[..., :D].permute(0, 2, 1, 3)
    v = torch.full((B, Hkv, T, D), float("nan"), dtype=TORCH_DTYPE[dtype]).to(dev)
    a = abi.KvRowsArgs()
    a.device = dev_index
    a.k, a.v = abi.as_cuda_tensor(k, dtype), abi.as_cuda_tensor(v, dtype)
    a.k_pool, a.v_pool, a.pool_pages = cache.k.data_ptr(), cache.v.data_ptr(), cache.pages
    a.page_table, a.table_width = cache.table.data_ptr(), cache.width
    c_counts = (ctypes.c_int32 * B)(*counts)
    c_pos = (ctypes.c_int32 * (B * T))(*[x for row in positions for x in row])
    a.counts, a.index = c_counts, c_pos
    a.batch, a.heads_kv, a.head_dim, a.page_size = B, Hkv, D, P
    status, msg = abi.Call()(api.kv_gather, ctypes.byref(a), None, 1)
    name = "kv_gather %s B%d Hkv%d D%d P%d T%d" % (abi.DTYPE_NAMES[dtype], B, Hkv, D, P, T)
    if status != abi.OK:
        res.check(name, False, msg)
        return
    ok = True
    kc, vc = k.cpu(), v.cpu()
    for b in range(B):
        seq_k, seq_v = cache.contents(b)
        for t in range(T):
            if t < counts[b]:
                ok &= torch.equal(kc[b, :, t].double(), seq_k[:, positions[b][t]]) and torch.equal(vc[b, :, t].double(), seq_v[:, positions[b][t]])
            else:
                ok &= bool(torch.isnan(kc[b, :, t].float()).all() and torch.isnan(vc[b, :, t].float()).all())
    ok &= bool(torch.isnan(base.cpu()[..., D:].float()).all())
    res.check(name, ok, "rows differ or a row past its count / outside the view was written")


def check_errors(api, res, dev, dev_index):
    call = abi.Call()
    status, _ = call(api.decode_attention, None, None, 1)
    res.check("decode NULL args", status == abi.ARGUMENT)
    gen = torch.Generator().manual_seed(5)
    cache = PagedCache(gen, dev, abi.F16, 1, 1, 300, 4, [5])
    q = torch.randn(1, 1, 1, 300).half().to(dev)
    out = torch.empty_like(q)
    a, _ = decode_args(cache, q, out, None, abi.F16, abi.F16, {"scale": 1.0}, dev_index)
    status, msg = call(api.decode_attention, ctypes.byref(a), None, 1)
    res.check("decode head dim 300 refused", status == abi.ARGUMENT and "head dim" in msg, msg)
    status, _ = call(api.kv_append, None, None, 1)
    res.check("kv_append NULL args", status == abi.ARGUMENT)
    status, _ = call(api.kv_gather, None, None, 1)
    res.check("kv_gather NULL args", status == abi.ARGUMENT)


def cases(quick, gen):
    """(name, kwargs) of every decode case."""
    out = []
    dtypes = (abi.F32, abi.F16, abi.BF16)

    def add(name, **kw):
        out.append((name, kw))

    groups = ((4, 4), (8, 2), (8, 1), (6, 3)) if not quick else ((4, 4), (8, 1))
    for dtype in dtypes:
        dn = abi.DTYPE_NAMES[dtype]
        for Hq, Hkv in groups:
            for Sq in (1, 3):
                add("%s Hq%d Hkv%d Sq%d P16" % (dn, Hq, Hkv, Sq), dtype=dtype, B=3, Hq=Hq, Hkv=Hkv, Sq=Sq, D=64, P=16,
                    lengths=[37, 2, 300], opt={"lse": True})
        add("%s page 7, splits 3, lse" % dn, dtype=dtype, B=2, Hq=4, Hkv=2, Sq=2, D=128, P=7, lengths=[0, 203],
            opt={"lse": True, "splits": 3})
        add("%s window + sinks, scores" % dn, dtype=dtype, B=2, Hq=4, Hkv=1, Sq=2, D=64, P=8, lengths=[150, 61],
            opt={"window": (20, 0), "sinks": 4, "lse": True, "splits": 2, "scores": True})
        add("%s softcap + alibi" % dn, dtype=dtype, B=2, Hq=4, Hkv=2, Sq=1, D=64, P=16, lengths=[90, 33],
            opt={"softcap": 5.0, "alibi": [0.5, 0.25, 0.125, 0.0625], "lse": True})
        add("%s sink logits, splits 4, scores without lse" % dn, dtype=dtype, B=2, Hq=2, Hkv=1, Sq=1, D=64, P=16,
            lengths=[200, 0], opt={"sink_logits": [0.7, -1.5], "splits": 4, "scores": True})
        add("%s head dim 80 (padded), strided out" % dn, dtype=dtype, B=2, Hq=4, Hkv=2, Sq=1, D=80, P=16,
            lengths=[50, 19], opt={}, strided_out=True)
        add("%s head dim 36 (element copies for 16-bit)" % dn, dtype=dtype, B=1, Hq=2, Hkv=1, Sq=2, D=36, P=5,
            lengths=[23], opt={"lse": True})
        add("%s G 16 Sq 2 (32 rows: row blocks of every kernel)" % dn, dtype=dtype, B=2, Hq=16, Hkv=1, Sq=2, D=64,
            P=16, lengths=[70, 129], opt={"lse": True})
        if not quick:
            add("%s head dim 256, G 8 Sq 2 (two row blocks)" % dn, dtype=dtype, B=1, Hq=8, Hkv=1, Sq=2, D=256, P=32,
                lengths=[130], opt={"lse": True})
            add("%s head dim 128, auto splits, long" % dn, dtype=dtype, B=1, Hq=4, Hkv=1, Sq=1, D=128, P=64,
                lengths=[3000], opt={"lse": True})
    add("bf16 -> f32 out", dtype=abi.BF16, out_dtype=abi.F32, B=2, Hq=4, Hkv=2, Sq=1, D=64, P=16, lengths=[40, 7],
        opt={})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lib", default=os.environ.get("ATTNKIT_CUDA_LIB", "build/Release/libattnkit_cuda.so"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--emu", action="store_true", help="CPU tensors, emulated library")
    parser.add_argument("--device", type=int, default=0)
    args = parser.parse_args()
    dev = "cpu" if args.emu else "cuda:%d" % args.device
    _, api = abi.load_api(args.lib)
    res = Results()
    gen = torch.Generator().manual_seed(int(os.environ.get("ATTNKIT_SEED", "1234")))
    print("seed", gen.initial_seed())
    for name, kw in cases(args.quick, gen):
        run_case(api, res, "decode " + name, dev, args.device, gen, **kw)
    for dtype in (abi.F32, abi.BF16):
        run_append_case(api, res, dev, args.device, gen, dtype, B=3, Hkv=2, D=40, P=6, T=5)
        run_gather_case(api, res, dev, args.device, gen, dtype, B=3, Hkv=2, D=40, P=6, T=5)
    check_errors(api, res, dev, args.device)
    print("decode_check: %d passed, %d failed" % (res.passed, res.failed))
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
