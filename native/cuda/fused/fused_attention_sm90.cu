// Fused attention forward for Hopper (sm_90a), in the FlashAttention-3 style:
//
//   * one CTA = 3 warpgroups: warpgroup 0 is the producer (one thread issues every TMA load and
//     then idles on 32 registers), warpgroups 1 and 2 are consumers with 240 registers each, each
//     owning 64 of the CTA's 128 query rows;
//   * Q, K and V tiles arrive by TMA in the 128-byte swizzle that wgmma reads directly; K and V
//     tiles each cycle through kStages shared-memory stages guarded by "full" (TMA done) and
//     "empty" (consumers done) mbarriers, so loads run ahead of the math. At D128 K and V
//     stages are released separately, a K stage as soon as S = Q K^T is done, so the next K
//     load is under way a whole tile before it is needed (with one release per stage after
//     P V and two stages, it was issued just as the consumers wanted it: +6-8%);
//   * S = Q K^T is one chain of wgmma (A and B from shared memory); the online softmax runs on
//     the accumulator registers; P is converted to 16-bit in registers and is the A operand of
//     O += P V (wgmma with A from registers, V MN-major from shared memory): no smem round trip;
//   * key tiles come from visible_keys() (the same tile classification as the CPU): tiles outside
//     causal / window / sinks are never loaded; a tile that tile_fully_visible() accepts skips
//     all per-element masking, the others test each element against its row's bounds
//     (row_visible_keys, three integer compares);
//   * up to 8192 keys the grid is persistent (one CTA per SM, causal blocks paired heavy + light
//     so every item costs the same), hiding each block's prologue and epilogue; dense D128 uses
//     176-key tiles where they divide the keys well. bench/NOTES.md logs what each step measured.
//
// Supports float16 / bfloat16 q, k, v with head dim 64 or 128 (Dv == D), unit d-stride and
// 16-byte-aligned rows (TMA's rules); any out dtype with unit d-stride. Everything else falls
// back to the sm_80 or the generic kernel (see fused_attention_sm90_supports).
#include <cuda.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "fused_attention.h"
#include "sm90/hopper_primitives.cuh"
#include "sm90/wgmma_ops.cuh"

// The kernel body exists only in the sm_90a pass; the other -gencode passes see its helpers as
// unreferenced (warning 177), which says nothing useful there.
#pragma nv_diag_suppress 177

#ifndef ATTNKIT_SM90_WIDE_N
#define ATTNKIT_SM90_WIDE_N 1
#endif
#ifndef ATTNKIT_SM90_PERSISTENT
#define ATTNKIT_SM90_PERSISTENT 1
#endif
#ifndef ATTNKIT_SM90_D64_CONSUMERS
#define ATTNKIT_SM90_D64_CONSUMERS 3
#endif

