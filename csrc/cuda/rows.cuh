// Device helpers of the row kernels (kernel_mix.cu, interpolate.cu): element types, packs
// (16-byte loads and stores, or the widest narrower ones a launch's layout allows), a
// deterministic reduction over the threads of a row, and how rows are laid out on blocks: a
// long row is split over several blocks (chunks), a short row takes a power-of-two group of a
// block's threads, so that one block serves several rows.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cuda/launchers.h"

// An index outside [0, n) stops the kernel with a device-side assert (as torch's indexing
// does) instead of reading or writing out of bounds.
extern "C" {
[[noreturn]] __host__ __device__ void __assert_fail(const char* assertion, const char* file,
                                                    unsigned int line,
                                                    const char* function) noexcept;
}
#define KMIXUP_DEVICE_CHECK(cond, message)                    \
  do {                                                        \
    if (!(cond)) {                                            \
      __assert_fail(message, __FILE__, __LINE__, __func__);   \
    }                                                         \
  } while (0)
#define KMIXUP_CHECK_INDEX(i, n) \
  KMIXUP_DEVICE_CHECK((i) >= 0 && (i) < (n), "kmixup: perm values must lie in [0, B)")

namespace kmixup::cuda::detail {

constexpr int kLogThreads = 8;
constexpr int kThreads = 1 << kLogThreads;  // every row kernel
constexpr int kVecBytes = 16;       // one ld/st.global.v4
constexpr int kUnroll = 4;          // packs in flight per thread and row
constexpr int kMaxPacksPerThread = 8;
constexpr int64_t kTargetBlocks = 2048;  // enough to fill a large GPU a few times over

// ---------------------------------------------------------------- element types

// Arithmetic type: float for float/half/bfloat16, double for double.
template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Explicitly rounded products and sums: nvcc would otherwise contract w_a*a + w_b*b into an
// FMA, and the result would differ in the last bit from torch's eager (and CPU) arithmetic.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// ---------------------------------------------------------------- packs

// N consecutive elements moved as one load/store of sizeof(T) * N bytes.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <int Bytes> struct Bits;
template <> struct Bits<2> { using type = unsigned short; };
template <> struct Bits<4> { using type = unsigned int; };
template <> struct Bits<8> { using type = unsigned long long; };
template <> struct Bits<16> { using type = uint4; };

// Read-only (non-coherent cache) load of a pack; p must be aligned to the pack size.
template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  using B = typename Bits<sizeof(T) * N>::type;
  const B raw = __ldg(reinterpret_cast<const B*>(p));
  Pack<T, N> out;
  memcpy(&out, &raw, sizeof(out));
  return out;
}

template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& v) {
  using B = typename Bits<sizeof(T) * N>::type;
  B raw;
  memcpy(&raw, &v, sizeof(raw));
  *reinterpret_cast<B*>(p) = raw;
}

// c[i] of a strided float32/float64 vector, converted to A (rounded to nearest, as .to()).
template <typename A>
__device__ __forceinline__ A load_coeff(const Coefficients& c, int64_t i) {
  return c.is_double ? static_cast<A>(static_cast<const double*>(c.data)[i * c.stride])
                     : static_cast<A>(static_cast<const float*>(c.data)[i * c.stride]);
}

// What this thread works on: the element range [begin, end) (chunk `index`) of row `row`,
// as thread `lane` of the 2^row_shift threads that share the row. A block holds
// kThreads >> row_shift rows (then chunks == 1) or one chunk of one row (row_shift ==
// kLogThreads). row may be >= batch in a block's last rows: the caller checks.
struct Slice {
  int64_t row, index, begin, end;
  int lane, threads;
};
__host__ __device__ __forceinline__ Slice thread_slice(unsigned int block, unsigned int thread,
                                                       int64_t chunks, int64_t chunk_elems,
                                                       int64_t row_len, int row_shift) {
  Slice s;
  const int64_t tile = block / chunks;  // the block's first row, in units of rows per block
  s.index = block - tile * chunks;
  s.row = (tile << (kLogThreads - row_shift)) + (thread >> row_shift);
  s.lane = static_cast<int>(thread & ((1u << row_shift) - 1));
  s.threads = 1 << row_shift;
  s.begin = s.index * chunk_elems;
  s.end = s.begin + chunk_elems < row_len ? s.begin + chunk_elems : row_len;
  return s;
}

