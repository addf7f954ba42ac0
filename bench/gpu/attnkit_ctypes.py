"""attnkit's CUDA library driven from Python on torch tensors, through its C ABI (ctypes), for the
side-by-side benchmark in peers.py. The ABI mirror itself lives in test/gpu/attnkit_abi.py (one
copy, shared with the kernel checks)."""
import ctypes
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "gpu"))
import attnkit_abi as abi  # noqa: E402


class AttnkitCuda:
    def __init__(self, path):
        self.lib, self.api = abi.load_api(path)
        self.call = abi.Call()

    @staticmethod
    def _dtype(t):
        import torch
        return {torch.bfloat16: abi.BF16, torch.float16: abi.F16, torch.float32: abi.F32}[t.dtype]

    def prepare(self, q, k, v, out, causal=False, window=None, scale=None, stream=None, blocks=None, block_size=None,
                elements=None):
        """A call of out[:] = attention(q, k, v) on [B, H, S, D] torch CUDA tensors (any strides),
        with its argument struct built once, so timing it measures the library, not ctypes.
        stream=None: the blocking `attention`, which returns when the GPU is done (the library
        waits on its own stream). stream = a torch.cuda.Stream or a cudaStream_t int:
        `attention_on_stream` on it, which returns once the kernel is enqueued there.
        blocks: a uint8 torch CUDA tensor of block states [B|1, H|1, nQB, nKB] with block_size
        (bq, bk): `block_sparse_attention` instead (blocking or on `stream` the same way).
        elements: (index, bits) int32 torch CUDA tensors, the element bitmaps of the partial blocks
        (index [1, 1, nQB, nKB], bits [n, bq, ceil(bk / 32)]): `block_sparse_attention_elements`."""
        a = abi.AttentionArgs()
        a.device = q.device.index or 0
        a.q = abi.as_cuda_tensor(q, self._dtype(q))
        a.k = abi.as_cuda_tensor(k, self._dtype(k))
        a.v = abi.as_cuda_tensor(v, self._dtype(v))
        a.out = abi.as_cuda_tensor(out, self._dtype(out))
        a.batch, a.heads_q, a.seq_q, a.head_dim = q.shape
        a.heads_kv, a.seq_k = k.shape[1], k.shape[2]
        a.head_dim_v = v.shape[3]
        a.scale = scale if scale is not None else 1.0 / math.sqrt(q.shape[3])
        a.causal = int(causal)
        a.window_left, a.window_right = window if window is not None else (-1, -1)
        a.bias_dtype = abi.F32
        args = ctypes.byref(a)
        keep = [a]
        if blocks is not None:
            bm = abi.BlockMask()
            bm.states = blocks.data_ptr()
            grid = blocks.expand(a.batch, a.heads_q, blocks.shape[2], blocks.shape[3])
            for i in range(4):
                bm.strides[i] = grid.stride(i)
            bm.block_q, bm.block_k = block_size
            keep += [bm, blocks]
            tail = (ctypes.c_void_p(abi.stream_handle(stream)), ctypes.c_int32(stream is None))
            if elements is not None:
                index, bits = elements
                em = abi.ElementMask()
                em.index = index.data_ptr()
                grid = index.expand(a.batch, a.heads_q, index.shape[2], index.shape[3])
                for i in range(4):
                    em.index_strides[i] = grid.stride(i)
                em.bits = bits.data_ptr()
                em.bitmaps = bits.shape[0]
                keep += [em, index, bits]
                entry, fn = "block_sparse_attention_elements", self.api.block_sparse_attention_elements
                extra = (ctypes.byref(bm), ctypes.byref(em)) + tail
            else:
                entry, fn = "block_sparse_attention", self.api.block_sparse_attention
                extra = (ctypes.byref(bm),) + tail
        elif stream is None:
            entry, fn, extra = "attention", self.api.attention, ()
        else:
            entry, fn = "attention_on_stream", self.api.attention_on_stream
            extra = (ctypes.c_void_p(abi.stream_handle(stream)),)
        return self._checked_call(entry, fn, (args,) + extra, keep)

    def _checked_call(self, entry, fn, args, keep):
        """run() calling fn(*args) and raising on a failed status; `keep` (the structs and tensors
        the arguments point into) stays alive with the closure."""
        call = self.call

        def run():
            status, message = call(fn, *args)
            if status != abi.OK:
                raise RuntimeError(f"attnkit {entry}: {abi.STATUS_NAMES.get(status, status)}: {message}")
        run.args = keep
        return run

    def attention(self, q, k, v, out, **options):
        self.prepare(q, k, v, out, **options)()

    def prepare_linear(self, q, k, v, out, gates=None, state_out=None, scale=1.0, stream=None):
        """A call of causal linear attention out[:] = linear_attention(q, k, v) on [B, H, S, D] torch
        CUDA tensors (any strides; a [B, T, H, D] tensor transposed to [B, H, T, D] is one), with log
        gates [B, H, S] (per step) or [B, H, S, Dk] (GLA) or none, and the final state written to
        state_out (float32 [B, H, Dk, Dv]) when given. stream=None: blocking; else enqueued on it."""
        a = abi.LinearArgs()
        a.device = q.device.index or 0
        a.q = abi.as_cuda_tensor(q, self._dtype(q))
        a.k = abi.as_cuda_tensor(k, self._dtype(k))
        a.v = abi.as_cuda_tensor(v, self._dtype(v))
        a.out = abi.as_cuda_tensor(out, self._dtype(out))
        a.batch, a.heads, a.seq, a.dk = q.shape
        a.dv = v.shape[3]
        a.causal = 1
        a.scale = scale
        keep = [a, q, k, v, out]
        if gates is not None:
            a.gate_kind = 3 if gates.dim() == 4 else 2
            a.gates = abi.as_cuda_tensor(gates, self._dtype(gates))
            keep.append(gates)
        if state_out is not None:
            a.state_out = abi.as_cuda_tensor(state_out, abi.F32)
            keep.append(state_out)
        args = ctypes.byref(a)
        extra = (ctypes.c_void_p(abi.stream_handle(stream)), ctypes.c_int32(stream is None))
        return self._checked_call("linear_attention", self.api.linear_attention, (args,) + extra, keep)