namespace attnkit {
namespace cuda {
namespace {

using namespace sm90;

// Consumer warpgroups per CTA (64 query rows each): three at head dim 64, where the softmax is
// as long as the GEMMs and a third warpgroup keeps the tensor cores fed (FlashAttention-3's
// 192 x 128 tile for that size), two at 128, where o alone takes 64 of a thread's registers.
__host__ __device__ constexpr int sm90_consumers(int head_dim) { return head_dim <= 64 ? ATTNKIT_SM90_D64_CONSUMERS : 2; }

template <int HeadDim, int BlockN>
struct Sm90Tile {
  static constexpr int kConsumers = sm90_consumers(HeadDim);
  static constexpr int kBlockM = 64 * kConsumers;     // query rows per CTA
  static constexpr int kBlockN = BlockN;              // keys per tile
  // K/V stages: as many as fit beside Q in the 227 KiB of shared memory, up to 3 (at D128 with
  // 176-key tiles only 2 fit; 3 stages of 128-key tiles measured +10% at S4096 over 2).
  static constexpr int kStages = HeadDim <= 64 || BlockN <= 128 ? 3 : 2;
  // Above head dim 64 the softmax of tile t runs under the P V GEMM of tile t-1 (the consumer
  // loop's software pipeline), and a K stage is released as soon as S = Q K^T is done, apart
  // from its V. At 64, where that pipeline is off, one release per stage after P V measured 4%
  // faster (a second mbarrier arrive per tile on the softmax's path bought nothing there).
  static constexpr bool kOverlapSoftmax = HeadDim > 64;
  static constexpr bool kSplitRelease = kOverlapSoftmax;
  static constexpr int kColumnBlocks = HeadDim / 64;  // 64-column (128-byte) swizzle blocks per row
  static constexpr int kQBytes = kBlockM * HeadDim * 2;
  static constexpr int kKVBytes = kBlockN * HeadDim * 2;  // one K or one V tile
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kConsumerThreads = 128 * kConsumers;
  // setmaxnreg budgets: what the producer warpgroup gives back is all the consumers can take,
  // out of the CTA's launch allocation (kThreads x kLaunchRegisters; a consumer asking for more
  // than was given back waits forever). 24 + 2 x 240 at D128 (384 threads x 168); 32 + 3 x 160 at
  // D64 (512 x 128), where the producer's warp needs 32 to walk a block mask's tiles unspilled.
  static constexpr int kLaunchRegisters = 65536 / kThreads / 8 * 8;
  static constexpr int kProducerRegisters = kConsumers == 2 ? 24 : 32;
  static constexpr int kConsumerRegisters =
      std::min(240, (kThreads / 128 * kLaunchRegisters - kProducerRegisters) / kConsumers / 8 * 8);
  static_assert(kConsumerRegisters == (kConsumers == 2 ? 240 : 160), "register budget changed");
  static_assert(128 * kProducerRegisters + kConsumerThreads * kConsumerRegisters <= kThreads * kLaunchRegisters,
                "the consumers would wait forever for registers the producer never gave back");
  // q_full, q_empty, and per stage k_full, v_full, k_empty, v_empty, tile_ready; then a block-
  // masked call's hand-over words (a tile per stage, two for the item) and the producer's chunk
  // of tile states.
  static constexpr int kBarrierBytes = 8 * (2 + 5 * kStages) + 4 * (kStages + 2) + 32;
  static constexpr int kSmemBytes = 1024 /* alignment slack */ + kQBytes + 2 * kStages * kKVBytes + kBarrierBytes;
  static_assert(kSmemBytes <= 227 * 1024, "over sm_90's shared memory per block");
};

struct Sm90TensorMaps {
  CUtensorMap q, k, v;
};

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Stores two adjacent output elements (columns d, d+1 of one row) in out's dtype.
__device__ __forceinline__ void store_output_pair(const FusedAttentionProblem& p, char* row, int d, float a, float b) {
  if (p.out_dtype == kF32) {
    *reinterpret_cast<float2*>(reinterpret_cast<float*>(row) + d) = make_float2(a, b);
  } else {
    *reinterpret_cast<uint32_t*>(reinterpret_cast<uint16_t*>(row) + d) =
        p.out_dtype == kBF16 ? pack_16bit_pair<true>(a, b) : pack_16bit_pair<false>(a, b);
  }
}

// The key tiles a CTA visits: first the sink prefix, then the main range (disjoint, see
// visible_keys). Producer and consumers derive the same list from the same calls. With a block
// mask the tiles are every BlockN keys of the segment (its full blocks may hold keys the options
// hide), and next_tile() picks those to visit.
struct KeyTiles {
  KeyRange range;  // what the options leave visible
  int sink_tiles, total;
  bool all_keys;   // block mask: tile t is keys [t * BlockN, +BlockN) of the segment
};

// Which kernels take block masks: not the 176-key tiles (sm90_key_tile never picks them with
// one), nor score modifiers at D64, whose per-element block lookup spilled at 160 registers
// (those problems go to the generic kernel: sm90_block_masks).
__host__ __device__ constexpr bool sm90_block_masks(int head_dim, int block_n, bool score_mods) {
  return block_n <= 128 && !(score_mods && head_dim <= 64);
}

template <int BlockN, bool kBlockMasks>
__device__ __forceinline__ KeyTiles key_tiles(const FusedAttentionProblem& p, const Segment& seg, int i0, int i1) {
  KeyTiles t;
  t.range = visible_keys(p, seg, i0, i1);
  t.all_keys = kBlockMasks && p.block_mask != nullptr;
  t.sink_tiles = t.all_keys ? 0 : (t.range.sink_end + BlockN - 1) / BlockN;
  t.total = t.all_keys ? (seg.k_len + BlockN - 1) / BlockN
                       : t.sink_tiles + (t.range.main_end - t.range.main_begin + BlockN - 1) / BlockN;
  return t;
}

// Key range [j0, j_end) of tile t: sink tiles stop at sink_end so no key is visited twice.
template <int BlockN>
__device__ __forceinline__ void tile_keys(const KeyTiles& t, const Segment& seg, int index, int* j0, int* j_end) {
  if (t.all_keys) {
    *j0 = index * BlockN;
    *j_end = min(*j0 + BlockN, seg.k_len);
  } else if (index < t.sink_tiles) {
    *j0 = index * BlockN;
    *j_end = min(*j0 + BlockN, t.range.sink_end);
  } else {
    *j0 = t.range.main_begin + (index - t.sink_tiles) * BlockN;
    *j_end = min(*j0 + BlockN, t.range.main_end);
  }
}

// The block mask's states under rows [i0, i1) x tile `index`.
template <int BlockN>
__device__ __forceinline__ int tile_states(const FusedAttentionProblem& p, const Segment& seg, int h, int i0, int i1,
                                           const KeyTiles& t, int index) {
  int j0, j_end;
  tile_keys<BlockN>(t, seg, index, &j0, &j_end);
  return covered_block_states(p, seg, h, i0, i1, j0, j_end);
}

// The tiles a work item visits, in order, with their block states. Without a block mask: every
// tile, all "partial" (the options decide). With one, a whole warp walks them 32 at a time, each
// lane classifying one tile and ballots collecting the chunk, so a sparse row costs one round of
// mask reads per 32 tiles instead of one dependent read per tile (every lane of the warp must call
// next() together). A tile is visited when a block under it is full, or partial where the options
// leave keys in the tile. (Four tiles a lane, to have a row of 16k keys in one round, spilled
// 400 bytes in the 24-register producer.)
struct TileCursor {
  int base;       // first tile of the current chunk (with a mask), or the next tile (without)
  unsigned live;  // the chunk's visited tiles, one bit each, not yet taken
};

__device__ __forceinline__ TileCursor start_tiles(const KeyTiles& t) { return TileCursor{t.all_keys ? -32 : 0, 0u}; }

// A block-masked tile as the producer hands it to the consumers: its index, block states and
// whether it is its item's last.
__device__ __forceinline__ int encode_tile_word(int t, int states, bool last) { return t << 4 | int(last) << 3 | states; }

// chunk_states: 32 bytes of shared memory where the lanes leave their tiles' states (registers
// are scarce in the producer warp: three more ballot words spilled).
template <int BlockN>
__device__ __forceinline__ int next_tile(TileCursor& c, const FusedAttentionProblem& p, const Segment& seg, int h, int i0,
                                         int i1, const KeyTiles& t, uint8_t* chunk_states, int* states) {
  if (!t.all_keys) {
    *states = kSomePartial;
    return c.base++;
  }
  while (c.live == 0) {
    c.base += 32;
    if (c.base >= t.total) return t.total;
    const int index = c.base + int(threadIdx.x % 32);
    int st = 0;
    bool live = false;
    if (index < t.total) {
      st = tile_states<BlockN>(p, seg, h, i0, i1, t, index);
      int j0, j_end;
      tile_keys<BlockN>(t, seg, index, &j0, &j_end);
      live = (st & kSomeFull) ||
             ((st & kSomePartial) && (j0 < t.range.sink_end || (j_end > t.range.main_begin && j0 < t.range.main_end)));
    }
    __syncwarp();  // every lane has read the last chunk's states
    chunk_states[threadIdx.x % 32] = uint8_t(st);
    __syncwarp();  // the stores above before any lane's read below
    c.live = __ballot_sync(0xffffffffu, live);
  }
  const int k = __ffs(c.live) - 1;
  c.live &= c.live - 1;
  *states = chunk_states[k];
  return c.base + k;
}

// One CTA's unit of work: kBlockM query rows of one head of one batch entry / segment.
// Items are numbered with the query block fastest, so the CTAs running at one time mostly share
// a head's K and V in L2. Causal items are pairs of blocks, the heavy (late) block m and the
// light block QB-1-m of one head: every pair costs the same QB+1 key tiles, so a persistent grid
// that deals items round-robin stays balanced (the pairing FlashAttention-2 used for causal).
struct WorkItem {
  Segment seg;
  int h, i0, i1;
  bool empty;  // nothing to do: past the end of a shorter varlen segment, or the odd middle block
};

__host__ __device__ __forceinline__ int blocks_per_item(const FusedAttentionProblem& p) { return p.causal ? 2 : 1; }

// A CTA's blocks, numbered item * parts + part: the parts of its item, then the next item of
// its round-robin share (blockIdx.x, blockIdx.x + gridDim.x, ...).
__device__ __forceinline__ int next_block(int b, int parts) {
  return b % parts == parts - 1 ? b + (gridDim.x - 1) * parts + 1 : b + 1;
}

template <int BlockM>
__device__ __forceinline__ WorkItem work_item(const FusedAttentionProblem& p, int w, int part, int query_blocks) {
  WorkItem it;
  const int per_head = p.causal ? (query_blocks + 1) / 2 : query_blocks;
  const int qb = w % per_head;
  const int rest = w / per_head;
  it.h = rest % p.heads_q;
  it.seg = segment_of(p, rest / p.heads_q);
  const int m_block = !p.causal ? qb : part == 0 ? query_blocks - 1 - qb : qb;
  if (p.causal) {
    // Blocks aligned to the segment's end: a partial block is then the first (under a causal
    // mask the cheapest), not the last (the heaviest, which would cost a full row of key tiles
    // for a few rows). A partial block still loads BlockM Q rows from i0: those past i1 are the
    // next block's, computed here and never stored.
    it.i1 = it.seg.q_len - (query_blocks - 1 - m_block) * BlockM;
    it.i0 = max(it.i1 - BlockM, 0);
  } else {
    it.i0 = m_block * BlockM;
    it.i1 = min(it.i0 + BlockM, it.seg.q_len);
  }
  it.empty = it.i1 <= it.i0 || (part == 1 && qb == query_blocks - 1 - qb);
  return it;
}

// Each CTA walks work items blockIdx.x, blockIdx.x + gridDim.x, ...; the producer runs ahead into
// the next item (its Q as soon as the consumers release Q, its K/V as soon as a
// stage frees) while the consumers finish the previous item's epilogue.
// kScoreMods: softcap, bias, ALiBi or a mask tensor present: every score goes through
// modified_score(). Otherwise only tiles that are not fully visible get a per-element test.
// kBlockSparse: a block mask is present (its own instantiation: the tile walk and per-tile states
// cost the dense kernels registers, 8% at D64).
template <int HeadDim, int BlockN, bool BF16, bool kScoreMods, bool kBlockSparse>
__global__ void __launch_bounds__(Sm90Tile<HeadDim, BlockN>::kThreads, 1)
    fused_attention_sm90_kernel(const __grid_constant__ Sm90TensorMaps maps, const FusedAttentionProblem p,
                                int query_blocks, int items) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using T = Sm90Tile<HeadDim, BlockN>;
  constexpr int kBlockM = T::kBlockM, kBlockN = T::kBlockN, kStages = T::kStages;
  constexpr bool kBlockMasks = kBlockSparse && sm90_block_masks(HeadDim, BlockN, kScoreMods);

