#!/usr/bin/env python3
"""Correctness check of libattnkit_cuda through its C ABI, for the GPU machine (torch + numpy, no Node).

Loads the library with ctypes, mirrors the structs of native/include/attnkit/attnkit_cuda.h, and
compares every entry point against float64 references written here (explicit masks and loops in
torch float64, never SDPA): fused attention over random cases (each option alone and combined,
every dtype, GQA, Sq != Sk, many head dims, strided views, another out dtype, varlen, fully masked
rows, lse), mergeAttentionStates, devices, memory, the OOM path and argument errors,
attention_on_stream against attention (bit for bit) on a torch stream, and linear_attention (the
tensor-core and the generic kernel: gates, decay, feature maps, normalize, states, [B, T, H, D]
views) against a float64 recurrence, blocking and on a stream, with its argument errors.

Error measure: max|out - ref| / max|ref| with tolerances fp32 1e-5, fp16 2e-3, bf16 1.6e-2 (the
coarser of input and out dtype). Outputs are poisoned with NaN first, and every element around a
view (padding, guard cells) must still be NaN afterwards: nothing may be written outside a view.

Prints one line per failing case and `kernels_check: N passed, M failed`; exits 1 on failure.
"""
import argparse
import ctypes
import math
import os
import random
import sys
import threading
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attnkit_abi import (  # noqa: E402
    ABI_VERSION,
    MAX_RANK,
    F32,
    F16,
    BF16,
    I32,
    U8,
    OK,
    OOM,
    UNAVAILABLE,
    ARGUMENT,
    INTERNAL,
    STATUS_NAMES,
    DTYPE_NAMES,
    CudaTensor,
    DeviceInfo,
    AttentionArgs,
    MergeArgs,
    LinearArgs,
    Api,
    load_api,
    Call,
    stream_handle,
    as_cuda_tensor)

TOLERANCE = {F32: 1e-5, F16: 2e-3, BF16: 1.6e-2}
LSE_TOLERANCE = {F32: 1e-5, F16: 1e-4, BF16: 1e-4}  # inputs are exact in float64, so only float32 math

# ---- results ----------------------------------------------------------------------------------


class Results:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose
        self.lock = threading.Lock()

    def check(self, name, ok, detail=""):
        with self.lock:
            if ok:
                self.passed += 1
                if self.verbose:
                    print("ok    %s %s" % (name, detail))
            else:
                self.failed += 1
                print("FAIL  %s %s" % (name, detail))
            sys.stdout.flush()
        return ok


# ---- attention cases --------------------------------------------------------------------------

TORCH = None


def torch_dtype(code):
    return {F32: TORCH.float32, F16: TORCH.float16, BF16: TORCH.bfloat16}[code]


def make_view(shape, dtype, layout, device, fill=None):
    """A [B, H, S, D] view in `layout` and its base tensor (whose elements outside the view must
    never be written). fill=None: random normal; else that constant everywhere (NaN for outputs)."""
    B, H, S, D = shape
    if layout == "bhsd":
        base_shape = (B, H, S, D)
    elif layout == "bshd":
        base_shape = (B, S, H, D)
    elif layout == "padded":   # rows longer than D, view starting 3 elements in
        base_shape = (B, H, S, D + 7)
    elif layout == "dstride2":  # elements 2 apart along d
        base_shape = (B, H, S, D, 2)
    else:
        raise ValueError(layout)
    if fill is None:
        base = TORCH.randn(base_shape, device=device, dtype=TORCH.float32).to(torch_dtype(dtype))
    else:
        base = TORCH.full(base_shape, fill, device=device, dtype=torch_dtype(dtype))
    if layout == "bhsd":
        view = base
    elif layout == "bshd":
        view = base.transpose(1, 2)
    elif layout == "padded":
        view = base[..., 3:3 + D]
    else:
        view = base[..., 0]
    return view, base


def outside_view_untouched(view, base):
    """Whether every element of base that `view` does not cover is still NaN."""
    probe = TORCH.full_like(base, float("nan"), dtype=TORCH.float32)
    TORCH.as_strided(probe, view.size(), view.stride(), view.storage_offset() - base.storage_offset()).fill_(0)
    outside = TORCH.isnan(probe)
    return bool(TORCH.isnan(base.float()[outside]).all())


