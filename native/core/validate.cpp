#include "validate.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <sstream>
#include <string>

#include "error.h"

namespace attnkit {
namespace {

std::string shape_str(const TensorView& t) {
  std::ostringstream s;
  s << "[";
  for (int i = 0; i < t.rank; ++i) s << (i ? ", " : "") << t.shape[i];
  s << "]";
  return s.str();
}

[[noreturn]] void shape_fail(const std::string& msg) { fail(ErrorCode::Shape, msg); }
[[noreturn]] void arg_fail(const std::string& msg) { fail(ErrorCode::Argument, msg); }

bool storable_in(DType tensor, DType array) {
  if (tensor == DType::Float16 || tensor == DType::BFloat16) return array == DType::Float16 || array == DType::BFloat16;
  return tensor == array;
}

// Resolves a float/uint8 tensor broadcastable to [B, H, Sq, Sk] into stride-0 broadcast form.
Broadcast4 broadcast_to(const char* name, const TensorView& t, const int64_t (&target)[4], const char* dims = "[B, Hq, Sq, Sk]") {
  if (t.rank > 4) shape_fail(std::string(name) + " must have rank <= 4 (broadcastable to " + dims + "), got rank " + std::to_string(t.rank));
  Broadcast4 b;
  b.data = t.data;
  b.dtype = t.dtype;
  const int pad = 4 - t.rank;
  for (int d = 0; d < 4; ++d) {
    if (d < pad) { b.strides[d] = 0; continue; }
    const int64_t n = t.shape[d - pad];
    if (n == target[d]) {
      b.strides[d] = target[d] == 1 ? 0 : t.strides[d - pad];
    } else if (n == 1) {
      b.strides[d] = 0;
    } else {
      std::ostringstream s;
      s << name << " of shape " << shape_str(t) << " does not broadcast to " << dims << " = [" << target[0] << ", "
        << target[1] << ", " << target[2] << ", " << target[3] << "]";
      shape_fail(s.str());
    }
  }
  return b;
}

void check_cu_seqlens(const char* name, const Int32Array& cu, int64_t total) {
  if (cu.length < 2) arg_fail(std::string(name) + " must hold at least 2 entries (segments + 1), got " + std::to_string(cu.length));
  if (cu.data[0] != 0) arg_fail(std::string(name) + "[0] must be 0, got " + std::to_string(cu.data[0]));
  for (size_t i = 1; i < cu.length; ++i) {
    if (cu.data[i] < cu.data[i - 1]) {
      arg_fail(std::string(name) + " must be non-decreasing, but " + name + "[" + std::to_string(i) + "] = " +
               std::to_string(cu.data[i]) + " < " + name + "[" + std::to_string(i - 1) + "] = " + std::to_string(cu.data[i - 1]));
    }
  }
  if (cu.data[cu.length - 1] != total) {
    arg_fail(std::string(name) + " must end at the packed length " + std::to_string(total) + ", got " +
             std::to_string(cu.data[cu.length - 1]));
  }
}

// An op runs where its inputs live: every tensor of a call on one device, never a silent copy.
void require_device(const char* name, int device, const char* ref_name, int ref_device) {
  if (device == ref_device) return;
  fail(ErrorCode::Device, std::string(name) + " is on " + device_name(device) + " but " + ref_name + " is on " +
                              device_name(ref_device) + "; all tensors of one call must be on one device (move it with .to('" +
                              device_name(ref_device) + "'))");
}

// A block mask's element bitmaps: elementIndex int32 with the blocks' broadcast shape, elementBits
// int32 [n, blockQ, ceil(blockK / 32)] row-major (the kernels index it densely). Host indices are
// checked here; device ones by the kernels, which treat an index out of range as an empty bitmap.
void validate_element_mask(const AttentionRequest& r, const int64_t (&blocks)[4], AttentionParams& p) {
  const TensorView& idx = r.element_index;
  const TensorView& bits = r.element_bits;
  if (idx.dtype != DType::Int32) fail(ErrorCode::DType, std::string("blockMask.elementIndex must be int32, got ") + dtype_name(idx.dtype));
  if (bits.dtype != DType::Int32) fail(ErrorCode::DType, std::string("blockMask.elementBits must be int32 (bitmaps as 32-bit words), got ") + dtype_name(bits.dtype));
  p.element_index = broadcast_to("blockMask.elementIndex", idx, blocks, "[B, Hq, ceil(Sq / blockQ), ceil(Sk / blockK)]");
  const int64_t words = (p.block_k + 31) / 32;
  if (bits.rank != 3 || bits.shape[1] != p.block_q || bits.shape[2] != words) {
    shape_fail("blockMask.elementBits must have shape [n, blockQ, ceil(blockK / 32)] = [n, " + std::to_string(p.block_q) + ", " +
               std::to_string(words) + "], got " + shape_str(bits));
  }
  if (!is_row_major(bits)) arg_fail("blockMask.elementBits must be contiguous (row-major)");
  p.element_bits = static_cast<const uint32_t*>(bits.data);
  p.element_bitmaps = bits.shape[0];
  p.element_words = words;
  p.has_element_mask = true;
  if (idx.device >= 0) return;
  int64_t n[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
  for (int d = 0; d < idx.rank && d < 4; ++d) n[4 - idx.rank + d] = idx.shape[d], st[4 - idx.rank + d] = idx.strides[d];
  const int32_t* data = static_cast<const int32_t*>(idx.data);
  for (int64_t a = 0; a < n[0]; ++a)
    for (int64_t b = 0; b < n[1]; ++b)
      for (int64_t c = 0; c < n[2]; ++c)
        for (int64_t e = 0; e < n[3]; ++e) {
          const int32_t v = data[a * st[0] + b * st[1] + c * st[2] + e * st[3]];
          if (v < -1 || v >= p.element_bitmaps) {
            arg_fail("blockMask.elementIndex values must be -1 (no bitmap) or in [0, " + std::to_string(p.element_bitmaps) + "), got " +
                     std::to_string(v) + " at [" + std::to_string(a) + ", " + std::to_string(b) + ", " + std::to_string(c) + ", " +
                     std::to_string(e) + "]");
          }
        }
}

// The score options attention and decode share (scale, softcap, window, sinks, ALiBi slopes, sink
// logits), checked and copied from a request to its params: the two structs name them alike.
template <class Request, class Params>
void score_options(const Request& r, Params* p) {
  if (!r.has_scale) {
    p->scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p->head_dim)));
  } else {
    if (!std::isfinite(r.scale) || r.scale < 0) arg_fail("scale must be a finite number >= 0, got " + std::to_string(r.scale));
    p->scale = static_cast<float>(r.scale);
  }
  if (!std::isfinite(r.softcap) || r.softcap < 0) arg_fail("softcap must be a finite number >= 0 (0 turns it off), got " + std::to_string(r.softcap));
  p->softcap = static_cast<float>(r.softcap);
  if (r.has_window) {
    for (double w : {r.window_left, r.window_right}) {
      if (!(w >= -1) || w != std::floor(w) || w > 9.0e15) arg_fail("window must be [left, right] with integers >= -1 (-1 = unbounded), got [" + std::to_string(r.window_left) + ", " + std::to_string(r.window_right) + "]");
    }
    p->window_left = static_cast<int64_t>(r.window_left);
    p->window_right = static_cast<int64_t>(r.window_right);
  }
  if (!(r.sinks >= 0) || r.sinks != std::floor(r.sinks) || r.sinks > 9.0e15) arg_fail("sinks must be an integer >= 0, got " + std::to_string(r.sinks));
  p->sinks = static_cast<int64_t>(r.sinks);
  if (r.alibi_slopes.present) {
    if (static_cast<int64_t>(r.alibi_slopes.length) != p->heads_q) arg_fail("alibiSlopes must have one slope per query head (" + std::to_string(p->heads_q) + "), got " + std::to_string(r.alibi_slopes.length));
    p->alibi_slopes = r.alibi_slopes.data;
  }
  if (r.sink_logits.present) {
    if (static_cast<int64_t>(r.sink_logits.length) != p->heads_q) arg_fail("sinkLogits must have one logit per query head (" + std::to_string(p->heads_q) + "), got " + std::to_string(r.sink_logits.length));
    p->sink_logits = r.sink_logits.data;
  }
}

}  // namespace