  extern __shared__ uint8_t smem_raw[];
  // TMA's 128-byte swizzle and the wgmma descriptors assume 1024-byte aligned tiles.
  uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint8_t* sQ = smem;
  uint8_t* sK = sQ + T::kQBytes;
  uint8_t* sV = sK + kStages * T::kKVBytes;
  uint64_t* q_full = reinterpret_cast<uint64_t*>(sV + kStages * T::kKVBytes);
  uint64_t* q_empty = q_full + 1;
  uint64_t* k_full = q_empty + 1;
  uint64_t* v_full = k_full + kStages;
  uint64_t* k_empty = v_full + kStages;  // K consumed (kSplitRelease only)
  uint64_t* v_empty = k_empty + kStages;  // V consumed; without kSplitRelease, the whole stage
  // With a block mask the producer walks the mask alone and hands each stage's tile to the
  // consumers: tile_ready[s] completes when tile_word[s] holds it (before its K lands, so the
  // consumers' row masks load under the K wait). Its items it deals itself from
  // p.work_counter: item_word names the block whose Q is loading (-1: no more), row_word says
  // whether it has any tile. Both are read once q_full completes.
  uint64_t* tile_ready = v_empty + kStages;
  int* tile_word = reinterpret_cast<int*>(tile_ready + kStages);
  int* row_word = tile_word + kStages;
  int* item_word = row_word + 1;
  uint8_t* chunk_states = reinterpret_cast<uint8_t*>(item_word + 1);  // the producer warp's (next_tile)