def reference_attention(c, q, k, v, bias, mask, slopes, sinks_logits, cu_q, cu_k):
    """float64 attention with the documented semantics, one segment (batch entry or varlen piece) at a time."""
    B, Hq, Sq, D = q.shape
    Hkv, Sk, Dv = k.shape[1], k.shape[2], v.shape[3]
    group = Hq // Hkv
    dev = q.device
    out = TORCH.zeros(B, Hq, Sq, Dv, dtype=TORCH.float64, device=dev)
    lse = TORCH.full((B, Hq, Sq), -math.inf, dtype=TORCH.float64, device=dev)
    if cu_q is not None:
        segments = [(0, cu_q[s], cu_q[s + 1], cu_k[s], cu_k[s + 1]) for s in range(len(cu_q) - 1)]
    else:
        segments = [(b, 0, Sq, 0, Sk) for b in range(B)]
    slopes_t = TORCH.tensor(slopes, dtype=TORCH.float64, device=dev) if slopes is not None else None
    sinks_t = TORCH.tensor(sinks_logits, dtype=TORCH.float64, device=dev) if sinks_logits is not None else None
    for b, qs, qe, ks, ke in segments:
        ql, kl = qe - qs, ke - ks
        if ql == 0:
            continue
        qq = q[b, :, qs:qe].double()
        kk = k[b, :, ks:ke].double().repeat_interleave(group, 0)
        vv = v[b, :, ks:ke].double().repeat_interleave(group, 0)
        s = c["scale"] * TORCH.matmul(qq, kk.transpose(-1, -2))  # [Hq, ql, kl]
        if c["softcap"] > 0:
            s = c["softcap"] * TORCH.tanh(s / c["softcap"])
        if bias is not None:
            s = s + bias[b, :, qs:qe, ks:ke].double()
        i = TORCH.arange(ql, device=dev).view(ql, 1)
        j = TORCH.arange(kl, device=dev).view(1, kl)
        a = i + kl - ql  # the key each query is aligned with (bottom-right)
        if slopes_t is not None:
            s = s - slopes_t.view(Hq, 1, 1) * (a - j).abs().double()
        visible = TORCH.ones(ql, kl, dtype=TORCH.bool, device=dev)
        if c["causal"]:
            visible &= j <= a
        in_window = TORCH.ones(ql, kl, dtype=TORCH.bool, device=dev)
        wl, wr = c["window"]
        if wl >= 0:
            in_window &= j >= a - wl
        if wr >= 0:
            in_window &= j <= a + wr
        visible &= in_window | (j < c["sinks"])
        visible = visible.unsqueeze(0).expand(Hq, ql, kl)
        if mask is not None:
            visible = visible & (mask[b, :, qs:qe, ks:ke] != 0)
        s = TORCH.where(visible, s, TORCH.full_like(s, -math.inf))
        m = s.amax(-1) if kl > 0 else TORCH.full((Hq, ql), -math.inf, dtype=TORCH.float64, device=dev)
        if sinks_t is not None:
            m = TORCH.maximum(m, sinks_t.view(Hq, 1).expand(Hq, ql))
        m_safe = TORCH.where(TORCH.isfinite(m), m, TORCH.zeros_like(m))
        p = TORCH.exp(s - m_safe.unsqueeze(-1))
        l = p.sum(-1)
        if sinks_t is not None:
            l = l + TORCH.exp(sinks_t.view(Hq, 1) - m_safe)
        o = TORCH.matmul(p, vv)
        seen = l > 0
        o = TORCH.where(seen.unsqueeze(-1), o / TORCH.where(seen, l, TORCH.ones_like(l)).unsqueeze(-1), TORCH.zeros_like(o))
        out[b, :, qs:qe] = o
        lse[b, :, qs:qe] = TORCH.where(seen, m_safe + TORCH.log(TORCH.where(seen, l, TORCH.ones_like(l))),
                                       TORCH.full_like(l, -math.inf))
    return out, lse


def broadcast_shape(rng, B, H, Sq, Sk):
    """A random shape broadcastable to [B, H, Sq, Sk] (some dims 1)."""
    return (B if rng.random() < 0.5 else 1, H if rng.random() < 0.6 else 1, Sq if rng.random() < 0.8 else 1, Sk)


def attention_call(c, device_index, seed):
    """The case's tensors (out and lse NaN), host tables and AttentionArgs, as a namespace."""
    rng = random.Random(seed)
    TORCH.manual_seed(seed)
    dev = "cuda:%d" % device_index
    B, Hq, Hkv, Sq, Sk, D, Dv = c["B"], c["Hq"], c["Hkv"], c["Sq"], c["Sk"], c["D"], c["Dv"]
    cu_q = cu_k = None
    if c["varlen"]:
        q_lens, k_lens = c["varlen"]
        cu_q, cu_k = [0], [0]
        for a, b in zip(q_lens, k_lens):
            cu_q.append(cu_q[-1] + a)
            cu_k.append(cu_k[-1] + b)
        B, Sq, Sk = 1, cu_q[-1], cu_k[-1]
    q, _ = make_view((B, Hq, Sq, D), c["dtype"], c["layout"], dev)
    k, _ = make_view((B, Hkv, Sk, D), c["dtype"], c["layout"], dev)
    v, _ = make_view((B, Hkv, Sk, Dv), c["dtype"], c["layout"], dev)
    out, out_base = make_view((B, Hq, Sq, Dv), c["out_dtype"], c["out_layout"], dev, fill=float("nan"))
    lse_guard = 8
    lse_buf = TORCH.full((B * Hq * Sq + 2 * lse_guard,), float("nan"), device=dev, dtype=TORCH.float32)
    lse = lse_buf[lse_guard:lse_guard + B * Hq * Sq].view(B, Hq, Sq)

    bias = mask = None
    if c["bias"] is not None:
        bias_dtype = c["bias"]
        bias = TORCH.randn(broadcast_shape(rng, B, Hq, Sq, Sk), device=dev).to(torch_dtype(bias_dtype)).expand(B, Hq, Sq, Sk)
    if c["mask"]:
        m = (TORCH.rand(broadcast_shape(rng, B, Hq, Sq, Sk), device=dev) < 0.7).to(TORCH.uint8)
        if m.size(2) > 2:  # a few rows with every key masked out
            m[..., 1, :] = 0
            m[..., m.size(2) - 1, :] = 0
        mask = m.expand(B, Hq, Sq, Sk)
    slopes = [rng.uniform(0.01, 0.5) for _ in range(Hq)] if c["alibi"] else None
    sink_logits = [rng.gauss(0.5, 1.0) for _ in range(Hq)] if c["sink_logits"] else None

    a = AttentionArgs()
    a.device = device_index
    a.q, a.k, a.v = as_cuda_tensor(q, c["dtype"]), as_cuda_tensor(k, c["dtype"]), as_cuda_tensor(v, c["dtype"])
    a.out = as_cuda_tensor(out, c["out_dtype"])
    a.batch, a.heads_q, a.heads_kv, a.seq_q, a.seq_k, a.head_dim, a.head_dim_v = B, Hq, Hkv, Sq, Sk, D, Dv
    a.scale = c["scale"]
    a.causal = 1 if c["causal"] else 0
    a.window_left, a.window_right = c["window_abi"]
    a.sinks = c["sinks_abi"]
    a.softcap = c["softcap"]
    keep = []  # host tables must outlive the call
    if slopes is not None:
        arr = (ctypes.c_float * Hq)(*slopes)
        keep.append(arr)
        a.alibi_slopes = ctypes.cast(arr, ctypes.POINTER(ctypes.c_float))
    if sink_logits is not None:
        arr = (ctypes.c_float * Hq)(*sink_logits)
        keep.append(arr)
        a.sink_logits = ctypes.cast(arr, ctypes.POINTER(ctypes.c_float))
    if bias is not None:
        a.bias = bias.data_ptr()
        a.bias_dtype = c["bias"]
        for i in range(4):
            a.bias_strides[i] = bias.stride(i)
    if mask is not None:
        a.mask = mask.data_ptr()
        for i in range(4):
            a.mask_strides[i] = mask.stride(i)
    if cu_q is not None:
        aq = (ctypes.c_int32 * len(cu_q))(*cu_q)
        ak = (ctypes.c_int32 * len(cu_k))(*cu_k)
        keep += [aq, ak]
        a.cu_seqlens_q = ctypes.cast(aq, ctypes.POINTER(ctypes.c_int32))
        a.cu_seqlens_k = ctypes.cast(ak, ctypes.POINTER(ctypes.c_int32))
        a.num_segments = len(cu_q) - 1
    if c["lse"]:
        a.lse = lse.data_ptr()
    return types.SimpleNamespace(q=q, k=k, v=v, out=out, out_base=out_base, lse=lse, lse_buf=lse_buf, lse_guard=lse_guard,
                                 bias=bias, mask=mask, slopes=slopes, sink_logits=sink_logits, cu_q=cu_q, cu_k=cu_k,
                                 rows=B * Hq * Sq, args=a, keep=keep)