TensorView make_view(const char* name, const CallerBuffer& buf, const TensorDesc& desc) {
  if (buf.detached) arg_fail(std::string(name) + "'s ArrayBuffer is detached (transferred or freed); pass a live buffer");
  if (desc.rank < 0 || desc.rank > kMaxRank) shape_fail(std::string(name) + " has unsupported rank " + std::to_string(desc.rank));
  if (!storable_in(desc.dtype, buf.array_dtype)) {
    fail(ErrorCode::DType, std::string(name) + " has dtype " + dtype_name(desc.dtype) + " but its data is a " +
                               dtype_name(buf.array_dtype) + " array");
  }
  TensorView v;
  v.dtype = desc.dtype;
  v.device = buf.device;
  v.rank = desc.rank;
  if (desc.offset < 0) arg_fail(std::string(name) + ".offset must be >= 0, got " + std::to_string(desc.offset));
  bool empty = false;
  int64_t last = desc.offset;  // highest element index reached
  for (int i = 0; i < desc.rank; ++i) {
    if (desc.shape[i] < 0) shape_fail(std::string(name) + ".shape[" + std::to_string(i) + "] must be >= 0, got " + std::to_string(desc.shape[i]));
    if (desc.strides[i] < 0) arg_fail(std::string(name) + ".strides[" + std::to_string(i) + "] must be >= 0, got " + std::to_string(desc.strides[i]));
    v.shape[i] = desc.shape[i];
    v.strides[i] = desc.strides[i];
    if (desc.shape[i] == 0) empty = true;
  }
  if (!empty) {
    for (int i = 0; i < desc.rank; ++i) {
      int64_t reach;
      if (__builtin_mul_overflow(desc.shape[i] - 1, desc.strides[i], &reach) || __builtin_add_overflow(last, reach, &last)) {
        arg_fail(std::string(name) + ": shape " + shape_str(v) + " with its strides overflows the address range");
      }
    }
    if (static_cast<uint64_t>(last) >= buf.length) {
      std::ostringstream s;
      s << name << " of shape " << shape_str(v) << " with offset " << desc.offset << " and strides [";
      for (int i = 0; i < desc.rank; ++i) s << (i ? ", " : "") << desc.strides[i];
      s << "] reaches element " << last << " but its buffer holds " << buf.length << " elements";
      arg_fail(s.str());
    }
    v.data = static_cast<char*>(buf.base) + static_cast<size_t>(desc.offset) * dtype_size(buf.array_dtype);
  } else {
    v.data = buf.base;
  }
  return v;
}

void require_no_self_overlap(const char* name, const TensorView& t) {
  // Sufficient condition: ordered by stride, each stride is at least the span of the smaller dims.
  int order[kMaxRank];
  int n = 0;
  for (int i = 0; i < t.rank; ++i) {
    if (t.shape[i] == 0) return;
    if (t.shape[i] > 1) order[n++] = i;
  }
  for (int a = 1; a < n; ++a)
    for (int b = a; b > 0 && t.strides[order[b]] < t.strides[order[b - 1]]; --b) std::swap(order[b], order[b - 1]);
  int64_t span = 1;
  for (int a = 0; a < n; ++a) {
    const int d = order[a];
    if (t.strides[d] < span) arg_fail(std::string(name) + " has overlapping strides; an output needs each element at its own address");
    span = t.strides[d] * t.shape[d];
  }
}

