// interpolate and interpolate_backward: one kernel that mixes two source rows into one
// destination row, one block per (row, chunk), with no atomics.
//
// Forward, block of row i:  out[i]       = c[i] * x[i] + (1 - c[i]) * x[perm[i]]
// Backward, block of row i: out[perm[i]] = c[perm[i]] * g[perm[i]] + (1 - c[i]) * g[i]
// The backward writes row perm[i] from the block of row i: perm is a permutation, so every
// output row is written by exactly one block, without building the inverse permutation.
// Weights (1, 0) and (0, 1) make the row an exact copy of one source, and the other source
// is never read (a NaN in it cannot leak; those rows also cost one read instead of two).
#include "cuda/rows.cuh"

namespace kmixup::cuda::detail {
namespace {

template <typename T>
struct MixParams {
  const T* __restrict__ src;
  T* __restrict__ dst;
  int64_t batch, row_len, chunks, chunk_elems;
  const int64_t* __restrict__ perm;
  Coefficients coeff;
  bool backward;
  acc_t<T>* coeff_out;
};

template <typename T, int N>
__device__ __forceinline__ void copy_range(const T* __restrict__ src, T* __restrict__ dst,
                                           int64_t begin, int64_t end) {
  for_packs<N>(begin, end, [&](const int64_t(&off)[kUnroll]) {
    Pack<T, N> v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (off[u] >= 0) v[u] = load_pack<T, N>(src + off[u]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
      if (off[u] >= 0) store_pack(dst + off[u], v[u]);
  });
}

template <typename T, int N>
__device__ __forceinline__ void mix_range(const T* __restrict__ a, acc_t<T> wa,
                                          const T* __restrict__ b, acc_t<T> wb,
                                          T* __restrict__ dst, int64_t begin, int64_t end) {
  for_pack_pairs<T, N>(a, b, begin, end,
                       [&](int64_t off, const Pack<T, N>& va, const Pack<T, N>& vb) {
                         Pack<T, N> o;
#pragma unroll
                         for (int e = 0; e < N; ++e) {
                           o.v[e] = from_acc<T>(add_rn(mul_rn(wa, to_acc(va.v[e])),
                                                       mul_rn(wb, to_acc(vb.v[e]))));
                         }
                         store_pack(dst + off, o);
                       });
}

template <typename T, int N>
__global__ void __launch_bounds__(kThreads) mix_rows_kernel(const MixParams<T> p) {
  using A = acc_t<T>;
  const Chunk c = block_chunk(p.chunks, p.chunk_elems, p.row_len);
  const int64_t partner = p.perm[c.row];
  KMIXUP_CHECK_INDEX(partner, p.batch);
  const int64_t row_a = p.backward ? partner : c.row;  // also the destination row
  const int64_t row_b = p.backward ? c.row : partner;
  const A k = load_coeff<A>(p.coeff, c.row);
  const A wa = p.backward ? load_coeff<A>(p.coeff, partner) : k;
  const A wb = A(1) - k;
  if (p.coeff_out != nullptr && c.index == 0 && threadIdx.x == 0) p.coeff_out[c.row] = k;

  const T* a = p.src + row_a * p.row_len;
  const T* b = p.src + row_b * p.row_len;
  T* dst = p.dst + row_a * p.row_len;
  if (wa == A(1) && wb == A(0)) {
    copy_range<T, N>(a, dst, c.begin, c.end);
  } else if (wa == A(0) && wb == A(1)) {
    copy_range<T, N>(b, dst, c.begin, c.end);
  } else {
    mix_range<T, N>(a, wa, b, wb, dst, c.begin, c.end);
  }
}

template <typename T>
cudaError_t launch_typed(const MixLaunch& args, cudaStream_t stream) {
  const RowPlan plan = plan_rows(args.batch, args.row_len, sizeof(T));
  if (!grid_fits(args.batch, plan)) return cudaErrorInvalidValue;
  const MixParams<T> p{static_cast<const T*>(args.src),
                       static_cast<T*>(args.dst),
                       args.batch,
                       args.row_len,
                       plan.chunks,
                       plan.chunk_elems,
                       args.perm,
                       args.coeff,
                       args.backward,
                       static_cast<acc_t<T>*>(args.coeff_out)};
  const auto grid = static_cast<unsigned int>(args.batch * plan.chunks);
  if (packable(args.row_len, sizeof(T), args.src, args.dst)) {
    mix_rows_kernel<T, kVecBytes / sizeof(T)><<<grid, kThreads, 0, stream>>>(p);
  } else {
    mix_rows_kernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_mix_rows(const MixLaunch& args, cudaStream_t stream) {
  if (args.batch == 0) return cudaSuccess;
  return dispatch(args.dtype, [&](auto tag) {
    return launch_typed<typename decltype(tag)::type>(args, stream);
  });
}

}  // namespace kmixup::cuda::detail

namespace kmixup::cuda {

cudaError_t launch_interpolate(const InterpolateArgs& args, cudaStream_t stream) {
  if (args.row_len == 0) return cudaSuccess;
  return detail::launch_mix_rows({args.x, args.out, args.dtype, args.batch, args.row_len,
                                  args.perm, args.coeff, /*backward=*/false, nullptr},
                                 stream);
}

cudaError_t launch_interpolate_backward(const InterpolateArgs& args, cudaStream_t stream) {
  if (args.row_len == 0) return cudaSuccess;
  return detail::launch_mix_rows({args.x, args.out, args.dtype, args.batch, args.row_len,
                                  args.perm, args.coeff, /*backward=*/true, nullptr},
                                 stream);
}

}  // namespace kmixup::cuda
