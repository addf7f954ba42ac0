// Row access shared by the per-ISA kernels (fused/, linear/): strided rows of any float dtype as
// float32, and a vector fill. Written over the simd/ Vec interface; include inside an ISA namespace
// after vec_<isa>.h (like vec_math.h), with element_io.h and <cstring> already included.

// Rows [j0, j0+n) of a [.., S, D]-strided K or V as float32 rows with unit stride: float32 rows
// with unit stride are used in place, everything else is copied or converted into buf.
// reread_rows: the caller re-reads each row many times (V in O^T += V^T P^T, once per group of
// output rows). Then spaced-out rows are copied too: [B, S, H, D]-interleaved rows sit a power of
// two apart and would alias onto a few L1 sets. K is read once per tile and stays in place.
static inline const float* rows_as_f32(const TensorView& t, const char* base, int64_t j0, int64_t n, int64_t width,
                                       bool reread_rows, float* buf, int64_t* row_stride) {
  const int64_t s2 = t.strides[2], s3 = t.strides[3];
  const size_t es = dtype_size(t.dtype);
  if (t.dtype == DType::Float32 && (s3 == 1 || width == 1) && (!reread_rows || s2 == width || n == 1)) {
    *row_stride = s2;
    return reinterpret_cast<const float*>(base) + j0 * s2;
  }
  *row_stride = width;
  for (int64_t j = 0; j < n; ++j) {
    const char* row = base + (j0 + j) * s2 * es;
    float* dst = buf + j * width;
    if (s3 == 1 && t.dtype == DType::Float32) {
      std::memcpy(dst, row, static_cast<size_t>(width) * sizeof(float));
    } else if (s3 == 1 && t.dtype == DType::Float16) {
      cvt_f16_row(reinterpret_cast<const uint16_t*>(row), dst, width);
    } else if (s3 == 1 && t.dtype == DType::BFloat16) {
      cvt_bf16_row(reinterpret_cast<const uint16_t*>(row), dst, width);
    } else {
      for (int64_t d = 0; d < width; ++d) dst[d] = load_as_float(row, t.dtype, d * s3);
    }
  }
  return buf;
}

static inline void fill(float* p, int64_t n, float x) {
  const Vec v = vset1(x);
  const int64_t whole = n / kWidth * kWidth;
  for (int64_t i = 0; i < whole; i += kWidth) vstore(p + i, v);
  for (int64_t i = whole; i < n; ++i) p[i] = x;
}

static inline const char* head_base(const TensorView& t, int64_t b, int64_t h) {
  return static_cast<const char*>(t.data) + (b * t.strides[0] + h * t.strides[1]) * static_cast<int64_t>(dtype_size(t.dtype));
}