AttentionParams validate_attention(const AttentionRequest& r) {
  const TensorView& q = r.q;
  const TensorView& k = r.k;
  const TensorView& v = r.v;
  require_device("k", k.device, "q", q.device);
  require_device("v", v.device, "q", q.device);
  require_device("out", r.out.device, "q", q.device);
  if (r.has_bias) require_device("bias", r.bias.device, "q", q.device);
  if (r.has_mask) require_device("mask", r.mask.device, "q", q.device);
  if (r.has_block_mask) require_device("blockMask", r.block_mask.device, "q", q.device);
  if (r.has_block_mask && r.has_element_mask) {
    require_device("blockMask.elementIndex", r.element_index.device, "q", q.device);
    require_device("blockMask.elementBits", r.element_bits.device, "q", q.device);
  }
  if (r.lse) require_device("lse", r.lse_device, "q", q.device);
  if (q.rank != 4) shape_fail("q must have rank 4 [B, Hq, Sq, D], got shape " + shape_str(q));
  if (k.rank != 4) shape_fail("k must have rank 4 [B, Hkv, Sk, D], got shape " + shape_str(k));
  if (v.rank != 4) shape_fail("v must have rank 4 [B, Hkv, Sk, Dv], got shape " + shape_str(v));
  if (!is_float(q.dtype)) fail(ErrorCode::DType, std::string("q must be float32, float16 or bfloat16, got ") + dtype_name(q.dtype));
  if (k.dtype != q.dtype) fail(ErrorCode::DType, std::string("k must have q's dtype ") + dtype_name(q.dtype) + ", got " + dtype_name(k.dtype));
  if (v.dtype != q.dtype) fail(ErrorCode::DType, std::string("v must have q's dtype ") + dtype_name(q.dtype) + ", got " + dtype_name(v.dtype));

  AttentionParams p;
  p.q = q; p.k = k; p.v = v; p.out = r.out;
  p.batch = q.shape[0]; p.heads_q = q.shape[1]; p.seq_q = q.shape[2]; p.head_dim = q.shape[3];
  p.heads_kv = k.shape[1]; p.seq_k = k.shape[2]; p.head_dim_v = v.shape[3];
  if (k.shape[0] != p.batch) shape_fail("k batch " + std::to_string(k.shape[0]) + " must equal q batch " + std::to_string(p.batch) + " (q " + shape_str(q) + ", k " + shape_str(k) + ")");
  if (v.shape[0] != p.batch) shape_fail("v batch " + std::to_string(v.shape[0]) + " must equal q batch " + std::to_string(p.batch));
  if (k.shape[3] != p.head_dim) shape_fail("k head dim " + std::to_string(k.shape[3]) + " must equal q head dim " + std::to_string(p.head_dim) + " (q " + shape_str(q) + ", k " + shape_str(k) + ")");
  if (v.shape[1] != p.heads_kv) shape_fail("v heads " + std::to_string(v.shape[1]) + " must equal k heads " + std::to_string(p.heads_kv));
  if (v.shape[2] != p.seq_k) shape_fail("v length " + std::to_string(v.shape[2]) + " must equal k length " + std::to_string(p.seq_k));
  if (p.heads_kv == 0 || p.heads_q % p.heads_kv != 0) {
    shape_fail("q heads (" + std::to_string(p.heads_q) + ") must be a multiple of k/v heads (" + std::to_string(p.heads_kv) + ") for GQA/MQA");
  }
  if (p.head_dim == 0) shape_fail("head dim D must be >= 1, got q " + shape_str(q));

  const TensorView& o = r.out;
  if (o.rank != 4 || o.shape[0] != p.batch || o.shape[1] != p.heads_q || o.shape[2] != p.seq_q || o.shape[3] != p.head_dim_v) {
    std::ostringstream s;
    s << "out must have shape [" << p.batch << ", " << p.heads_q << ", " << p.seq_q << ", " << p.head_dim_v << "], got " << shape_str(o);
    shape_fail(s.str());
  }
  if (!is_float(o.dtype)) fail(ErrorCode::DType, std::string("out must be float32, float16 or bfloat16, got ") + dtype_name(o.dtype));
  require_no_self_overlap("out", o);

  score_options(r, &p);
  p.causal = r.causal;

  if (r.cu_seqlens_q.present != r.cu_seqlens_k.present) arg_fail("cuSeqlensQ and cuSeqlensK must be given together");
  if (r.cu_seqlens_q.present) {
    if (p.batch != 1) shape_fail("packed variable-length input (cuSeqlensQ/K) needs batch 1, got q " + shape_str(q));
    if (r.cu_seqlens_q.length != r.cu_seqlens_k.length) arg_fail("cuSeqlensQ (" + std::to_string(r.cu_seqlens_q.length) + " entries) and cuSeqlensK (" + std::to_string(r.cu_seqlens_k.length) + ") must describe the same number of segments");
    check_cu_seqlens("cuSeqlensQ", r.cu_seqlens_q, p.seq_q);
    check_cu_seqlens("cuSeqlensK", r.cu_seqlens_k, p.seq_k);
    p.cu_seqlens_q = r.cu_seqlens_q.data;
    p.cu_seqlens_k = r.cu_seqlens_k.data;
    p.num_segments = static_cast<int64_t>(r.cu_seqlens_q.length) - 1;
  }

  const int64_t target[4] = {p.batch, p.heads_q, p.seq_q, p.seq_k};
  if (r.has_bias) {
    if (!is_float(r.bias.dtype)) fail(ErrorCode::DType, std::string("bias must be float32, float16 or bfloat16, got ") + dtype_name(r.bias.dtype));
    p.bias = broadcast_to("bias", r.bias, target);
    p.has_bias = true;
  }
  if (r.has_mask) {
    if (r.mask.dtype != DType::UInt8) fail(ErrorCode::DType, std::string("mask must be uint8 (0 = masked out), got ") + dtype_name(r.mask.dtype));
    p.mask = broadcast_to("mask", r.mask, target);
    p.has_mask = true;
  }
  if (r.has_block_mask) {
    for (double b : {r.block_q, r.block_k}) {
      if (!(b >= 1) || b != std::floor(b) || b > 2147483647.0) {
        std::ostringstream s;
        s << "blockMask block sizes must be integers in [1, 2^31 - 1], got [" << r.block_q << ", " << r.block_k << "]";
        arg_fail(s.str());
      }
    }
    if (r.block_mask.dtype != DType::UInt8) fail(ErrorCode::DType, std::string("blockMask blocks must be uint8 (0 skip, 1 partial, 2 full), got ") + dtype_name(r.block_mask.dtype));
    p.block_q = static_cast<int64_t>(r.block_q);
    p.block_k = static_cast<int64_t>(r.block_k);
    const int64_t blocks[4] = {p.batch, p.heads_q, (p.seq_q + p.block_q - 1) / p.block_q, (p.seq_k + p.block_k - 1) / p.block_k};
    p.block_mask = broadcast_to("blockMask", r.block_mask, blocks, "[B, Hq, ceil(Sq / blockQ), ceil(Sk / blockK)]");
    p.has_block_mask = true;
    if (r.has_element_mask) validate_element_mask(r, blocks, p);
  }
  if (r.lse) {
    const int64_t n = p.batch * p.heads_q * p.seq_q;
    if (static_cast<int64_t>(r.lse_length) != n) arg_fail("lse buffer must hold B*Hq*Sq = " + std::to_string(n) + " floats, got " + std::to_string(r.lse_length));
    p.lse = r.lse;
  }
  return p;
}

