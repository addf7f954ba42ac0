"""ctypes mirror of native/include/attnkit/attnkit_cuda.h: the one Python copy of the C ABI, used by
test/gpu/kernels_check.py and bench/gpu/attnkit_ctypes.py. Keep it in step with the header."""
import ctypes

ABI_VERSION = 1
MAX_RANK = 6
F32, F16, BF16, I32, U8 = 0, 1, 2, 3, 4
OK, OOM, UNAVAILABLE, ARGUMENT, INTERNAL = 0, 1, 2, 3, 4
STATUS_NAMES = {OK: "OK", OOM: "OOM", UNAVAILABLE: "UNAVAILABLE", ARGUMENT: "ARGUMENT", INTERNAL: "INTERNAL"}
DTYPE_NAMES = {F32: "f32", F16: "f16", BF16: "bf16"}



class CudaTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("rank", ctypes.c_int32),
                ("shape", ctypes.c_int64 * MAX_RANK), ("strides", ctypes.c_int64 * MAX_RANK)]


class DeviceInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 256), ("cc_major", ctypes.c_int32), ("cc_minor", ctypes.c_int32),
                ("multiprocessors", ctypes.c_int32), ("memory_bytes", ctypes.c_uint64),
                ("has_kernel_image", ctypes.c_int32)]


class AttentionArgs(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int32),
                ("q", CudaTensor), ("k", CudaTensor), ("v", CudaTensor), ("out", CudaTensor),
                ("batch", ctypes.c_int64), ("heads_q", ctypes.c_int64), ("heads_kv", ctypes.c_int64),
                ("seq_q", ctypes.c_int64), ("seq_k", ctypes.c_int64), ("head_dim", ctypes.c_int64),
                ("head_dim_v", ctypes.c_int64),
                ("scale", ctypes.c_float), ("causal", ctypes.c_int32),
                ("window_left", ctypes.c_int64), ("window_right", ctypes.c_int64), ("sinks", ctypes.c_int64),
                ("softcap", ctypes.c_float),
                ("alibi_slopes", ctypes.POINTER(ctypes.c_float)), ("sink_logits", ctypes.POINTER(ctypes.c_float)),
                ("bias", ctypes.c_void_p), ("bias_dtype", ctypes.c_int32), ("bias_strides", ctypes.c_int64 * 4),
                ("mask", ctypes.c_void_p), ("mask_strides", ctypes.c_int64 * 4),
                ("cu_seqlens_q", ctypes.POINTER(ctypes.c_int32)), ("cu_seqlens_k", ctypes.POINTER(ctypes.c_int32)),
                ("num_segments", ctypes.c_int64),
                ("lse", ctypes.c_void_p)]


class BlockMask(ctypes.Structure):
    _fields_ = [("states", ctypes.c_void_p), ("strides", ctypes.c_int64 * 4),
                ("block_q", ctypes.c_int64), ("block_k", ctypes.c_int64)]


class ElementMask(ctypes.Structure):
    _fields_ = [("index", ctypes.c_void_p), ("index_strides", ctypes.c_int64 * 4),
                ("bits", ctypes.c_void_p), ("bitmaps", ctypes.c_int64)]


class MergeArgs(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int32), ("parts", ctypes.c_int32), ("outs", ctypes.POINTER(CudaTensor)),
                ("lses", ctypes.POINTER(ctypes.c_void_p)), ("out", CudaTensor), ("lse", ctypes.c_void_p)]


class LinearArgs(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int32),
                ("q", CudaTensor), ("k", CudaTensor), ("v", CudaTensor), ("out", CudaTensor),
                ("batch", ctypes.c_int64), ("heads", ctypes.c_int64), ("seq", ctypes.c_int64),
                ("dk", ctypes.c_int64), ("dv", ctypes.c_int64),
                ("causal", ctypes.c_int32), ("feature_map", ctypes.c_int32), ("normalize", ctypes.c_int32),
                ("scale", ctypes.c_float), ("gate_kind", ctypes.c_int32), ("decay", ctypes.c_double),
                ("decay_per_head", ctypes.POINTER(ctypes.c_float)), ("gates", CudaTensor),
                ("initial_state", CudaTensor), ("initial_normalizer", CudaTensor),
                ("state_out", CudaTensor), ("normalizer_out", CudaTensor)]


class TopkArgs(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int32), ("q", CudaTensor), ("k", CudaTensor),
                ("block_size", ctypes.c_int64), ("topk", ctypes.c_int64), ("causal", ctypes.c_int32),
                ("states", ctypes.c_void_p), ("indices", ctypes.c_void_p)]
class DecodeArgs(ctypes.Structure):
    _fields_ = [("device", ctypes.c_int32), ("q", CudaTensor), ("out", CudaTensor),
                ("k_pool", ctypes.c_void_p), ("v_pool", ctypes.c_void_p), ("pool_pages", ctypes.c_int64),
                ("page_table", ctypes.c_void_p), ("table_width", ctypes.c_int64), ("lengths", ctypes.c_void_p),
                ("max_length", ctypes.c_int64),
                ("batch", ctypes.c_int64), ("heads_q", ctypes.c_int64), ("heads_kv", ctypes.c_int64),
                ("seq_q", ctypes.c_int64), ("head_dim", ctypes.c_int64), ("page_size", ctypes.c_int64),
                ("scale", ctypes.c_float), ("window_left", ctypes.c_int64), ("window_right", ctypes.c_int64),
                ("sinks", ctypes.c_int64), ("softcap", ctypes.c_float),
                ("alibi_slopes", ctypes.POINTER(ctypes.c_float)), ("sink_logits", ctypes.POINTER(ctypes.c_float)),
                ("lse", ctypes.c_void_p), ("splits", ctypes.c_int64), ("scores", ctypes.POINTER(ctypes.c_float))]