  if (threadIdx.x == 0) {
    mbarrier_init(q_full, 1);
    mbarrier_init(q_empty, T::kConsumerThreads);
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(&k_full[s], 1);
      mbarrier_init(&v_full[s], 1);
      mbarrier_init(&k_empty[s], T::kConsumerThreads);
      mbarrier_init(&v_empty[s], T::kConsumerThreads);
      mbarrier_init(&tile_ready[s], 1);
    }
    fence_barrier_init();
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  const int parts = blocks_per_item(p);
  if (warpgroup == 0) {
    // ---------------- producer ----------------
    warpgroup_registers_release<T::kProducerRegisters>();
    // Thread 0 issues every TMA load; with a block mask its whole warp walks the tiles with it
    // (TileCursor), without one it runs alone (a warp of waiters measured 2-4% slower at S4096).
    if (threadIdx.x < (kBlockMasks ? 32 : 1)) {
      const bool leader = threadIdx.x == 0;
      if (leader) {
        prefetch_tensor_map(&maps.q);
        prefetch_tensor_map(&maps.k);
        prefetch_tensor_map(&maps.v);
      }
      int tile_count = 0, item_count = 0;  // across items: they pick stages and barrier phases
      // The first block of the next item dealt to this CTA (with a block mask: in the order CTAs
      // ask, so one that drew cheap rows draws more).
      auto deal = [&]() -> int {
        int w = 0;
        if (leader) w = atomicAdd(p.work_counter, 1);
        return __shfl_sync(0xffffffffu, w, 0) * parts;
      };
      auto next_block_of_cta = [&](int b) {
        return !kBlockMasks ? next_block(b, parts) : b % parts != parts - 1 ? b + 1 : deal();
      };
      for (int b = kBlockMasks ? deal() : blockIdx.x * parts; b < items * parts; b = next_block_of_cta(b)) {
        const WorkItem it = work_item<kBlockM>(p, b / parts, b % parts, query_blocks);
        if (it.empty) continue;
        const KeyTiles tiles = key_tiles<kBlockN, kBlockMasks>(p, it.seg, it.i0, it.i1);
        const int h_kv = it.h / p.group;
        TileCursor cursor = start_tiles(tiles);
        int states;
        auto next = [&] { return next_tile<kBlockN>(cursor, p, it.seg, it.h, it.i0, it.i1, tiles, chunk_states, &states); };
        // One tile ahead: a tile's hand-over word says whether it is the item's last.
        int t = next(), t_states = states;
        // This item's Q, once the consumers are done with the last one's (after its last Q K^T).
        // Issued after the item's first K and V, so that those do not wait for the consumers:
        // on the short rows of a block mask the next row's first tile then lands while the last
        // one still finishes.
        auto load_q = [&] {
          if (item_count > 0) mbarrier_wait(q_empty, (item_count - 1) & 1);
          ++item_count;
          if (leader) {
            // Read by the consumers after q_full completes (this arrive releases the store).
            if (kBlockMasks) {
              *item_word = b;
              *row_word = t < tiles.total;
            }
            mbarrier_arrive_expect_tx(q_full, T::kQBytes);
            for (int c = 0; c < T::kColumnBlocks; ++c)
              tma_load_4d(sQ + c * kBlockM * 128, &maps.q, q_full, c * 64, it.seg.q_start + it.i0, it.h, it.seg.batch);
          }
        };
        if (t >= tiles.total) load_q();
        for (bool first = true; t < tiles.total; ++tile_count, first = false) {
          const int t_next = next(), next_states = states;
          const int stage = tile_count % kStages;
          const uint32_t empty_phase = ((tile_count / kStages) - 1) & 1;
          int j0, j_end;
          tile_keys<kBlockN>(tiles, it.seg, t, &j0, &j_end);
          uint8_t* k_dst = sK + stage * T::kKVBytes;
          uint8_t* v_dst = sV + stage * T::kKVBytes;
          if (tile_count >= kStages) mbarrier_wait(T::kSplitRelease ? &k_empty[stage] : &v_empty[stage], empty_phase);
          if (leader) {
            if (kBlockMasks) {
              // (the consumers read a stage's word before they release its K: the slot is free here)
              tile_word[stage] = encode_tile_word(t, t_states, t_next >= tiles.total);
              mbarrier_arrive(&tile_ready[stage]);
            }
            mbarrier_arrive_expect_tx(&k_full[stage], T::kKVBytes);
            for (int c = 0; c < T::kColumnBlocks; ++c)
              tma_load_4d(k_dst + c * kBlockN * 128, &maps.k, &k_full[stage], c * 64, it.seg.k_start + j0, h_kv, it.seg.batch);
          }
          if (T::kSplitRelease && tile_count >= kStages) mbarrier_wait(&v_empty[stage], empty_phase);
          if (leader) {
            mbarrier_arrive_expect_tx(&v_full[stage], T::kKVBytes);
            for (int c = 0; c < T::kColumnBlocks; ++c)
              tma_load_4d(v_dst + c * kBlockN * 128, &maps.v, &v_full[stage], c * 64, it.seg.k_start + j0, h_kv, it.seg.batch);
          }
          if (first) load_q();
          t = t_next;
          t_states = next_states;
        }
      }
      if (kBlockMasks) {
        // No more items: once the last one's Q is released, an empty hand-over ends the consumers.
        if (item_count > 0) mbarrier_wait(q_empty, (item_count - 1) & 1);
        if (leader) {
          *item_word = -1;
          mbarrier_arrive(q_full);
        }
      }
    }
    return;
  }

  // ---------------- consumers ----------------
  // For head dims above 64, a software pipeline across key tiles (FlashAttention-3's
  // intra-warpgroup overlap): S(t) = Q K(t)^T and O += P(t-1) V(t-1) are issued together, and
  // the softmax of S(t) runs on the CUDA cores while the tensor cores still do P(t-1) V(t-1).
  // At head dim 64 the plain order measured as fast or faster (bench/NOTES.md): there the
  // consumer warpgroups already cover each other's softmax.
  constexpr bool kOverlapSoftmax = T::kOverlapSoftmax;
  warpgroup_registers_claim<T::kConsumerRegisters>();
  const int consumer = warpgroup - 1;  // rows [consumer * 64, +64) of the CTA
  const int tid = threadIdx.x % 128;
  const int warp = tid / 32, lane = tid % 32;
  // This thread's two rows (CTA-local) in the wgmma accumulator layout, and its first column.
  const int row_a = consumer * 64 + warp * 16 + lane / 4;
  const int rows[2] = {row_a, row_a + 8};
  const int col_in_block = 2 * (lane % 4);

  constexpr float kLog2e = 1.4426950408889634f;
  constexpr float kLn2 = 0.6931471805599453f;
  const float neg_inf = -__int_as_float(0x7f800000);
  const float score_to_log2 = kScoreMods ? kLog2e : p.scale * kLog2e;
  const uint32_t q_addr = smem_address(sQ) + consumer * 64 * 128;

  float o[HeadDim / 2];
  float s[kBlockN / 2];          // S(t), then P(t) in float
  uint32_t pa[kBlockN / 16][4];  // P as 16-bit wgmma A fragments

