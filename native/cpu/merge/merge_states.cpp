#include "merge_states.h"

#include <cmath>
#include <limits>
#include <vector>

#include "../../core/thread_pool.h"
#include "../element_io.h"

namespace attnkit {

void merge_attention_states_cpu(const MergeRequest& r) {
  const TensorView& o0 = r.outs[0];
  const int64_t B = o0.shape[0], H = o0.shape[1], S = o0.shape[2], Dv = o0.shape[3];
  const int64_t rows = B * H * S;
  const int64_t rows_per_item = 256;
  ThreadPool::global().parallel_for((rows + rows_per_item - 1) / rows_per_item, [&](int64_t item, int) {
    std::vector<float> w(static_cast<size_t>(r.num_parts));
    std::vector<float> acc(static_cast<size_t>(Dv));
    const int64_t end = std::min(rows, (item + 1) * rows_per_item);
    for (int64_t row = item * rows_per_item; row < end; ++row) {
      const int64_t b = row / (H * S), h = (row / S) % H, s = row % S;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t p = 0; p < r.num_parts; ++p) {
        const TensorView& l = r.lses[p];
        w[p] = static_cast<const float*>(l.data)[b * l.strides[0] + h * l.strides[1] + s * l.strides[2]];
        if (w[p] > m) m = w[p];
      }
      float sum = 0.0f;
      if (m != -std::numeric_limits<float>::infinity()) {
        for (int64_t p = 0; p < r.num_parts; ++p) sum += (w[p] = std::exp(w[p] - m));
      }
      std::fill(acc.begin(), acc.end(), 0.0f);
      if (sum > 0.0f) {
        for (int64_t p = 0; p < r.num_parts; ++p) {
          const float wp = w[p] / sum;
          if (wp == 0.0f) continue;
          const TensorView& o = r.outs[p];
          const int64_t base = b * o.strides[0] + h * o.strides[1] + s * o.strides[2];
          for (int64_t d = 0; d < Dv; ++d) acc[d] += wp * load_as_float(o.data, o.dtype, base + d * o.strides[3]);
        }
      }
      const TensorView& o = r.out;
      const int64_t base = b * o.strides[0] + h * o.strides[1] + s * o.strides[2];
      for (int64_t d = 0; d < Dv; ++d) store_from_float(o.data, o.dtype, base + d * o.strides[3], acc[d]);
      const TensorView& l = r.lse;
      static_cast<float*>(l.data)[b * l.strides[0] + h * l.strides[1] + s * l.strides[2]] =
          sum > 0.0f ? m + std::log(sum) : -std::numeric_limits<float>::infinity();
    }
  });
}

}  // namespace attnkit