class KvRowsArgs(ctypes.Structure):
    """attnkit_cuda_kv_rows_args: index = starts [B] (kv_append) or positions [B, T] (kv_gather)."""
    _fields_ = [("device", ctypes.c_int32), ("k", CudaTensor), ("v", CudaTensor),
                ("k_pool", ctypes.c_void_p), ("v_pool", ctypes.c_void_p), ("pool_pages", ctypes.c_int64),
                ("page_table", ctypes.c_void_p), ("table_width", ctypes.c_int64),
                ("counts", ctypes.POINTER(ctypes.c_int32)), ("index", ctypes.POINTER(ctypes.c_int32)),
                ("batch", ctypes.c_int64), ("heads_kv", ctypes.c_int64), ("head_dim", ctypes.c_int64),
                ("page_size", ctypes.c_int64)]


STATUS = ctypes.c_int
ERR = ctypes.c_char_p
SIZE = ctypes.c_size_t


class Api(ctypes.Structure):
    _fields_ = [
        ("abi_version", ctypes.c_uint32), ("struct_size", ctypes.c_uint32), ("build_info", ctypes.c_char_p),
        ("device_count", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(ctypes.c_int32), ERR, SIZE)),
        ("device_info", ctypes.CFUNCTYPE(STATUS, ctypes.c_int32, ctypes.POINTER(DeviceInfo), ERR, SIZE)),
        ("malloc", ctypes.CFUNCTYPE(STATUS, ctypes.c_int32, SIZE, ctypes.POINTER(ctypes.c_void_p), ERR, SIZE)),
        ("free", ctypes.CFUNCTYPE(None, ctypes.c_int32, ctypes.c_void_p)),
        ("memset_zero", ctypes.CFUNCTYPE(STATUS, ctypes.c_int32, ctypes.c_void_p, SIZE, ERR, SIZE)),
        ("copy_to_device", ctypes.CFUNCTYPE(STATUS, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, SIZE, ERR, SIZE)),
        ("copy_to_host", ctypes.CFUNCTYPE(STATUS, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, SIZE, ERR, SIZE)),
        ("copy_on_device", ctypes.CFUNCTYPE(STATUS, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, SIZE, ERR, SIZE)),
        ("attention", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(AttentionArgs), ERR, SIZE)),
        ("merge_states", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(MergeArgs), ERR, SIZE)),
        # appended within ABI 1; the stream is a cudaStream_t (None / 0: the legacy default stream)
        ("attention_on_stream", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(AttentionArgs), ctypes.c_void_p, ERR, SIZE)),
        # (args, blocks, stream, blocking)
        ("block_sparse_attention", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(AttentionArgs), ctypes.POINTER(BlockMask),
                                                     ctypes.c_void_p, ctypes.c_int32, ERR, SIZE)),
        # (args, blocks, elements, stream, blocking)
        ("block_sparse_attention_elements", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(AttentionArgs), ctypes.POINTER(BlockMask),
                                                              ctypes.POINTER(ElementMask), ctypes.c_void_p, ctypes.c_int32,
                                                              ERR, SIZE)),
        # (args, stream, blocking)
        ("linear_attention", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(LinearArgs), ctypes.c_void_p, ctypes.c_int32, ERR, SIZE)),
        ("topk_block_select", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(TopkArgs), ERR, SIZE)),
        ("decode_attention", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(DecodeArgs), ctypes.c_void_p, ctypes.c_int32,
                                               ERR, SIZE)),
        ("kv_append", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(KvRowsArgs), ctypes.c_void_p, ctypes.c_int32, ERR, SIZE)),
        ("kv_gather", ctypes.CFUNCTYPE(STATUS, ctypes.POINTER(KvRowsArgs), ctypes.c_void_p, ctypes.c_int32, ERR, SIZE)),
    ]


def load_api(path):
    lib = ctypes.CDLL(path)
    get_api = lib.attnkit_cuda_get_api
    get_api.restype = ctypes.POINTER(Api)
    get_api.argtypes = [ctypes.c_uint32]
    if get_api(ABI_VERSION + 1):
        raise RuntimeError("attnkit_cuda_get_api answered a foreign ABI version")
    api = get_api(ABI_VERSION)
    if not api:
        raise RuntimeError("attnkit_cuda_get_api(%d) returned NULL" % ABI_VERSION)
    api = api.contents
    if api.abi_version != ABI_VERSION or api.struct_size != ctypes.sizeof(Api):
        raise RuntimeError("api table: abi %d size %d, expected %d / %d" %
                           (api.abi_version, api.struct_size, ABI_VERSION, ctypes.sizeof(Api)))
    return lib, api


class Call:
    """One API call's error buffer: call(fn, *args) -> (status, message)."""

    def __init__(self):
        self.buf = ctypes.create_string_buffer(1024)

    def __call__(self, fn, *args):
        self.buf.value = b""
        status = fn(*args, self.buf, len(self.buf))
        return status, self.buf.value.decode(errors="replace")


def stream_handle(stream):
    """The cudaStream_t of attention_on_stream's stream argument: a torch.cuda.Stream's cuda_stream,
    an int handle as is, None for the legacy default stream."""
    if stream is None:
        return None
    return int(getattr(stream, "cuda_stream", stream))


def as_cuda_tensor(t, dtype):
    ct = CudaTensor()
    ct.data = t.data_ptr() if t.numel() > 0 else 0
    ct.dtype = dtype
    ct.rank = t.dim()
    for i in range(t.dim()):
        ct.shape[i] = t.size(i)
        ct.strides[i] = t.stride(i)
    return ct