  // S = Q K^T for the tile in `stage` (64 x kBlockN per consumer), issued, not waited for.
  auto issue_qk = [&](int stage) {
    const uint32_t k_addr = smem_address(sK + stage * T::kKVBytes);
#pragma unroll
    for (int kk = 0; kk < HeadDim / 16; ++kk) {
      const uint32_t column = (kk % 4) * 32;  // 16 columns = 32 bytes into the swizzled row
      const uint64_t dq = smem_descriptor_sw128(q_addr + (kk / 4) * kBlockM * 128 + column, 16);
      const uint64_t dk = smem_descriptor_sw128(k_addr + (kk / 4) * kBlockN * 128 + column, 16);
      Wgmma<kBlockN, BF16>::ss(s, dq, dk, kk > 0);
    }
    wgmma_commit();
  };
  // O += P V for the tile in `stage`, issued, not waited for.
  auto issue_pv = [&](int stage) {
    const uint32_t v_addr = smem_address(sV + stage * T::kKVBytes);
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {
      const uint64_t dv = smem_descriptor_sw128(v_addr + kk * 16 * 128, kBlockN * 128);
      Wgmma<HeadDim, BF16>::rs(o, pa[kk], dv, 1);
    }
    wgmma_commit();
  };
  auto rescale_output = [&](const float (&correction)[2]) {
#pragma unroll
    for (int nb = 0; nb < HeadDim / 8; ++nb) {
      o[nb * 4 + 0] *= correction[0];
      o[nb * 4 + 1] *= correction[0];
      o[nb * 4 + 2] *= correction[1];
      o[nb * 4 + 3] *= correction[1];
    }
  };
  // P in the register-A layout of m64k16: the accumulator of columns [16kk, 16kk+16).
  auto convert_p = [&]() {
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk)
#pragma unroll
      for (int r = 0; r < 4; ++r) pa[kk][r] = pack_16bit_pair<BF16>(s[kk * 8 + 2 * r], s[kk * 8 + 2 * r + 1]);
  };