namespace {

bool has_shape(const TensorView& t, std::initializer_list<int64_t> dims) {
  if (t.rank != static_cast<int>(dims.size())) return false;
  int i = 0;
  for (int64_t d : dims) if (t.shape[i++] != d) return false;
  return true;
}

std::string dims_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  int i = 0;
  for (int64_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
  return s + "]";
}

// A float32 state-like tensor of exactly `dims` (initialState, normalizer, ...).
void require_float32_shape(const char* name, const TensorView& t, std::initializer_list<int64_t> dims, const char* layout) {
  if (t.dtype != DType::Float32) fail(ErrorCode::DType, std::string(name) + " must be float32, got " + dtype_name(t.dtype));
  if (!has_shape(t, dims)) shape_fail(std::string(name) + " must have shape " + layout + " = " + dims_str(dims) + ", got " + shape_str(t));
}

// Log gates are log forget gates, a_t = exp(g) in [0, 1]: NaN and g > 0 are refused (a growing
// state could overflow); -Infinity is a full reset (a_t = 0). Read on the bits, so no float16 /
// bfloat16 conversion is needed here.
bool gate_ok(const void* base, DType dt, int64_t idx) {
  switch (dt) {
    case DType::Float32: { const float g = static_cast<const float*>(base)[idx]; return g <= 0.0f; }  // false for NaN
    case DType::Float16: {
      const uint16_t u = static_cast<const uint16_t*>(base)[idx];
      const bool nan = (u & 0x7c00u) == 0x7c00u && (u & 0x03ffu) != 0;
      return !nan && ((u & 0x8000u) != 0 || u == 0);
    }
    case DType::BFloat16: {
      const uint16_t u = static_cast<const uint16_t*>(base)[idx];
      const bool nan = (u & 0x7f80u) == 0x7f80u && (u & 0x007fu) != 0;
      return !nan && ((u & 0x8000u) != 0 || u == 0);
    }
    default: return false;
  }
}

// Host gates only: device gates are checked by the CUDA library, which reads them anyway (its
// blocking call reports a bad one with the same message).
void check_gate_values(const TensorView& g) {
  if (g.device >= 0) return;
  const int64_t n3 = g.rank == 4 ? g.shape[3] : 1, s3 = g.rank == 4 ? g.strides[3] : 0;
  for (int64_t b = 0; b < g.shape[0]; ++b)
    for (int64_t h = 0; h < g.shape[1]; ++h)
      for (int64_t t = 0; t < g.shape[2]; ++t)
        for (int64_t d = 0; d < n3; ++d) {
          if (!gate_ok(g.data, g.dtype, b * g.strides[0] + h * g.strides[1] + t * g.strides[2] + d * s3)) {
            std::string at = "[" + std::to_string(b) + ", " + std::to_string(h) + ", " + std::to_string(t) + (g.rank == 4 ? ", " + std::to_string(d) : "") + "]";
            arg_fail("logGates must be log forget gates (<= 0, -Infinity allowed; not NaN), got a value > 0 or NaN at " + at);
          }
        }
}

}  // namespace