// Calls body(offsets) for the packs of [begin, end) that this thread (lane of threads)
// owns, kUnroll packs per call (offsets[u] < 0 for the missing ones of the last, partial
// group), so that the loads of a group are all issued before their results are used.
// end - begin is a multiple of N.
template <int N, typename Body>
__device__ __forceinline__ void for_packs(int64_t begin, int64_t end, int lane, int threads,
                                          Body&& body) {
  const int64_t stride = int64_t{threads} * N;
  int64_t i = begin + int64_t{lane} * N;
  for (; i + (kUnroll - 1) * stride < end; i += kUnroll * stride) {
    int64_t offsets[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) offsets[u] = i + u * stride;
    body(offsets);
  }
  if (i < end) {
    int64_t offsets[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) offsets[u] = i + u * stride < end ? i + u * stride : -1;
    body(offsets);
  }
}

// Calls body(offset, pack of a, pack of b) for every pack of [begin, end) this thread owns;
// the two loads of each of a group's kUnroll packs are all issued before the first body runs.
template <typename T, int N, typename Body>
__device__ __forceinline__ void for_pack_pairs(const T* __restrict__ a, const T* __restrict__ b,
                                               int64_t begin, int64_t end, int lane, int threads,
                                               Body&& body) {
  for_packs<N>(begin, end, lane, threads, [&](const int64_t(&off)[kUnroll]) {
    Pack<T, N> va[kUnroll], vb[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (off[u] >= 0) {
        va[u] = load_pack<T, N>(a + off[u]);
        vb[u] = load_pack<T, N>(b + off[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (off[u] >= 0) body(off[u], va[u], vb[u]);
    }
  });
}

// ---------------------------------------------------------------- reduction

// Sum over each aligned group of 2^shift threads (the threads of one row; shift ==
// kLogThreads: the whole block), in a fixed order, so the result depends on neither
// scheduling nor timing: a butterfly over the group's lanes within a warp, then, for a group
// wider than a warp, its warps' sums added in warp order. Valid in the group's first thread
// (lane 0). Every thread of the block must call it with the same shift (a block-uniform
// value); `scratch` holds kThreads / 32 values.
template <typename A>
__device__ __forceinline__ A group_sum(A v, int shift, A* scratch) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    if (offset < (1 << shift)) v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  if (shift > 5) {
    __syncthreads();  // scratch may still be read from a previous call
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    if ((threadIdx.x & ((1u << shift) - 1)) == 0) {
      const int first = threadIdx.x >> 5, warps = 1 << (shift - 5);
      v = scratch[first];
      for (int w = 1; w < warps; ++w) v += scratch[first + w];
    }
  }
  return v;
}

// ---------------------------------------------------------------- row split

// How rows map to blocks. A row of more than kThreads / 2 16-byte packs is cut into `chunks`
// pieces of chunk_elems (a multiple of the pack, the last piece shorter), one block each of
// kThreads threads (row_shift == kLogThreads); block b works on row b / chunks. A shorter
// row gets the fewest threads, 2^row_shift, that give each of its packs a thread, and a block
// takes kThreads >> row_shift consecutive rows (chunks == 1, chunk_elems >= row_len): a
// [4096, 512] bfloat16 batch runs 4 rows of 64 threads a block, not 64 busy threads of 256.
// The plan depends on (batch, row_len, element size) only, never on the device; with the
// pack width (pack_elems, chosen per launch from the layout) it fixes every reduction's order,
// so the same inputs give the same bits on every run. (A copy of the data at another
// alignment may load narrower packs, give each thread other elements, and differ in the
// last bits of a distance.)
struct RowPlan {
  int64_t chunks;
  int64_t chunk_elems;
  int row_shift;
  int64_t blocks;  // the grid: batch * chunks, or batch / rows per block rounded up
};

// Calls f(Tag<T>{}) with T the element type of d.
template <typename T> struct Tag { using type = T; };
template <typename F>
inline cudaError_t dispatch(DType d, F&& f) {
  switch (d) {
    case DType::kFloat32: return f(Tag<float>{});
    case DType::kFloat64: return f(Tag<double>{});
    case DType::kFloat16: return f(Tag<__half>{});
    case DType::kBFloat16: return f(Tag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline RowPlan plan_rows(int64_t batch, int64_t row_len, int elem_bytes) {
  const int64_t per_pack = kVecBytes / elem_bytes;
  const int64_t packs = ceil_div(row_len, per_pack);
  if (packs <= kThreads / 2) {
    int shift = 0;
    while ((int64_t{1} << shift) < packs) ++shift;
    return {1, packs * per_pack, shift, ceil_div(batch, int64_t{1} << (kLogThreads - shift))};
  }
  // Enough blocks over the batch, but at least one and at most kMaxPacksPerThread packs per
  // thread: 128 x 3072 floats -> 3 blocks a row, 256 x 150528 floats -> 19.
  int64_t chunks = ceil_div(kTargetBlocks, batch > 0 ? batch : 1);
  chunks = chunks < ceil_div(packs, kThreads) ? chunks : ceil_div(packs, kThreads);
  const int64_t at_least = ceil_div(packs, int64_t{kThreads} * kMaxPacksPerThread);
  chunks = chunks > at_least ? chunks : at_least;
  const int64_t chunk_packs = ceil_div(packs, chunks);
  chunks = ceil_div(packs, chunk_packs);
  const int64_t blocks = batch > INT64_MAX / chunks ? INT64_MAX : batch * chunks;
  return {chunks, chunk_packs * per_pack, kLogThreads, blocks};
}

inline int elem_bytes(DType d) {
  return d == DType::kFloat64 ? 8 : d == DType::kFloat32 ? 4 : 2;
}

// The widest pack, in elements, in which every row of row_len elements of bytes-sized
// elements at these bases (p1 optional) can be moved: 16 bytes, else 8, 4, 2, down to one
// element. Row i starts at base + i * row_len * bytes, so both rows of a pair, and every
// chunk boundary (a multiple of 16 bytes into the row), are aligned to the pack when each
// base and the row's byte length are; the row length is then a multiple of the pack too.
// One choice per launch: a sliced view one element off, or a row of 6 floats, keeps 4- or
// 8-byte loads instead of falling back to single elements.
inline int pack_elems(int64_t row_len, int bytes, const void* p0, const void* p1 = nullptr) {
  const uintptr_t bits = static_cast<uintptr_t>(row_len) * static_cast<uintptr_t>(bytes) |
                         reinterpret_cast<uintptr_t>(p0) | reinterpret_cast<uintptr_t>(p1);
  int width = kVecBytes;
  while (width > bytes && bits % static_cast<uintptr_t>(width) != 0) width /= 2;
  return width / bytes;
}

// Calls f(std::integral_constant<int, N>{}) with N == n, for n a power of two no larger than
// a 16-byte pack of T (what pack_elems returns): one kernel instantiation per width.
template <typename T, int N = kVecBytes / static_cast<int>(sizeof(T)), typename F>
inline cudaError_t dispatch_pack(int n, F&& f) {
  if constexpr (N > 1) {
    if (n < N) return dispatch_pack<T, N / 2>(n, static_cast<F&&>(f));
  }
  return f(std::integral_constant<int, N>{});
}

// The plan's blocks fit a 1-D grid.
inline bool grid_fits(const RowPlan& plan) { return plan.blocks <= INT32_MAX; }

// The most rows of row_len elements whose plan fits a grid: from kTargetBlocks rows on, a
// long row's chunk count no longer depends on the batch, and short rows always share blocks
// the same way. (Below kTargetBlocks rows, a grid that large takes tens of terabytes of rows.)
inline int64_t max_rows_of(int64_t row_len, int elem_bytes) {
  const RowPlan plan = plan_rows(kTargetBlocks, row_len, elem_bytes);
  if (plan.row_shift < kLogThreads) return int64_t{INT32_MAX} << (kLogThreads - plan.row_shift);
  return INT32_MAX / plan.chunks;
}

// Mixes rows of `src` into `dst` (interpolate.cu): dst[i] = c[i] * src[i] + (1 - c[m]) *
// src[j] with j = other[i] and m = i, or m = j for the adjoint (other is then the inverse
// permutation). kernel_mix.cu reuses it for its second launch. With coeff_out set (forward
// only), the chunk-0 block of row i also writes c[i] in the arithmetic type: the kNone path
// of kernel_mix, whose coefficients are lam.
struct MixLaunch {
  const void* src;
  void* dst;
  DType dtype;
  int64_t batch;
  int64_t row_len;
  const int64_t* other;
  Coefficients coeff;
  bool adjoint;
  void* coeff_out;
};
cudaError_t launch_mix_rows(const MixLaunch& args, cudaStream_t stream);

}  // namespace kmixup::cuda::detail