  int tile_count = 0, item_count = 0;
  // The producer's order: round-robin, or with a block mask the blocks it was dealt (never an
  // empty one), from the item hand-over.
  for (int b = kBlockMasks ? 0 : blockIdx.x * parts; kBlockMasks || b < items * parts; b = next_block(b, parts)) {
    if (kBlockMasks) {
      mbarrier_wait(q_full, item_count & 1);
      b = int(__reduce_or_sync(0xffffffffu, unsigned(*reinterpret_cast<volatile int*>(item_word))));  // (uniform: see take_tile)
      if (b < 0) break;
    }
    const WorkItem it = work_item<kBlockM>(p, b / parts, b % parts, query_blocks);
    if (it.empty) continue;
    if (!kBlockMasks) mbarrier_wait(q_full, item_count & 1);
    ++item_count;
    const Segment& seg = it.seg;
    const int h = it.h, i0 = it.i0, i1 = it.i1;
    const KeyTiles tiles = key_tiles<kBlockN, kBlockMasks>(p, seg, i0, i1);

#pragma unroll
    for (int i = 0; i < HeadDim / 2; ++i) o[i] = 0.0f;
    float row_max[2] = {neg_inf, neg_inf};  // log2 units
    float row_sum[2] = {0.0f, 0.0f};        // this thread's partial sums

    // Score modifiers and masks of tile t, then the online-softmax update: s becomes P (float),
    // correction[r] the factor the running output of row r must be scaled by.
    // states: the block mask's states under the tile (next_tile's); full blocks skip the option
    // tests, partial ones take them as usual.
    // Per-row masks of a block mask's tile (kBlockMasks): when key blocks line up with the tiles
    // (block_k == kBlockN, aligned), each row of a tile lies in one block, so a tile whose rows
    // straddle blocks of different states (query blocks that do not match kBlockM) or whose
    // partial blocks carry element bitmaps is masked row by row: per row its block's state and
    // bitmap words, read when the tile is picked (load_row_masks), so their latency hides behind
    // the K wait and Q K^T. Other layouts take the per-element path.
    const bool rows_by_block = kBlockN == 128 && p.block_k == kBlockN && seg.k_start % kBlockN == 0;
    const bool bits_aligned = (reinterpret_cast<uintptr_t>(p.element_bits) & 15) == 0;
    auto mixed_states = [](int states) { return (states & kSomeSkipped) || ((states & kSomeFull) && (states & kSomePartial)); };
    // w[r]: row r's bitmap words over tile t (bit c % 32 of word c / 32: column c): all ones
    // without a bitmap, all zeros in a skipped block. Left as loaded: the first use waits for the
    // load, so softmax_tile shifts them, after Q K^T. row_full[r]: the row's block is full (no
    // option test).
    auto load_row_masks = [&](int t, int states, uint32_t (&w)[2][4], bool (&row_full)[2]) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        w[r][0] = w[r][1] = w[r][2] = w[r][3] = ~0u;
        row_full[r] = states == kSomeFull;
      }
      if (!kBlockMasks || kBlockN != 128 || !rows_by_block) return;
      const bool mixed = mixed_states(states);
      const bool bits = p.element_bits != nullptr && (states & kSomePartial) && bits_aligned;
      if (!mixed && !bits) return;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int i = i0 + rows[r];
        if (i >= seg.q_len) continue;  // rows past the segment: computed, never stored, no mask read
        const uint8_t st = mixed ? block_state(p, seg, h, i, t * kBlockN) : uint8_t(1);
        if (st == kBlockSkip) {
          w[r][0] = w[r][1] = w[r][2] = w[r][3] = 0u;
        } else if (st == kBlockFull) {
          row_full[r] = true;
        } else if (bits) {
          row_full[r] = false;
          bool hidden;
          const uint32_t* row_bits = element_row_bits(p, seg, h, i, t * kBlockN, &hidden);
          if (row_bits) {
            const uint4 v = *reinterpret_cast<const uint4*>(row_bits);
            w[r][0] = v.x, w[r][1] = v.y, w[r][2] = v.z, w[r][3] = v.w;
          } else if (hidden) {
            w[r][0] = w[r][1] = w[r][2] = w[r][3] = 0u;
          }
        } else {
          row_full[r] = false;
        }
      }
    };

    auto softmax_tile = [&](int t, int states, float (&correction)[2], const uint32_t (&w)[2][4], const bool (&row_full)[2]) {
      int j0, j_end;
      tile_keys<kBlockN>(tiles, seg, t, &j0, &j_end);
      const bool bits = kBlockMasks && p.element_bits != nullptr && (states & kSomePartial);
      const bool by_row = kBlockMasks && kBlockN == 128 && rows_by_block && (!bits || bits_aligned);
      const bool full_tile = j_end - j0 == kBlockN && !bits &&
                             (states == kSomeFull || (states == kSomePartial && tile_fully_visible(p, seg, i0, i1, j0, j_end)));
      if (kScoreMods) {
        const BlockRule blocks = !kBlockMasks || states == kSomePartial ? kPartialBlocks
                                 : states == kSomeFull                 ? kFullBlocks
                                                                       : kLookUpBlock;
#pragma unroll
        for (int nb = 0; nb < kBlockN / 8; ++nb)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int i = i0 + rows[e / 2];
            const int j = j0 + nb * 8 + col_in_block + (e % 2);
            float& x = s[nb * 4 + e];
            // rows past the segment read no bias / mask memory
            x = j < j_end && i < seg.q_len ? modified_score(p, seg, h, i, j, x * p.scale, blocks) : neg_inf;
          }
      } else if (!full_tile && (mixed_states(states) || bits) && !by_row) {
        // A block mask's mixed tile (block edges inside it): each element by its block's state.
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int i = i0 + rows[r];
          const RowKeys keys = row_visible_keys(p, seg, i);
#pragma unroll
          for (int nb = 0; nb < kBlockN / 8; ++nb)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int j = j0 + col_in_block + nb * 8 + e;
              bool visible = false;
              if (i < seg.q_len && j < j_end) {  // rows past the segment read no mask memory
                const uint8_t st = block_state(p, seg, h, i, j);
                visible = st == kBlockFull || (st != kBlockSkip && (j < keys.sink_end || (j >= keys.begin && j < keys.end)) &&
                                               element_kept(p, seg, h, i, j));
              }
              if (!visible) s[nb * 4 + 2 * r + e] = neg_inf;
            }
        }
      } else if (!full_tile) {
        // Per row, the visible keys as bounds on this thread's column offset c = nb * 8 + e
        // (a compile-time constant per element): key j0 + col_in_block + c is visible iff
        // c < sink_hi || lo <= c < hi. Keys past j_end (tile padding) never are. A tile of a
        // mask's full blocks only masks the padding.
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const RowKeys keys = row_full[r] ? RowKeys{0, 0, seg.k_len} : row_visible_keys(p, seg, i0 + rows[r]);
          const int base = j0 + col_in_block;
          const int sink_hi = min(keys.sink_end, j_end) - base, lo = keys.begin - base, hi = min(keys.end, j_end) - base;
          // this thread's columns: c = nb * 8 + e is bit (nb % 4) * 8 + e of word nb / 4 (a
          // compile-time position); the shift keeps bits 0..25 of an all-ones word set
          const uint32_t ws[4] = {w[r][0] >> col_in_block, w[r][1] >> col_in_block, w[r][2] >> col_in_block, w[r][3] >> col_in_block};
#pragma unroll
          for (int nb = 0; nb < kBlockN / 8; ++nb)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const int c = nb * 8 + e;
              const bool kept = kBlockN != 128 || ((ws[(nb / 4) % 4] >> ((nb % 4) * 8 + e)) & 1u);
              if (!(c < sink_hi || (c >= lo && c < hi)) || !kept) s[nb * 4 + 2 * r + e] = neg_inf;
            }
        }
      }
      // The 4 threads of a quad share a row.
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = neg_inf;
#pragma unroll
        for (int nb = 0; nb < kBlockN / 8; ++nb) mx = fmaxf(mx, fmaxf(s[nb * 4 + 2 * r], s[nb * 4 + 2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
        const float m_new = fmaxf(row_max[r], mx * score_to_log2);
        // A row that has seen nothing keeps m = -inf; subtract 0 instead so exp2 gives 0, not NaN.
        const float m_use = m_new == neg_inf ? 0.0f : m_new;
        correction[r] = fast_exp2(row_max[r] - m_use);
        row_max[r] = m_new;
        float sum = 0.0f;
#pragma unroll
        for (int nb = 0; nb < kBlockN / 8; ++nb)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float& x = s[nb * 4 + 2 * r + e];
            x = fast_exp2(fmaf(x, score_to_log2, -m_use));
            sum += x;
          }
        row_sum[r] = row_sum[r] * correction[r] + sum;
      }
    };

    // The visited tiles in order; n counts them, and tile_count + n picks the stage and phase,
    // exactly as the producer counted. Without a block mask every tile (the options decide);
    // with one, the tiles the producer found, from the stage's hand-over word.
    int n = 0;
    int states = kSomePartial;
    bool last = false;
    auto take_tile = [&](int k) -> int {  // the item's k-th tile (k == n)
      if constexpr (kBlockMasks) {
        const int c = tile_count + k;
        mbarrier_wait(&tile_ready[c % kStages], (c / kStages) & 1);
        // Reduced over the warp although every lane reads the same word: ptxas then knows it is
        // warp-uniform. A plain load left the loop's exit "divergent" to it, and it serialized
        // every wgmma (warning C7520; 37% slower).
        const int word = int(__reduce_or_sync(0xffffffffu, unsigned(*reinterpret_cast<volatile int*>(&tile_word[c % kStages]))));
        states = word & 7;
        last = (word >> 3) & 1;
        return word >> 4;
      } else {
        return k;
      }
    };
    // (without a mask `last` is not kept: the count decides, as the dense kernels always did)
    auto more_tiles = [&](int count) { return kBlockMasks ? !last : count < tiles.total; };
    const bool any_tile =
        kBlockMasks ? __reduce_or_sync(0xffffffffu, unsigned(*reinterpret_cast<volatile int*>(row_word))) != 0 : tiles.total > 0;
    if (any_tile) {
      const int first_tile = take_tile(0);
      float correction[2];
      if (kOverlapSoftmax) {
        // prologue: the first tile alone
        const int first = tile_count % kStages;
        uint32_t w[2][4];
        bool row_full[2];
        load_row_masks(first_tile, states, w, row_full);
        mbarrier_wait(&k_full[first], (tile_count / kStages) & 1);
        wgmma_fence();
        issue_qk(first);
        wgmma_wait<0>();
        fence_registers(s);
        mbarrier_arrive(&k_empty[first]);
        if (!more_tiles(1)) mbarrier_arrive(q_empty);  // the item's last read of Q is done
        softmax_tile(first_tile, states, correction, w, row_full);
        convert_p();
        for (n = 1; more_tiles(n); ++n) {
          const int t = take_tile(n);
          const int c = tile_count + n;
          const int stage = c % kStages, prev = (c - 1) % kStages;
          load_row_masks(t, states, w, row_full);
          mbarrier_wait(&k_full[stage], (c / kStages) & 1);
          wgmma_fence();
          issue_qk(stage);
          mbarrier_wait(&v_full[prev], ((c - 1) / kStages) & 1);
          issue_pv(prev);
          wgmma_wait<1>();  // S(t) is in; O += P(t-1) V(t-1) may still run
          fence_registers(s);
          mbarrier_arrive(&k_empty[stage]);
          if (!more_tiles(n + 1)) mbarrier_arrive(q_empty);
          softmax_tile(t, states, correction, w, row_full);
          wgmma_wait<0>();
          fence_registers(o);
          mbarrier_arrive(&v_empty[prev]);
          rescale_output(correction);
          convert_p();
        }
        const int c = tile_count + n - 1;
        const int last_stage = c % kStages;
        mbarrier_wait(&v_full[last_stage], (c / kStages) & 1);
        wgmma_fence();
        issue_pv(last_stage);
        wgmma_wait<0>();
        fence_registers(o);
        mbarrier_arrive(&v_empty[last_stage]);
      } else {
        for (int t = first_tile;; t = take_tile(n)) {
          const int c = tile_count + n;
          const int stage = c % kStages;
          const uint32_t phase = (c / kStages) & 1;
          uint32_t w[2][4];
          bool row_full[2];
          load_row_masks(t, states, w, row_full);
          mbarrier_wait(&k_full[stage], phase);
          wgmma_fence();
          issue_qk(stage);
          wgmma_wait<0>();
          fence_registers(s);
          if (!more_tiles(n + 1)) mbarrier_arrive(q_empty);
          softmax_tile(t, states, correction, w, row_full);
          rescale_output(correction);
          convert_p();
          mbarrier_wait(&v_full[stage], phase);
          wgmma_fence();
          issue_pv(stage);
          wgmma_wait<0>();
          fence_registers(o);
          mbarrier_arrive(&v_empty[stage]);
          ++n;
          if (!more_tiles(n)) break;
        }
      }
    }
    tile_count += n;
    // With tiles, Q was released after the last Q K^T, so that the producer loads the next item's
    // under this one's last P V and epilogue.
    if (!any_tile) mbarrier_arrive(q_empty);

    // Epilogue: full row sums, sink logit, normalisation, lse, stores.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = row_sum[r];
      l += __shfl_xor_sync(0xffffffff, l, 1);
      l += __shfl_xor_sync(0xffffffff, l, 2);
      const int i = i0 + rows[r];
      float factor, lse;
      finish_row(p, h, row_max[r] == neg_inf ? neg_inf : row_max[r] * kLn2, l, &factor, &lse);
      if (i < i1) {  // rows past the block (the end of the segment, or the next block's) are not stored
        const int64_t row = seg.q_start + i;
        if (p.lse && lane % 4 == 0) p.lse[(int64_t(seg.batch) * p.heads_q + h) * p.seq_q + row] = lse;
        char* out_row = static_cast<char*>(p.out) + (seg.batch * p.o_stride[0] + h * p.o_stride[1] + row * p.o_stride[2]) *
                                                        (p.out_dtype == kF32 ? 4 : 2);
#pragma unroll
        for (int nb = 0; nb < HeadDim / 8; ++nb)
          store_output_pair(p, out_row, nb * 8 + col_in_block, o[nb * 4 + 2 * r] * factor, o[nb * 4 + 2 * r + 1] * factor);
      }
    }
  }