LinearParams validate_linear(const LinearRequest& r) {
  const char* op = r.step ? "linearAttentionStep" : "linearAttention";
  const char* state_name = r.step ? "state" : "initialState";
  const char* norm_name = r.step ? "normalizer" : "initialNormalizer";
  // Every tensor where q is: the CPU kernel, or the CUDA library on q's device.
  const int dev = r.q.device;
  require_device("k", r.k.device, "q", dev);
  require_device("v", r.v.device, "q", dev);
  require_device("out", r.out.device, "q", dev);
  if (r.has_gates) require_device("logGates", r.gates.device, "q", dev);
  if (r.has_initial_state) require_device(state_name, r.initial_state.device, "q", dev);
  if (r.has_initial_normalizer) require_device(norm_name, r.initial_normalizer.device, "q", dev);
  if (r.has_state_out) require_device("state", r.state_out.device, "q", dev);
  if (r.has_normalizer_out) require_device("normalizer", r.normalizer_out.device, "q", dev);

  const TensorView &q = r.q, &k = r.k, &v = r.v;
  if (q.rank != 4) shape_fail(std::string("q must have rank 4 [B, H, ") + (r.step ? "T" : "S") + ", Dk], got shape " + shape_str(q));
  if (k.rank != 4) shape_fail(std::string("k must have rank 4 [B, H, ") + (r.step ? "T" : "S") + ", Dk], got shape " + shape_str(k));
  if (v.rank != 4) shape_fail(std::string("v must have rank 4 [B, H, ") + (r.step ? "T" : "S") + ", Dv], got shape " + shape_str(v));
  if (!is_float(q.dtype)) fail(ErrorCode::DType, std::string("q must be float32, float16 or bfloat16, got ") + dtype_name(q.dtype));
  if (k.dtype != q.dtype) fail(ErrorCode::DType, std::string("k must have q's dtype ") + dtype_name(q.dtype) + ", got " + dtype_name(k.dtype));
  if (v.dtype != q.dtype) fail(ErrorCode::DType, std::string("v must have q's dtype ") + dtype_name(q.dtype) + ", got " + dtype_name(v.dtype));

  LinearParams p;
  p.q = q; p.k = k; p.v = v; p.out = r.out;
  p.batch = q.shape[0]; p.heads = q.shape[1]; p.seq = q.shape[2]; p.dk = q.shape[3]; p.dv = v.shape[3];
  const char* dims[] = {"batch", "heads", "length", "key dim"};
  for (int d = 0; d < 4; ++d) {
    if (k.shape[d] != q.shape[d]) shape_fail(std::string("k ") + dims[d] + " " + std::to_string(k.shape[d]) + " must equal q's " + std::to_string(q.shape[d]) + " (q " + shape_str(q) + ", k " + shape_str(k) + ")");
    if (d < 3 && v.shape[d] != q.shape[d]) shape_fail(std::string("v ") + dims[d] + " " + std::to_string(v.shape[d]) + " must equal q's " + std::to_string(q.shape[d]) + " (q " + shape_str(q) + ", v " + shape_str(v) + ")");
  }
  if (p.dk == 0) shape_fail("key dim Dk must be >= 1, got q " + shape_str(q));
  if (p.dv == 0) shape_fail("value dim Dv must be >= 1, got v " + shape_str(v));

  const TensorView& o = r.out;
  if (!has_shape(o, {p.batch, p.heads, p.seq, p.dv})) shape_fail("out must have shape " + dims_str({p.batch, p.heads, p.seq, p.dv}) + ", got " + shape_str(o));
  if (!is_float(o.dtype)) fail(ErrorCode::DType, std::string("out must be float32, float16 or bfloat16, got ") + dtype_name(o.dtype));
  require_no_self_overlap("out", o);

  const double fm = r.feature_map;
  if (!(fm >= 0 && fm <= 3) || fm != std::floor(fm)) arg_fail("featureMap must be 'identity', 'elu1', 'relu' or 'efficient'");
  p.feature_map = static_cast<FeatureMap>(static_cast<int>(fm));
  if (!std::isfinite(r.scale)) arg_fail("scale must be a finite number, got " + std::to_string(r.scale));
  p.scale = static_cast<float>(r.scale);
  if (!(r.chunk >= 1 && r.chunk <= 1024) || r.chunk != std::floor(r.chunk)) {
    arg_fail("chunkSize must be an integer in [1, 1024], got " + std::to_string(r.chunk));
  }
  p.chunk = static_cast<int64_t>(r.chunk);
  p.causal = r.step || r.causal;
  p.normalize = r.normalize;

  if (p.feature_map == FeatureMap::Efficient) {
    // Its keys are a softmax over the whole sequence: no prefix of it is known before the end.
    if (r.step) arg_fail("featureMap 'efficient' normalizes keys over the whole sequence, so linearAttentionStep (causal) cannot use it");
    if (p.causal) arg_fail("featureMap 'efficient' (keys softmaxed over the sequence) is non-causal only: pass causal: false");
    if (r.decay_kind != 0 || r.has_gates) arg_fail("featureMap 'efficient' takes no decay or logGates");
    if (r.has_initial_state || r.has_initial_normalizer) arg_fail("featureMap 'efficient' takes no initialState / initialNormalizer: its key softmax spans one call's sequence");
  }

  if (r.decay_kind != 0 && r.has_gates) arg_fail(std::string(op) + ": pass at most one of decay and logGates");
  if (r.decay_kind == 1) {
    if (!(r.decay > 0 && r.decay <= 1)) arg_fail("decay must be in (0, 1], got " + std::to_string(r.decay));
    p.gate_kind = GateKind::Decay;
    p.decay = r.decay;
  } else if (r.decay_kind == 2) {
    const FloatArray& a = r.decay_per_head;
    if (static_cast<int64_t>(a.length) != p.heads) arg_fail("decay must be a number or hold one lambda per head (" + std::to_string(p.heads) + "), got " + std::to_string(a.length));
    for (size_t h = 0; h < a.length; ++h) {
      if (!(a.data[h] > 0 && a.data[h] <= 1)) arg_fail("decay[" + std::to_string(h) + "] must be in (0, 1], got " + std::to_string(a.data[h]));
    }
    p.gate_kind = GateKind::Decay;
    p.decay_per_head = a.data;
  } else if (r.decay_kind != 0) {
    arg_fail("internal: unknown decay kind");
  }
  if (r.has_gates) {
    const TensorView& g = r.gates;
    if (!is_float(g.dtype)) fail(ErrorCode::DType, std::string("logGates must be float32, float16 or bfloat16, got ") + dtype_name(g.dtype));
    if (has_shape(g, {p.batch, p.heads, p.seq})) {
      p.gate_kind = GateKind::Scalar;
    } else if (has_shape(g, {p.batch, p.heads, p.seq, p.dk})) {
      p.gate_kind = GateKind::PerDim;
    } else {
      shape_fail("logGates must have shape [B, H, S] = " + dims_str({p.batch, p.heads, p.seq}) + " (one gate per step) or [B, H, S, Dk] = " +
                 dims_str({p.batch, p.heads, p.seq, p.dk}) + " (per key dimension), got " + shape_str(g));
    }
    check_gate_values(g);
    p.gates = g;
  }

  if (r.has_initial_state) {
    require_float32_shape(state_name, r.initial_state, {p.batch, p.heads, p.dk, p.dv}, "[B, H, Dk, Dv]");
    p.has_initial_state = true;
    p.initial_state = r.initial_state;
  }
  if (r.has_initial_normalizer) {
    if (!p.normalize) arg_fail(std::string(norm_name) + " is only used with normalize: true");
    require_float32_shape(norm_name, r.initial_normalizer, {p.batch, p.heads, p.dk}, "[B, H, Dk]");
    p.has_initial_normalizer = true;
    p.initial_normalizer = r.initial_normalizer;
  }
  if (p.normalize && r.step && !r.has_initial_normalizer) {
    arg_fail("linearAttentionStep with normalize needs opts.normalizer: the float32 [B, H, Dk] running sum of phi(k) (returned as normalizer by linearAttention with returnState)");
  }
  if (p.normalize && !r.step && r.has_initial_state != r.has_initial_normalizer) {
    arg_fail(r.has_initial_state ? "initialState with normalize needs initialNormalizer too (the normalizer returned with the state)"
                                 : "initialNormalizer needs initialState too");
  }
  if (r.has_state_out) {
    require_float32_shape("state", r.state_out, {p.batch, p.heads, p.dk, p.dv}, "[B, H, Dk, Dv]");
    require_no_self_overlap("state", r.state_out);
    p.has_state_out = true;
    p.state_out = r.state_out;
  }
  if (r.has_normalizer_out) {
    if (!p.normalize) arg_fail("internal: a normalizer output without normalize");
    require_float32_shape("normalizer", r.normalizer_out, {p.batch, p.heads, p.dk}, "[B, H, Dk]");
    require_no_self_overlap("normalizer", r.normalizer_out);
    p.has_normalizer_out = true;
    p.normalizer_out = r.normalizer_out;
  }
  return p;
}