def run_attention_case(api, results, c, device_index, seed):
    """Builds the case's tensors, calls the library, compares with the reference."""
    t = attention_call(c, device_index, seed)
    q, k, v, out, out_base, lse, lse_buf = t.q, t.k, t.v, t.out, t.out_base, t.lse, t.lse_buf
    TORCH.cuda.synchronize()
    status, message = Call()(api.attention, ctypes.byref(t.args))
    name = c["name"]
    if status != OK:
        return results.check(name, False, "status %s: %s" % (STATUS_NAMES.get(status, status), message))

    ref_out, ref_lse = reference_attention(c, q, k, v, t.bias, t.mask, t.slopes, t.sink_logits, t.cu_q, t.cu_k)
    tol = max(TOLERANCE[c["dtype"]], TOLERANCE[c["out_dtype"]])
    got = out.double()
    problems = []
    if got.numel() > 0:
        if TORCH.isnan(got).any():
            problems.append("%d NaN outputs (unwritten or bad)" % int(TORCH.isnan(got).sum()))
        else:
            scale = max(float(ref_out.abs().max()), 1e-30) if ref_out.numel() else 1.0
            if scale <= 1e-30:
                scale = 1.0  # every row masked: the output must be exactly zero
            err = float((got - ref_out).abs().max()) / scale
            if not err <= tol:
                problems.append("out rel err %.3g > %.3g" % (err, tol))
    if not outside_view_untouched(out, out_base):
        problems.append("wrote outside the out view")
    if c["lse"]:
        got_lse = lse.double()
        if TORCH.isnan(got_lse).any():
            problems.append("%d NaN lse" % int(TORCH.isnan(got_lse).sum()))
        else:
            ref_inf = TORCH.isinf(ref_lse)
            if not TORCH.equal(ref_inf, TORCH.isinf(got_lse)) or not TORCH.equal(ref_lse[ref_inf], got_lse[ref_inf]):
                problems.append("lse -inf rows differ (%d ref, %d got)" % (int(ref_inf.sum()), int(TORCH.isinf(got_lse).sum())))
            elif (~ref_inf).any():
                finite = ref_lse[~ref_inf]
                err = float((got_lse[~ref_inf] - finite).abs().max()) / max(1.0, float(finite.abs().max()))
                if not err <= LSE_TOLERANCE[c["dtype"]]:
                    problems.append("lse err %.3g > %.3g" % (err, LSE_TOLERANCE[c["dtype"]]))
        if not bool(TORCH.isnan(lse_buf[:t.lse_guard]).all() and TORCH.isnan(lse_buf[t.lse_guard + t.rows:]).all()):
            problems.append("wrote outside lse")
    elif not bool(TORCH.isnan(lse_buf).all()):
        problems.append("wrote lse although none was asked for")
    return results.check(name, not problems, "; ".join(problems))


def case(name, quick=False, **kw):
    """A case with defaults; quick: also part of --quick."""
    c = dict(quick=quick, B=2, Hq=4, Hkv=2, Sq=37, Sk=53, D=64, Dv=None, dtype=F16, out_dtype=None, layout="bhsd",
             out_layout=None, causal=False, window=(-1, -1), sinks=0, softcap=0.0, alibi=False, bias=None, mask=False,
             sink_logits=False, varlen=None, lse=True, scale=None)
    c.update(kw)
    if c["Dv"] is None:
        c["Dv"] = c["D"]
    if c["out_dtype"] is None:
        c["out_dtype"] = c["dtype"]
    if c["out_layout"] is None:
        c["out_layout"] = c["layout"]
    if c["scale"] is None:
        c["scale"] = 1.0 / math.sqrt(max(c["D"], 1))
    c["window_abi"] = c["window"]
    c["sinks_abi"] = c["sinks"]
    c["name"] = "attention[%s] B%d H%d/%d S%d/%d D%d/%d %s->%s %s/%s" % (
        name, c["B"], c["Hq"], c["Hkv"], c["Sq"], c["Sk"], c["D"], c["Dv"], DTYPE_NAMES[c["dtype"]],
        DTYPE_NAMES[c["out_dtype"]], c["layout"], c["out_layout"])
    return c