#endif
}

// ---- host side ----

PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* sym = nullptr;
    cudaDriverEntryPointQueryResult found;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &sym, 12000, cudaEnableDefault, &found) ==
            cudaSuccess &&
        found == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(sym);
  });
  return fn;
}

// A 4-d map (d, s, h, b) over a q/k/v view, boxes of 64 columns x `rows` rows, 128-byte swizzle.
bool encode_tensor_map(CUtensorMap* map, const void* base, const int64_t stride[4], int64_t b, int64_t h, int64_t s,
                       int64_t d, int rows, bool bf16) {
  auto encode = tensor_map_encoder();
  if (!encode) return false;
  const cuuint64_t dims[4] = {cuuint64_t(d), cuuint64_t(s), cuuint64_t(h), cuuint64_t(b)};
  const cuuint64_t strides[3] = {cuuint64_t(stride[2] * 2), cuuint64_t(stride[1] * 2), cuuint64_t(stride[0] * 2)};
  const cuuint32_t box[4] = {64, cuuint32_t(rows), 1, 1};
  const cuuint32_t element_strides[4] = {1, 1, 1, 1};
  return encode(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4, const_cast<void*>(base),
                dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// TMA's rules for a view: 16-byte aligned base, unit d-stride, other strides multiples of 16
// bytes (and positive: broadcast views with stride 0 go to the other kernels).
bool tma_compatible(const void* base, const int64_t stride[4]) {
  if (reinterpret_cast<uintptr_t>(base) % 16 != 0 || stride[3] != 1) return false;
  for (int i = 0; i < 3; ++i)
    if (stride[i] <= 0 || (stride[i] * 2) % 16 != 0 || stride[i] * 2 >= (int64_t(1) << 40)) return false;
  return true;
}

template <int HeadDim, int BlockN, bool BF16, bool kScoreMods, bool kBlockSparse = false>
cudaError_t launch_sm90(const FusedAttentionProblem& p, const DeviceTraits& dev, const Sm90TensorMaps& maps,
                        cudaStream_t stream) {
  using T = Sm90Tile<HeadDim, BlockN>;
  auto kernel = fused_attention_sm90_kernel<HeadDim, BlockN, BF16, kScoreMods, kBlockSparse>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, T::kSmemBytes);
  if (err != cudaSuccess) return err;
  const int rows = p.cu_seqlens_q ? p.max_seqlen_q : p.seq_q;  // varlen: the longest segment
  const int query_blocks = (rows + T::kBlockM - 1) / T::kBlockM;
  const int segments = p.cu_seqlens_q ? p.num_segments : p.batch;
  const int64_t per_head = p.causal ? (query_blocks + 1) / 2 : query_blocks;
  const int64_t items = per_head * p.heads_q * segments;
  if (items == 0) return cudaSuccess;
  if (items * 2 >= (int64_t(1) << 31)) return cudaErrorNotSupported;
  // Persistent (one CTA per SM dealing itself items round-robin, its producer loading the next
  // block's Q and K/V while the consumers finish the last block's epilogue) pays off while blocks
  // are short; on long rows the hidden prologue is a smaller share than the round-robin's tail,
  // and one CTA per item measured faster (bench/NOTES.md: S4096 +3-5%, S16384 causal -3%).
  const int key_rows = p.cu_seqlens_k ? p.max_seqlen_k : p.seq_k;
  // A block mask's rows visit only their computed tiles: short rows again, persistent pays.
  const bool persistent = ATTNKIT_SM90_PERSISTENT && (key_rows <= 8192 || p.block_mask);
  const int64_t sms = dev.multiprocessors > 0 ? dev.multiprocessors : 132;
  const int ctas = static_cast<int>(persistent ? std::min<int64_t>(items, sms) : items);
  kernel<<<ctas, T::kThreads, T::kSmemBytes, stream>>>(maps, p, query_blocks, static_cast<int>(items));
  return cudaGetLastError();
}

template <int HeadDim, int BlockN, bool BF16>
cudaError_t launch_sm90_mods(const FusedAttentionProblem& p, const DeviceTraits& dev, const Sm90TensorMaps& maps,
                             cudaStream_t stream) {
  const bool mods = p.softcap > 0.0f || p.bias || p.alibi_slopes || p.mask;
  if (p.block_mask) {  // (fused_attention_sm90_supports sent D64 with score modifiers elsewhere)
    if (mods && sm90_block_masks(HeadDim, BlockN, true)) return launch_sm90<HeadDim, BlockN, BF16, true, true>(p, dev, maps, stream);
    if (!mods) return launch_sm90<HeadDim, BlockN, BF16, false, true>(p, dev, maps, stream);
    return cudaErrorNotSupported;
  }
  return mods ? launch_sm90<HeadDim, BlockN, BF16, true>(p, dev, maps, stream)
              : launch_sm90<HeadDim, BlockN, BF16, false>(p, dev, maps, stream);
}

// Keys per tile: 176 for dense D128 (FlashAttention-3's choice: fewer tiles, each softmax pass
// and barrier round trip amortised over more keys, and it still fits 240 registers), 128 where
// masks cut tiles (causal, window), with score modifiers (their state would spill) or at D64.
int sm90_key_tile(const FusedAttentionProblem& p) {
  const bool mods = p.softcap > 0.0f || p.bias || p.alibi_slopes || p.mask;  // 176 + their state spills
  // 176 does not divide the usual lengths: only when the last tile's padding stays under 2% of
  // the keys (S4096: 3.1%, measured 2.5% slower than 128; S16384: 1.0%, measured 3% faster).
  const int64_t keys = p.cu_seqlens_k ? p.max_seqlen_k : p.seq_k;
  const bool little_padding = (keys + 175) / 176 * 176 * 50 <= keys * 51;
  return ATTNKIT_SM90_WIDE_N && p.head_dim == 128 && !p.causal && !has_window(p) && !mods && !p.block_mask && little_padding
             ? 176
             : 128;
}

}  // namespace