DecodeParams validate_decode(const DecodeRequest& r) {
  const TensorView &q = r.q, &o = r.out, &kp = r.k_pool, &vp = r.v_pool;
  require_device("out", o.device, "q", q.device);
  require_device("cache.k", kp.device, "q", q.device);
  require_device("cache.v", vp.device, "q", q.device);
  if (q.rank != 4) shape_fail("q must have rank 4 [B, Hq, Sq, D], got shape " + shape_str(q));
  if (kp.rank != 4 || vp.rank != 4 || !is_row_major(kp) || !is_row_major(vp)) shape_fail("the cache's pools must be contiguous [pages, kvHeads, pageSize, headDim]");
  if (!is_float(q.dtype)) fail(ErrorCode::DType, std::string("q must be float32, float16 or bfloat16, got ") + dtype_name(q.dtype));
  if (kp.dtype != q.dtype || vp.dtype != q.dtype) fail(ErrorCode::DType, std::string("q must have the cache's dtype ") + dtype_name(kp.dtype) + ", got " + dtype_name(q.dtype));
  for (int i = 0; i < 4; ++i) if (vp.shape[i] != kp.shape[i]) shape_fail("the cache's K and V pools must have one shape");
  DecodeParams p;
  p.q = q; p.out = o; p.k_pool = kp; p.v_pool = vp;
  p.batch = q.shape[0]; p.heads_q = q.shape[1]; p.seq_q = q.shape[2]; p.head_dim = q.shape[3];
  p.pool_pages = kp.shape[0]; p.heads_kv = kp.shape[1]; p.page_size = kp.shape[2];
  if (kp.shape[3] != p.head_dim) shape_fail("q head dim " + std::to_string(p.head_dim) + " must equal the cache's headDim " + std::to_string(kp.shape[3]));
  if (p.heads_kv == 0 || p.heads_q % p.heads_kv != 0) shape_fail("q heads (" + std::to_string(p.heads_q) + ") must be a multiple of the cache's kvHeads (" + std::to_string(p.heads_kv) + ")");
  if (p.head_dim == 0 || p.page_size == 0) shape_fail("headDim and pageSize must be >= 1");
  if (!has_shape(o, {p.batch, p.heads_q, p.seq_q, p.head_dim})) shape_fail("out must have shape " + dims_str({p.batch, p.heads_q, p.seq_q, p.head_dim}) + ", got " + shape_str(o));
  if (!is_float(o.dtype)) fail(ErrorCode::DType, std::string("out must be float32, float16 or bfloat16, got ") + dtype_name(o.dtype));
  require_no_self_overlap("out", o);
  if (!r.lengths.present || static_cast<int64_t>(r.lengths.length) != p.batch) arg_fail("internal: decode lengths must have one entry per sequence");
  if (!r.page_table.present || p.batch == 0 || r.page_table.length % static_cast<size_t>(p.batch) != 0) arg_fail("internal: decode page table must be [B, width]");
  p.table_width = static_cast<int64_t>(r.page_table.length) / p.batch;
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t len = r.lengths.data[b];
    if (len < 0 || len > p.table_width * p.page_size) arg_fail("internal: decode length of sequence " + std::to_string(b) + " out of range");
    for (int64_t i = 0; i * p.page_size < len; ++i) {
      const int32_t page = r.page_table.data[b * p.table_width + i];
      if (page < 0 || page >= p.pool_pages) arg_fail("internal: decode page table entry out of range");
    }
  }
  p.page_table = r.page_table.data;
  p.lengths = r.lengths.data;
  for (int64_t b = 0; b < p.batch; ++b) p.max_length = std::max<int64_t>(p.max_length, r.lengths.data[b]);
  score_options(r, &p);
  if (r.lse) {
    if (static_cast<int64_t>(r.lse_length) != p.batch * p.heads_q * p.seq_q) arg_fail("internal: decode lse must be [B, Hq, Sq]");
    require_device("lse", r.lse_device, "q", q.device);
    p.lse = r.lse;
  }
  if (q.device >= 0) {
    // The device copies of the table and lengths: as large as the host mirror says, on q's device.
    const CallerBuffer &dt = r.device_table, &dl = r.device_lengths;
    if (!dt.base || dt.device != q.device || dt.array_dtype != DType::Int32 || dt.length < r.page_table.length ||
        !dl.base || dl.device != q.device || dl.array_dtype != DType::Int32 || dl.length < r.lengths.length)
      arg_fail("internal: a device decode needs int32 device copies of the page table and lengths on " + device_name(q.device));
    p.device_page_table = static_cast<const int32_t*>(dt.base);
    p.device_lengths = static_cast<const int32_t*>(dl.base);
    if (r.scores.present) arg_fail("internal: a device decode keeps its scores on the device");
    if (const CallerBuffer& sc = r.device_scores; sc.base) {
      if (sc.device != q.device || sc.array_dtype != DType::Float32 || static_cast<int64_t>(sc.length) < p.pool_pages * p.heads_kv * p.page_size)
        arg_fail("internal: decode scores must be float32 [pages, kvHeads, pageSize] on " + device_name(q.device));
      p.scores = static_cast<float*>(sc.base);
    }
  } else if (r.device_table.base || r.device_lengths.base || r.device_scores.base) {
    arg_fail("internal: a CPU decode takes no device tables");
  }
  if (r.scores.present) {
    if (static_cast<int64_t>(r.scores.length) != p.pool_pages * p.heads_kv * p.page_size) arg_fail("internal: decode scores must be [pages, kvHeads, pageSize]");
    p.scores = const_cast<float*>(r.scores.data);
  }
  if (!(r.splits >= 0) || r.splits != std::floor(r.splits) || r.splits > 65536) arg_fail("splits must be an integer in [0, 65536] (0: chosen by attnkit), got " + std::to_string(r.splits));
  p.splits = static_cast<int64_t>(r.splits);
  return p;
}