def attention_cases(quick, rng):
    cases = []
    dtypes = [F32, F16, BF16]
    options = [
        ("plain", {}),
        ("causal", dict(causal=True)),
        ("window", dict(window=(9, 4))),
        ("window-left", dict(window=(12, -1))),
        ("window+sinks", dict(window=(6, 0), sinks=3)),
        ("causal+window+sinks", dict(causal=True, window=(7, 7), sinks=4)),
        ("softcap", dict(softcap=2.5, scale=0.4)),
        ("alibi", dict(alibi=True)),
        ("bias", dict(bias=F32)),
        ("bias-f16", dict(bias=F16)),
        ("mask", dict(mask=True)),
        ("sink-logits", dict(sink_logits=True)),
        ("no-lse", dict(lse=False)),
        ("scale", dict(scale=0.05)),
        ("varlen", dict(varlen=([5, 0, 1, 40, 17], [9, 3, 0, 33, 70]))),
    ]
    for dt in dtypes:
        for opt_name, kw in options:
            cases.append(case(opt_name, quick=dt == F16, dtype=dt, **kw))
    combos = [
        ("all-options", dict(causal=True, window=(20, 3), sinks=5, softcap=4.0, alibi=True, bias=F32, mask=True,
                             sink_logits=True)),
        ("causal+bias+mask", dict(causal=True, bias=BF16, mask=True)),
        ("window+alibi+softcap", dict(window=(16, 16), alibi=True, softcap=3.0)),
        ("varlen+causal+window+sinks", dict(varlen=([0, 1, 64, 130, 3], [2, 1, 64, 100, 40]), causal=True,
                                              window=(30, 0), sinks=2, sink_logits=True)),
        ("varlen+mask+bias", dict(varlen=([7, 70, 1], [70, 7, 0]), mask=True, bias=F32, alibi=True)),
        ("huge-window", dict(window=(10 ** 12, 10 ** 12), sinks=10 ** 12, causal=True)),
        ("sinks-past-keys", dict(window=(2, 1), sinks=1000)),
    ]
    for dt in dtypes:
        for combo_name, kw in combos:
            cases.append(case(combo_name, quick=dt == F32 and combo_name == "all-options", dtype=dt, **kw))
    # GQA ratios, Sq != Sk both ways (causal makes rows with no key when Sq > Sk)
    for ratio in (1, 2, 4, 8):
        cases.append(case("gqa%d" % ratio, Hq=8, Hkv=8 // ratio, dtype=BF16, causal=True, Sq=70, Sk=70))
    cases.append(case("sq>sk causal", Sq=150, Sk=40, causal=True, dtype=F16))
    cases.append(case("sq<sk causal", Sq=20, Sk=300, causal=True, dtype=F32))
    cases.append(case("sq>sk window", Sq=200, Sk=65, window=(10, 10), dtype=BF16))
    cases.append(case("decode", Sq=1, Sk=513, dtype=F16, Hq=8, Hkv=1))
    # head dims (D != Dv too, wide heads take several passes)
    for D in (16, 32, 64, 80, 96, 128, 256):
        for dt in dtypes:
            cases.append(case("head-dim", quick=dt == BF16 and D in (80, 256), D=D, dtype=dt, Sq=65, Sk=130,
                              causal=D % 64 == 0))
    cases.append(case("d!=dv", D=96, Dv=40, dtype=F32))
    cases.append(case("d!=dv", D=24, Dv=200, dtype=F16))
    cases.append(case("wide", D=512, Dv=512, dtype=F32, Sq=40, Sk=70, B=1, Hq=2, Hkv=1))
    cases.append(case("wide", quick=True, D=1024, Dv=300, dtype=BF16, Sq=33, Sk=65, B=1, Hq=2, Hkv=2, causal=True))
    cases.append(case("tiny-dim", D=1, Dv=3, dtype=F32))
    # strided views and other out dtypes (none of these is a fast-path shape: the generic kernel
    # must take them, whatever the sm80 / sm90 kernels accept)
    for layout in ("bshd", "padded", "dstride2"):
        for dt in dtypes:
            cases.append(case("layout", quick=dt == F32, layout=layout, dtype=dt, causal=True, D=64))
    cases.append(case("out-other-dtype", dtype=F16, out_dtype=F32, out_layout="bshd"))
    cases.append(case("out-other-dtype", dtype=F32, out_dtype=BF16, out_layout="padded"))
    cases.append(case("out-other-dtype", dtype=BF16, out_dtype=F16, out_layout="dstride2"))
    cases.append(case("fallback-f16-d80", dtype=F16, D=80, Sq=128, Sk=128, causal=True))
    # sizes that cross tile edges, fully masked segments, empty key sets
    cases.append(case("long", Sq=300, Sk=700, causal=True, window=(100, -1), sinks=7, dtype=F16, B=1, Hq=2, Hkv=1))
    cases.append(case("long", Sq=257, Sk=1023, dtype=F32, B=1, Hq=2, Hkv=2, mask=True))
    cases.append(case("all-masked", quick=True, Sq=30, Sk=10, causal=True, window=(0, 0), dtype=F16, sink_logits=True))
    cases.append(case("sk=0", quick=True, Sk=0, dtype=F16))
    cases.append(case("sk=0+sinks", Sk=0, dtype=F32, sink_logits=True))
    cases.append(case("varlen-empty-keys", varlen=([4, 3], [0, 0]), dtype=BF16))
    # random mixes
    for n in range(12 if not quick else 2):
        D = rng.choice([16, 32, 48, 64, 80, 96, 128, 160, 256])
        kv = rng.choice([1, 2, 4])
        kw = dict(B=rng.randint(1, 3), Hkv=kv, Hq=kv * rng.choice([1, 2, 4, 8]), Sq=rng.randint(1, 200),
                  Sk=rng.randint(1, 300), D=D, Dv=rng.choice([D, 32, 64, 128]), dtype=rng.choice(dtypes),
                  out_dtype=rng.choice(dtypes), layout=rng.choice(["bhsd", "bshd", "padded"]),
                  out_layout=rng.choice(["bhsd", "bshd"]), causal=rng.random() < 0.5,
                  window=(rng.choice([-1, 0, 5, 40]), rng.choice([-1, 0, 3, 50])), sinks=rng.choice([0, 0, 2, 9]),
                  softcap=rng.choice([0.0, 0.0, 5.0]), alibi=rng.random() < 0.3,
                  bias=rng.choice([None, None, F32, F16]), mask=rng.random() < 0.3, sink_logits=rng.random() < 0.3,
                  lse=rng.random() < 0.8)
        cases.append(case("random%d" % n, quick=True, **kw))
    # --quick: every option alone for float16, all options together for float32, a few shapes
    return [c for c in cases if c["quick"]] if quick else cases


# ---- the other entry points -------------------------------------------------------------------


def check_devices(api, results):
    call = Call()
    count = ctypes.c_int32(0)
    status, message = call(api.device_count, ctypes.byref(count))
    if not results.check("device_count", status == OK and count.value >= 1, "status %d count %d %s" % (status, count.value, message)):
        return 0
    for d in range(count.value):
        info = DeviceInfo()
        status, message = call(api.device_info, d, ctypes.byref(info))
        name = info.name.decode(errors="replace")
        ok = status == OK and name and info.cc_major >= 8 and info.multiprocessors > 0 and info.memory_bytes > 0 and \
            info.has_kernel_image == 1
        results.check("device_info[%d]" % d, ok, "%s cc %d.%d, %d SMs, %.1f GiB, kernel image %d %s" % (
            name, info.cc_major, info.cc_minor, info.multiprocessors, info.memory_bytes / 2 ** 30,
            info.has_kernel_image, message))
    info = DeviceInfo()
    status, message = call(api.device_info, count.value, ctypes.byref(info))
    results.check("device_info[out of range]", status == ARGUMENT, "status %d %s" % (status, message))
    return count.value


def check_memory(api, results, device):
    call = Call()
    ptr = ctypes.c_void_p()
    huge = 1 << 50
    status, message = call(api.malloc, device, huge, ctypes.byref(ptr))
    results.check("malloc(1<<50) -> OOM", status == OOM and str(huge) in message and not ptr.value,
                  "status %d: %s" % (status, message))
    n = 1 << 16
    a, b = ctypes.c_void_p(), ctypes.c_void_p()
    s1, m1 = call(api.malloc, device, n, ctypes.byref(a))
    s2, m2 = call(api.malloc, device, n, ctypes.byref(b))
    if not results.check("malloc after OOM", s1 == OK and s2 == OK and a.value and b.value, m1 + m2):
        return
    src = (ctypes.c_ubyte * n)(*[(i * 37 + 11) % 256 for i in range(n)])
    dst = (ctypes.c_ubyte * n)()
    ok = call(api.copy_to_device, device, a, src, n)[0] == OK
    ok = ok and call(api.copy_on_device, device, b, a, n)[0] == OK
    ok = ok and call(api.copy_to_host, device, dst, b, n)[0] == OK
    results.check("copy_to_device / copy_on_device / copy_to_host", ok and bytes(dst) == bytes(src))
    ok = call(api.memset_zero, device, b, n // 2)[0] == OK and call(api.copy_to_host, device, dst, b, n)[0] == OK
    results.check("memset_zero", ok and bytes(dst[:n // 2]) == bytes(n // 2) and bytes(dst[n // 2:]) == bytes(src[n // 2:]))
    api.free(device, a)
    api.free(device, b)
    api.free(device, None)  # must be harmless


def check_argument_errors(api, results, device):
    """Both attention entries validate alike (attention_on_stream here on the default stream)."""
    call = Call()
    entries = [("attention", lambda args: call(api.attention, args)),
               ("attention_on_stream", lambda args: call(api.attention_on_stream, args, None))]
    for entry, attention in entries:
        check_attention_argument_errors(attention, entry, results, device)


def check_attention_argument_errors(attention, entry, results, device):
    dev = "cuda:%d" % device
    q = TORCH.randn(1, 3, 4, 8, device=dev, dtype=TORCH.float16)
    k = TORCH.randn(1, 2, 4, 8, device=dev, dtype=TORCH.float16)
    out = TORCH.empty_like(q)
    a = AttentionArgs()
    a.device = device
    a.q, a.k, a.v, a.out = (as_cuda_tensor(q, F16), as_cuda_tensor(k, F16), as_cuda_tensor(k, F16),
                            as_cuda_tensor(out, F16))
    a.batch, a.heads_q, a.heads_kv, a.seq_q, a.seq_k, a.head_dim, a.head_dim_v = 1, 3, 2, 4, 4, 8, 8
    a.scale, a.window_left, a.window_right = 0.3, -1, -1
    status, message = attention(ctypes.byref(a))
    results.check("%s rejects Hq %% Hkv != 0" % entry, status == ARGUMENT, "status %d %s" % (status, message))
    a.heads_q, a.heads_kv = 2, 2
    a.q.dtype = I32
    status, message = attention(ctypes.byref(a))
    results.check("%s rejects an int32 q" % entry, status == ARGUMENT, "status %d %s" % (status, message))
    a.q.dtype = F16
    a.device = 1 << 20
    status, message = attention(ctypes.byref(a))
    results.check("%s rejects a missing device" % entry, status == ARGUMENT, "status %d %s" % (status, message))
    a.device = device
    for field in ("batch", "seq_q"):
        setattr(a, field, 0)
        status, message = attention(ctypes.byref(a))
        results.check("%s with %s = 0 is a no-op" % (entry, field), status == OK, message)
        setattr(a, field, 1 if field == "batch" else 4)


def reference_merge(outs, lses):
    lse = TORCH.stack([l.double() for l in lses])  # [P, B, H, S]
    m = lse.amax(0)
    m_safe = TORCH.where(TORCH.isfinite(m), m, TORCH.zeros_like(m))
    w = TORCH.exp(lse - m_safe)
    total = w.sum(0)
    seen = total > 0
    out = sum(w[p].unsqueeze(-1) * outs[p].double() for p in range(len(outs)))
    out = TORCH.where(seen.unsqueeze(-1), out / TORCH.where(seen, total, TORCH.ones_like(total)).unsqueeze(-1),
                      TORCH.zeros_like(out))
    return out, TORCH.where(seen, m_safe + TORCH.log(TORCH.where(seen, total, TORCH.ones_like(total))),
                            TORCH.full_like(total, -math.inf))


def check_merge(api, results, device, quick, rng):
    dev = "cuda:%d" % device
    configs = [(F32, 2, "bhsd"), (F16, 3, "bshd"), (BF16, 1, "padded"), (F32, 5, "dstride2"), (F16, 2, "bhsd")]
    if quick:
        configs = configs[:2]
    for n, (dtype, parts, layout) in enumerate(configs):
        B, H, S, Dv = rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 70), rng.choice([8, 64, 100, 128])
        outs, lses, keep = [], [], []
        for p in range(parts):
            o, _ = make_view((B, H, S, Dv), dtype, rng.choice(["bhsd", "bshd", "padded"]), dev)
            l = TORCH.randn(B, H, S, device=dev) * 3
            l[:, :, 0] = -math.inf  # one row empty in every part
            if S > 2 and p == 0:
                l[:, :, 1] = -math.inf  # one row empty in one part only
            outs.append(o)
            lses.append(l)
        out_dtype = rng.choice([F32, F16, BF16])
        out, out_base = make_view((B, H, S, Dv), out_dtype, layout, dev, fill=float("nan"))
        lse_buf = TORCH.full((B * H * S + 8,), float("nan"), device=dev)
        lse = lse_buf[4:4 + B * H * S].view(B, H, S)
        tensors = (CudaTensor * parts)(*[as_cuda_tensor(o, dtype) for o in outs])
        lse_ptrs = (ctypes.c_void_p * parts)(*[l.data_ptr() for l in lses])
        a = MergeArgs()
        a.device, a.parts, a.outs, a.lses = device, parts, tensors, lse_ptrs
        a.out = as_cuda_tensor(out, out_dtype)
        a.lse = lse.data_ptr()
        TORCH.cuda.synchronize()
        status, message = Call()(api.merge_states, ctypes.byref(a))
        name = "merge[%d] parts %d %s->%s %s B%d H%d S%d Dv%d" % (n, parts, DTYPE_NAMES[dtype], DTYPE_NAMES[out_dtype],
                                                                 layout, B, H, S, Dv)
        if status != OK:
            results.check(name, False, "status %d: %s" % (status, message))
            continue
        ref_out, ref_lse = reference_merge(outs, lses)
        tol = max(TOLERANCE[dtype], TOLERANCE[out_dtype])
        problems = []
        got = out.double()
        if TORCH.isnan(got).any():
            problems.append("NaN outputs")
        else:
            err = float((got - ref_out).abs().max()) / max(float(ref_out.abs().max()), 1e-30)
            if not err <= tol:
                problems.append("out rel err %.3g > %.3g" % (err, tol))
        ref_inf = TORCH.isinf(ref_lse)
        got_lse = lse.double()
        if TORCH.isnan(got_lse).any() or not TORCH.equal(ref_inf, TORCH.isinf(got_lse)):
            problems.append("lse NaN or -inf rows differ")
        elif float((got_lse[~ref_inf] - ref_lse[~ref_inf]).abs().max()) > 1e-5 * max(1.0, float(ref_lse[~ref_inf].abs().max())):
            problems.append("lse err")
        if not outside_view_untouched(out, out_base) or not bool(TORCH.isnan(lse_buf[:4]).all() and TORCH.isnan(lse_buf[-4:]).all()):
            problems.append("wrote outside a view")
        results.check(name, not problems, "; ".join(problems))


def check_threads(api, results, device, cases):
    """The same cases from several host threads at once (ctypes drops the GIL inside the library)."""
    inner = Results(verbose=False)
    threads = [threading.Thread(target=lambda c=c, n=n: run_attention_case(api, inner, c, device, 1000 + n))
               for n, c in enumerate(cases)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.check("attention from %d threads at once" % len(cases), inner.failed == 0 and inner.passed == len(cases),
                  "%d passed, %d failed" % (inner.passed, inner.failed))


def same_bits(a, b):
    return TORCH.equal(a.contiguous().view(TORCH.uint8), b.contiguous().view(TORCH.uint8))


def check_stream_entry(api, results, device):
    """attention_on_stream on a torch stream writes bit for bit what attention writes (the same
    kernel): a causal case with no host tables, and a varlen case with ALiBi, whose host tables
    are overwritten as soon as the call returns (the library must have consumed them by then)."""
    cases = [case("on-stream causal", dtype=BF16, causal=True, Hq=8, Hkv=2, Sq=300, Sk=300, D=128),
             case("on-stream varlen+alibi", dtype=BF16, varlen=([5, 0, 70, 130], [9, 3, 140, 70]), alibi=True)]
    stream = TORCH.cuda.Stream()
    for n, c in enumerate(cases):
        name = "attention_on_stream == attention [%s]" % c["name"]
        t = attention_call(c, device, 7000 + n)
        TORCH.cuda.synchronize()
        status, message = Call()(api.attention, ctypes.byref(t.args))
        if status != OK:
            results.check(name, False, "attention: status %d %s" % (status, message))
            continue
        want_out, want_lse = t.out.clone(), t.lse.clone()
        t.out.fill_(float("nan"))
        t.lse.fill_(float("nan"))
        stream.wait_stream(TORCH.cuda.current_stream())
        status, message = Call()(api.attention_on_stream, ctypes.byref(t.args), stream_handle(stream))
        for table in t.keep:
            ctypes.memset(table, 0x7f, ctypes.sizeof(table))
        stream.synchronize()
        same = status == OK and same_bits(t.out, want_out) and same_bits(t.lse, want_lse)
        results.check(name, same, "status %d %s%s" % (status, message, "" if same else " outputs differ"))

# ---- linear attention ---------------------------------------------------------------------------


def reference_linear(q, k, v, gates, decay, causal, fmap, normalize, scale, s0, z0):
    """The recurrence token by token in float64: S_t = a_t S_{t-1} + phi(k_t)^T v_t."""
    torch = TORCH
    phi = {0: lambda x: x, 1: lambda x: torch.where(x > 0, x + 1, torch.exp(x)), 2: torch.relu}[fmap]
    q, k, v = phi(q.double()) * scale, phi(k.double()), v.double()
    B, H, S, Dk = q.shape
    st = s0.double().clone() if s0 is not None else torch.zeros(B, H, Dk, v.shape[3], dtype=torch.float64, device=q.device)
    z = z0.double().clone() if z0 is not None else torch.zeros(B, H, Dk, dtype=torch.float64, device=q.device)
    outs = []
    for t in range(S):
        if gates is not None:
            g = gates[:, :, t].double().clamp_min(-1000)
            a = torch.exp(g).reshape(B, H, -1, 1)
        else:
            a = torch.full((B, H, 1, 1), float(decay or 1.0), dtype=torch.float64, device=q.device)
        st = a * st + k[:, :, t, :, None] * v[:, :, t, None, :]
        z = a[..., 0] * z + k[:, :, t]
        if causal:
            o = torch.einsum("bhd,bhde->bhe", q[:, :, t], st)
            outs.append(o / ((q[:, :, t] * z).sum(-1, keepdim=True) + 1e-10) if normalize else o)
    if causal:
        out = torch.stack(outs, 2)
    else:
        out = torch.einsum("bhsd,bhde->bhse", q, st)
        if normalize:
            out = out / (torch.einsum("bhsd,bhd->bhs", q, z)[..., None] + 1e-10)
    return out, st, z


def linear_call(api, torch, c, device):
    """Builds one linear_attention case: [B, T, H, D] memory viewed as [B, H, T, D]."""
    B, H, S, Dk, Dv, dt = c["B"], c["H"], c["S"], c["Dk"], c["Dv"], c["dtype"]
    tdt = torch_dtype(dt)
    dev = "cuda:%d" % device
    gen = torch.Generator(device=dev).manual_seed(c["seed"])
    bthd = lambda d, pos=False: torch.randn(B, S, H, d, device=dev, generator=gen).abs().add(0.05) if pos else torch.randn(B, S, H, d, device=dev, generator=gen)
    pos = c["normalize"] and c["fmap"] == 0
    q, k, v = [bthd(d, pos).to(tdt).transpose(1, 2) for d in (Dk, Dk, Dv)]
    gates = None
    if c["gates"] == 2:
        gates = -torch.rand(B, S, H, device=dev, generator=gen).transpose(1, 2) * c.get("gate_scale", 1.0)
    elif c["gates"] == 3:
        gates = -torch.rand(B, S, H, Dk, device=dev, generator=gen).transpose(1, 2) * c.get("gate_scale", 1.0)
    s0 = torch.randn(B, H, Dk, Dv, device=dev, generator=gen) if c["state"] else None
    z0 = torch.rand(B, H, Dk, device=dev, generator=gen) + 0.5 if c["state"] and c["normalize"] else None
    out = torch.full((B, S, H, Dv), float("nan"), device=dev, dtype=tdt).transpose(1, 2)
    st = torch.full((B, H, Dk, Dv), float("nan"), device=dev)
    zo = torch.full((B, H, Dk), float("nan"), device=dev) if c["normalize"] else None
    a = LinearArgs()
    a.device = device
    a.q, a.k, a.v, a.out = [as_cuda_tensor(t, dt) for t in (q, k, v, out)]
    a.batch, a.heads, a.seq, a.dk, a.dv = B, H, S, Dk, Dv
    a.causal, a.feature_map, a.normalize, a.scale = int(c["causal"]), c["fmap"], int(c["normalize"]), c["scale"]
    if gates is not None:
        a.gate_kind, a.gates = c["gates"], as_cuda_tensor(gates, F32)
    elif c.get("decay"):
        a.gate_kind, a.decay = 1, c["decay"]
    if s0 is not None:
        a.initial_state = as_cuda_tensor(s0, F32)
    if z0 is not None:
        a.initial_normalizer = as_cuda_tensor(z0, F32)
    a.state_out = as_cuda_tensor(st, F32)
    if zo is not None:
        a.normalizer_out = as_cuda_tensor(zo, F32)
    ref = reference_linear(q, k, v, gates, c.get("decay"), c["causal"], c["fmap"], c["normalize"], c["scale"], s0, z0)
    return types.SimpleNamespace(args=a, out=out, st=st, zo=zo, ref=ref, keep=(q, k, v, gates, s0, z0))


def rel_err(a, b):
    a, b = a.double(), b.double()
    if not bool(TORCH.isfinite(a).all()):
        return float("inf")
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_linear(api, results, device):
    torch = TORCH
    call = Call()
    base = dict(B=2, H=3, S=150, Dk=64, Dv=128, dtype=BF16, causal=True, fmap=0, normalize=False, scale=0.5, gates=2, state=False)
    cases = [
        ("linear tc bf16 scalar gates", dict()),
        ("linear tc bf16 GLA elu1 state", dict(gates=3, fmap=1, state=True, S=70)),
        ("linear tc f16 Dk128 decay relu", dict(dtype=F16, Dk=128, Dv=64, gates=0, decay=0.9, fmap=2)),
        ("linear tc f16 strong GLA", dict(dtype=F16, gates=3, gate_scale=8.0, S=200)),
        ("linear generic f32 GLA normalize elu1 state", dict(dtype=F32, Dk=20, Dv=33, gates=3, normalize=True, fmap=1, state=True)),
        ("linear generic f32 non-causal scalar", dict(dtype=F32, Dk=48, Dv=40, causal=False)),
        ("linear generic bf16 non-causal decay normalize", dict(Dk=32, Dv=64, causal=False, gates=0, decay=0.8, normalize=True, fmap=1)),
    ]
    for n, (name, kw) in enumerate(cases):
        c = dict(base, seed=100 + n, **kw)
        try:
            t = linear_call(api, torch, c, device)
            status, message = call(api.linear_attention, ctypes.byref(t.args), None, 1)
            tol = TOLERANCE[c["dtype"]]
            ok = status == OK
            detail = "status %d %s" % (status, message)
            if ok:
                eo, es = rel_err(t.out, t.ref[0]), rel_err(t.st, t.ref[1])
                ez = rel_err(t.zo, t.ref[2]) if t.zo is not None else 0.0
                ok = eo <= tol and es <= tol and ez <= tol
                detail = "out %.2e state %.2e normalizer %.2e (tol %.1e)" % (eo, es, ez, tol)
            results.check(name, ok, detail)
            # the same call enqueued on a torch stream: bit for bit
            want = (t.out.clone(), t.st.clone())
            t.out.fill_(float("nan"))
            s = torch.cuda.Stream(device=device)
            with torch.cuda.stream(s):
                status, message = call(api.linear_attention, ctypes.byref(t.args), ctypes.c_void_p(s.cuda_stream), 0)
            s.synchronize()
            results.check(name + " on a stream", status == OK and same_bits(t.out, want[0]) and same_bits(t.st, want[1]),
                          "status %d %s" % (status, message))
        except Exception as e:  # noqa: BLE001
            results.check(name, False, "exception: %r" % (e,))
    # argument errors the library re-checks, and a bad gate value a blocking call reports
    t = linear_call(api, torch, dict(base, seed=7, S=20), device)
    for what, change in (("rank 3 q", lambda a: setattr(a.q, "rank", 3)), ("gate kind 2 without gates", lambda a: setattr(a.gates, "data", None)),
                         ("feature map 9", lambda a: setattr(a, "feature_map", 9))):
        a = LinearArgs.from_buffer_copy(t.args)
        change(a)
        status, message = call(api.linear_attention, ctypes.byref(a), None, 1)
        results.check("linear argument error: " + what, status == ARGUMENT, "status %d %s" % (status, message))
    t.keep[3][0, 0, 5] = 0.5
    status, message = call(api.linear_attention, ctypes.byref(t.args), None, 1)
    results.check("linear gate > 0 is ARGUMENT", status == ARGUMENT and "log forget gates" in message, "status %d %s" % (status, message))
    status, message = call(api.linear_attention, None, None, 1)
    results.check("linear NULL args", status == ARGUMENT, "status %d %s" % (status, message))


def main():
    default_lib = os.environ.get("ATTNKIT_CUDA_LIB", "build/Release/libattnkit_cuda.so")
    parser = argparse.ArgumentParser(description="Check libattnkit_cuda's kernels and entry points against float64 "
                                     "references (needs a GPU, torch and numpy).")
    parser.add_argument("lib", nargs="?", default=default_lib,
                        help="path of libattnkit_cuda.so (default: $ATTNKIT_CUDA_LIB or %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a small subset that runs in a few seconds")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
    parser.add_argument("--filter", default="", help="run only attention cases whose name contains this text")
    parser.add_argument("--linear-only", action="store_true", help="only devices and linear_attention")
    parser.add_argument("-v", "--verbose", action="store_true", help="print passing cases too")
    args = parser.parse_args()

    global TORCH
    import torch  # noqa: E402  (imported late so that --help works anywhere)
    TORCH = torch
    started = time.time()
    try:
        lib, api = load_api(args.lib)
    except Exception as e:  # noqa: BLE001
        print("kernels_check: cannot load %s: %s" % (args.lib, e))
        print("kernels_check: 0 passed, 1 failed")
        return 1
    print("kernels_check: %s" % api.build_info.decode())
    results = Results(args.verbose)
    rng = random.Random(args.seed)

    if check_devices(api, results) == 0 or not torch.cuda.is_available():
        print("kernels_check: no usable CUDA device")
        print("kernels_check: %d passed, %d failed" % (results.passed, max(results.failed, 1)))
        return 1
    torch.cuda.set_device(args.device)
    check_linear(api, results, args.device)
    if args.linear_only:
        print("kernels_check: %d passed, %d failed" % (results.passed, results.failed))
        return 1 if results.failed else 0
    check_memory(api, results, args.device)
    check_argument_errors(api, results, args.device)
    cases = [c for c in attention_cases(args.quick, rng) if args.filter in c["name"]]
    for n, c in enumerate(cases):
        try:
            run_attention_case(api, results, c, args.device, args.seed + n)
        except Exception as e:  # noqa: BLE001  a broken case must not hide the others
            results.check(c["name"], False, "exception: %r" % (e,))
    check_merge(api, results, args.device, args.quick, rng)
    check_threads(api, results, args.device, cases[:4] if args.quick else cases[:12])
    check_stream_entry(api, results, args.device)
    print("kernels_check: %.1f s" % (time.time() - started))
    print("kernels_check: %d passed, %d failed" % (results.passed, results.failed))
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