bool fused_attention_sm90_supports(const FusedAttentionProblem& p, const DeviceTraits& dev) {
  const bool mods = p.softcap > 0.0f || p.bias || p.alibi_slopes || p.mask;
  if (p.block_mask && (!sm90_block_masks(p.head_dim, 128, mods) || !p.work_counter)) return false;
  if (dev.cc_major != 9 || dev.cc_minor != 0) return false;  // sm_90a code runs on sm_90 only
  if (p.dtype != kF16 && p.dtype != kBF16) return false;
  if (p.head_dim != p.head_dim_v || (p.head_dim != 64 && p.head_dim != 128)) return false;
  if (!tma_compatible(p.q, p.q_stride) || !tma_compatible(p.k, p.k_stride) || !tma_compatible(p.v, p.v_stride))
    return false;
  // Output pairs are stored as one 4- or 8-byte word.
  const int64_t pair_bytes = p.out_dtype == kF32 ? 8 : 4;
  if (p.o_stride[3] != 1 || reinterpret_cast<uintptr_t>(p.out) % pair_bytes != 0) return false;
  for (int i = 0; i < 3; ++i)
    if (p.o_stride[i] % 2 != 0) return false;
  if (p.seq_q >= (1 << 30) || p.seq_k >= (1 << 30)) return false;
  return tensor_map_encoder() != nullptr;
}

cudaError_t launch_fused_attention_sm90(const FusedAttentionProblem& p, const DeviceTraits& dev, cudaStream_t stream) {
  const bool bf16 = p.dtype == kBF16;
  Sm90TensorMaps maps;
  std::memset(&maps, 0, sizeof(maps));
  const int key_tile = sm90_key_tile(p);
  const int block_m = 64 * sm90_consumers(p.head_dim);
  if (!encode_tensor_map(&maps.q, p.q, p.q_stride, p.batch, p.heads_q, p.seq_q, p.head_dim, block_m, bf16) ||
      !encode_tensor_map(&maps.k, p.k, p.k_stride, p.batch, p.heads_kv, p.seq_k, p.head_dim, key_tile, bf16) ||
      !encode_tensor_map(&maps.v, p.v, p.v_stride, p.batch, p.heads_kv, p.seq_k, p.head_dim_v, key_tile, bf16))
    return cudaErrorNotSupported;
  if (p.head_dim == 64)
    return bf16 ? launch_sm90_mods<64, 128, true>(p, dev, maps, stream) : launch_sm90_mods<64, 128, false>(p, dev, maps, stream);
  if (key_tile == 176)
    return bf16 ? launch_sm90<128, 176, true, false>(p, dev, maps, stream) : launch_sm90<128, 176, false, false>(p, dev, maps, stream);
  return bf16 ? launch_sm90_mods<128, 128, true>(p, dev, maps, stream) : launch_sm90_mods<128, 128, false>(p, dev, maps, stream);
}

}  // namespace cuda
}  // namespace attnkit