KvRowsParams validate_kv_rows(const KvRowsRequest& r) {
  const TensorView &k = r.k, &v = r.v, &kp = r.k_pool, &vp = r.v_pool;
  if (kp.device < 0) fail(ErrorCode::Device, "internal: kv rows are for device caches");
  require_device("k", k.device, "cache.k", kp.device);
  require_device("v", v.device, "cache.k", kp.device);
  require_device("cache.v", vp.device, "cache.k", kp.device);
  if (kp.rank != 4 || vp.rank != 4 || !is_row_major(kp) || !is_row_major(vp)) shape_fail("the cache's pools must be contiguous [pages, kvHeads, pageSize, headDim]");
  for (int i = 0; i < 4; ++i) if (vp.shape[i] != kp.shape[i]) shape_fail("the cache's K and V pools must have one shape");
  if (k.dtype != kp.dtype || v.dtype != kp.dtype || vp.dtype != kp.dtype) fail(ErrorCode::DType, std::string("k and v must have the cache's dtype ") + dtype_name(kp.dtype));
  KvRowsParams p;
  p.k = k; p.v = v; p.k_pool = kp; p.v_pool = vp; p.gather = r.gather;
  p.pool_pages = kp.shape[0]; p.heads_kv = kp.shape[1]; p.page_size = kp.shape[2]; p.head_dim = kp.shape[3];
  if (k.rank != 4 || v.rank != 4) shape_fail("k and v must have rank 4 [B, kvHeads, T, headDim]");
  p.batch = k.shape[0];
  const int64_t T = k.shape[2];
  if (!has_shape(k, {p.batch, p.heads_kv, T, p.head_dim}) || !has_shape(v, {p.batch, p.heads_kv, T, p.head_dim}))
    shape_fail("k and v must have shape [B, kvHeads=" + std::to_string(p.heads_kv) + ", T, headDim=" + std::to_string(p.head_dim) + "], got " + shape_str(k) + " and " + shape_str(v));
  // Gathered rows are written: no element of k or v may be written twice.
  if (r.gather) {
    require_no_self_overlap("k", k);
    require_no_self_overlap("v", v);
  }
  const Int32Array& index = r.gather ? r.positions : r.starts;
  const int64_t per_seq = r.gather ? T : 1;
  if (!r.counts.present || !index.present || static_cast<int64_t>(r.counts.length) != p.batch || static_cast<int64_t>(index.length) != p.batch * per_seq)
    arg_fail("internal: kv rows counts, starts and positions must have one entry per sequence (and row)");
  if (!r.table.present || p.batch == 0 || r.table.length % static_cast<size_t>(p.batch) != 0) arg_fail("internal: kv rows page table must be [B, width]");
  p.table_width = static_cast<int64_t>(r.table.length) / p.batch;
  // Every position a row goes to or comes from must lie in a page of the sequence's table that is in the pool.
  auto check_position = [&](int64_t b, int64_t pos) {
    if (pos < 0 || pos / p.page_size >= p.table_width) arg_fail("internal: kv rows position of sequence " + std::to_string(b) + " outside its page table");
    const int32_t page = r.table.data[b * p.table_width + pos / p.page_size];
    if (page < 0 || page >= p.pool_pages) arg_fail("internal: kv rows page table entry out of range");
  };
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t n = r.counts.data[b];
    if (n < 0 || n > T) arg_fail("internal: kv rows count of sequence " + std::to_string(b) + " out of range");
    for (int64_t t = 0; t < n; ++t) {
      const int64_t pos = r.gather ? int64_t(index.data[b * T + t]) : int64_t(index.data[b]) + t;
      // Rows of one page share its check: test each page once per sequence on the append path.
      if (r.gather || t == 0 || pos % p.page_size == 0) check_position(b, pos);
    }
  }
  const CallerBuffer& dt = r.device_table;
  if (!dt.base || dt.device != kp.device || dt.array_dtype != DType::Int32 || dt.length < r.table.length)
    arg_fail("internal: kv rows need the int32 device copy of the page table on " + device_name(kp.device));
  p.counts = r.counts.data;
  (r.gather ? p.positions : p.starts) = index.data;
  p.device_page_table = static_cast<const int32_t*>(dt.base);
  return p;
}

void validate_merge(const MergeRequest& r) {
  if (r.num_parts < 1) arg_fail("parts must hold at least one { out, lse } pair");
  const TensorView& o0 = r.outs[0];
  for (int64_t i = 0; i < r.num_parts; ++i) {
    const std::string n = "parts[" + std::to_string(i) + "]";
    require_device((n + ".out").c_str(), r.outs[i].device, "parts[0].out", o0.device);
    require_device((n + ".lse").c_str(), r.lses[i].device, "parts[0].out", o0.device);
  }
  require_device("out", r.out.device, "parts[0].out", o0.device);
  require_device("lse", r.lse.device, "parts[0].out", o0.device);
  if (o0.rank != 4) shape_fail("parts[0].out must have rank 4 [B, H, S, Dv], got " + shape_str(o0));
  for (int64_t i = 0; i < r.num_parts; ++i) {
    const TensorView& o = r.outs[i];
    const TensorView& l = r.lses[i];
    const std::string n = "parts[" + std::to_string(i) + "]";
    if (!is_float(o.dtype)) fail(ErrorCode::DType, n + ".out must be a float tensor, got " + dtype_name(o.dtype));
    if (l.dtype != DType::Float32) fail(ErrorCode::DType, n + ".lse must be float32, got " + dtype_name(l.dtype));
    if (o.rank != 4 || o.shape[0] != o0.shape[0] || o.shape[1] != o0.shape[1] || o.shape[2] != o0.shape[2] || o.shape[3] != o0.shape[3]) {
      shape_fail(n + ".out has shape " + shape_str(o) + " but parts[0].out has " + shape_str(o0));
    }
    if (l.rank != 3 || l.shape[0] != o0.shape[0] || l.shape[1] != o0.shape[1] || l.shape[2] != o0.shape[2]) {
      shape_fail(n + ".lse must have shape [B, H, S] = [" + std::to_string(o0.shape[0]) + ", " + std::to_string(o0.shape[1]) + ", " + std::to_string(o0.shape[2]) + "], got " + shape_str(l));
    }
  }
  const TensorView& o = r.out;
  if (o.rank != 4 || o.shape[0] != o0.shape[0] || o.shape[1] != o0.shape[1] || o.shape[2] != o0.shape[2] || o.shape[3] != o0.shape[3]) {
    shape_fail("merged out must have the parts' shape " + shape_str(o0) + ", got " + shape_str(o));
  }
  require_no_self_overlap("out", o);
  if (r.lse.dtype != DType::Float32 || r.lse.rank != 3) shape_fail("merged lse must be float32 [B, H, S]");
  require_no_self_overlap("lse", r.lse);
  if (o0.device >= 0) {
    // The CUDA merge reads and writes lse as contiguous [B, H, S] float32 (attnkit_cuda.h).
    for (int64_t i = 0; i < r.num_parts; ++i) {
      if (!is_row_major(r.lses[i])) arg_fail("parts[" + std::to_string(i) + "].lse must be contiguous on " + device_name(o0.device) + " (call .contiguous())");
    }
    if (!is_row_major(r.lse)) arg_fail("merged lse must be contiguous on " + device_name(o0.device));
  }
}

void validate_topk_select(const TopkSelectRequest& r) {
  const TensorView &q = r.q, &k = r.k;
  if (q.device < 0) fail(ErrorCode::Device, "topkSelect runs on a device; q is on the CPU (the CPU gating is lib/sparse/topk.ts)");
  require_device("k", k.device, "q", q.device);
  require_device("states", r.states.device, "q", q.device);
  require_device("indices", r.indices.device, "q", q.device);
  if (!is_float(q.dtype) || !is_float(k.dtype)) fail(ErrorCode::DType, "q and k must be float32, float16 or bfloat16");
  if (q.rank != 4 || k.rank != 4) shape_fail("q and k must have rank 4 [B, H, S, D], got " + shape_str(q) + " and " + shape_str(k));
  const int64_t B = q.shape[0], Hq = q.shape[1], Sq = q.shape[2], D = q.shape[3], Hkv = k.shape[1], Sk = k.shape[2];
  if (k.shape[0] != B || k.shape[3] != D || Hkv < 1 || Hq % Hkv != 0) {
    shape_fail("k " + shape_str(k) + " does not fit q " + shape_str(q) + " (same B and D, Hq a multiple of Hkv)");
  }
  if (r.block < 1) arg_fail("blockSize must be an integer >= 1, got " + std::to_string(r.block));
  if (r.causal && Sq != Sk) shape_fail("causal needs seqLenQ === seqLenK, got " + std::to_string(Sq) + " and " + std::to_string(Sk));
  const int64_t nqb = (Sq + r.block - 1) / r.block, nkb = (Sk + r.block - 1) / r.block;
  if (r.topk < 1 || r.topk > nkb) arg_fail("topk must be in [1, " + std::to_string(nkb) + "], got " + std::to_string(r.topk));
  const TensorView& st = r.states;
  if (st.dtype != DType::UInt8 || st.rank != 4 || st.shape[0] != B || st.shape[1] != Hq || st.shape[2] != nqb || st.shape[3] != nkb ||
      !is_row_major(st)) {
    shape_fail("states must be contiguous uint8 [" + std::to_string(B) + ", " + std::to_string(Hq) + ", " + std::to_string(nqb) + ", " +
               std::to_string(nkb) + "], got " + shape_str(st));
  }
  const TensorView& ix = r.indices;
  if (ix.dtype != DType::Int32 || ix.rank != 4 || ix.shape[0] != B || ix.shape[1] != Hq || ix.shape[2] != nqb ||
      ix.shape[3] != r.topk || !is_row_major(ix)) {
    shape_fail("indices must be contiguous int32 [" + std::to_string(B) + ", " + std::to_string(Hq) + ", " + std::to_string(nqb) + ", " +
               std::to_string(r.topk) + "], got " + shape_str(ix));
  }
}

void check_byte_range(const char* name, uint64_t offset, uint64_t bytes, uint64_t capacity) {
  if (offset > capacity || bytes > capacity - offset) {
    arg_fail(std::string(name) + ": bytes [" + std::to_string(offset) + ", " + std::to_string(offset) + " + " + std::to_string(bytes) +
             ") reach past its " + std::to_string(capacity) + " bytes");
  }
}

bool is_row_major(const TensorView& t) {
  int64_t expect = 1;
  for (int i = t.rank - 1; i >= 0; --i) {
    if (t.shape[i] == 0) return true;
    if (t.shape[i] != 1 && t.strides[i] != expect) return false;
    expect *= t.shape[i];
  }
  return true;
}

}  // namespace attnkit
