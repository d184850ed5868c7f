// interpolate and interpolate_backward: one kernel that mixes two source rows into one
// destination row, with no atomics. Rows are laid out on blocks by plan_rows (rows.cuh): one
// block per (row, chunk) for long rows, several short rows a block (a power-of-two group of
// threads each). Loads and stores are 16 bytes wide, or the widest of 8, 4, 2 bytes that the
// row length and both base addresses allow (pack_elems).
//
// Forward, threads of row i:  out[i] = c[i] * x[i] + (1 - c[i]) * x[perm[i]]
// Backward, threads of row j: out[j] = c[j] * g[j] + (1 - c[q]) * g[q], q = source[j] the
// sample whose partner is j. source, the inverse permutation, is built first by one small
// kernel with atomics, which also traps on a perm that is not a permutation (a duplicate
// would leave some gradient row without its q): every output row has exactly one writer
// and nothing reads uninitialised memory.
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
  int row_shift;
  const int64_t* __restrict__ other;
  Coefficients coeff;
  bool adjoint;
  acc_t<T>* coeff_out;
};

constexpr unsigned long long kUnset = ~0ull;  // what cudaMemsetAsync(0xFF) leaves

// source[perm[i]] = i for every i; source must hold kUnset on entry.
__global__ void invert_perm_kernel(const int64_t* __restrict__ perm, int64_t batch,
                                   unsigned long long* __restrict__ source) {
  const int64_t step = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < batch; i += step) {
    const int64_t j = perm[i];
    KMIXUP_CHECK_INDEX(j, batch);
    const unsigned long long previous =
        atomicCAS(source + j, kUnset, static_cast<unsigned long long>(i));
    KMIXUP_DEVICE_CHECK(previous == kUnset,
                        "kmixup: perm must be a permutation for the gradient of interpolate");
  }
}

template <typename T, int N>
__device__ __forceinline__ void copy_range(const T* __restrict__ src, T* __restrict__ dst,
                                           const Slice& s) {
  for_packs<N>(s.begin, s.end, s.lane, s.threads, [&](const int64_t(&off)[kUnroll]) {
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
                                          T* __restrict__ dst, const Slice& s) {
  for_pack_pairs<T, N>(a, b, s.begin, s.end, s.lane, s.threads,
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
  const Slice s = thread_slice(blockIdx.x, threadIdx.x, p.chunks, p.chunk_elems, p.row_len,
                                 p.row_shift);
  if (s.row >= p.batch) return;  // the block's last rows may lie past the batch
  const int64_t partner = p.other[s.row];
  KMIXUP_CHECK_INDEX(partner, p.batch);
  const A k = load_coeff<A>(p.coeff, s.row);
  const A wa = k;
  const A wb = A(1) - (p.adjoint ? load_coeff<A>(p.coeff, partner) : k);
  if (p.coeff_out != nullptr && s.index == 0 && s.lane == 0) p.coeff_out[s.row] = k;

  const T* a = p.src + s.row * p.row_len;
  const T* b = p.src + partner * p.row_len;
  T* dst = p.dst + s.row * p.row_len;
  if (wa == A(1) && wb == A(0)) {
    copy_range<T, N>(a, dst, s);
  } else if (wa == A(0) && wb == A(1)) {
    copy_range<T, N>(b, dst, s);
  } else {
    mix_range<T, N>(a, wa, b, wb, dst, s);
  }
}

template <typename T>
cudaError_t launch_typed(const MixLaunch& args, cudaStream_t stream) {
  const RowPlan plan = plan_rows(args.batch, args.row_len, sizeof(T));
  if (!grid_fits(plan)) return cudaErrorInvalidValue;
  const MixParams<T> p{static_cast<const T*>(args.src),
                       static_cast<T*>(args.dst),
                       args.batch,
                       args.row_len,
                       plan.chunks,
                       plan.chunk_elems,
                       plan.row_shift,
                       args.other,
                       args.coeff,
                       args.adjoint,
                       static_cast<acc_t<T>*>(args.coeff_out)};
  const auto grid = static_cast<unsigned int>(plan.blocks);
  return dispatch_pack<T>(pack_elems(args.row_len, sizeof(T), args.src, args.dst), [&](auto n) {
    mix_rows_kernel<T, decltype(n)::value><<<grid, kThreads, 0, stream>>>(p);
    return cudaGetLastError();
  });
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

bool rows_fit(int64_t batch, int64_t row_len, DType dtype) {
  return detail::grid_fits(detail::plan_rows(batch, row_len, detail::elem_bytes(dtype)));
}

int64_t max_rows(int64_t row_len, DType dtype) {
  return detail::max_rows_of(row_len, detail::elem_bytes(dtype));
}

cudaError_t launch_interpolate(const InterpolateArgs& args, cudaStream_t stream) {
  if (args.row_len == 0) return cudaSuccess;
  return detail::launch_mix_rows({args.x, args.out, args.dtype, args.batch, args.row_len,
                                  args.perm, args.coeff, /*adjoint=*/false, nullptr},
                                 stream);
}

size_t interpolate_backward_workspace_bytes(int64_t batch) {
  return static_cast<size_t>(batch) * sizeof(unsigned long long);
}

cudaError_t launch_interpolate_backward(const InterpolateArgs& args, void* workspace,
                                        cudaStream_t stream) {
  if (args.batch == 0) return cudaSuccess;
  if (workspace == nullptr || !rows_fit(args.batch, args.row_len, args.dtype)) {
    return cudaErrorInvalidValue;  // before the first launch
  }
  auto* source = static_cast<unsigned long long*>(workspace);
  cudaError_t err = cudaMemsetAsync(source, 0xFF, interpolate_backward_workspace_bytes(args.batch),
                                    stream);
  if (err != cudaSuccess) return err;
  constexpr int kInvertThreads = 256;
  const int64_t blocks = detail::ceil_div(args.batch, kInvertThreads);
  detail::invert_perm_kernel<<<static_cast<unsigned int>(blocks < 65535 ? blocks : 65535),
                               kInvertThreads, 0, stream>>>(args.perm, args.batch, source);
  err = cudaGetLastError();
  if (err != cudaSuccess || args.row_len == 0) return err;
  return detail::launch_mix_rows(
      {args.x, args.out, args.dtype, args.batch, args.row_len,
       reinterpret_cast<const int64_t*>(source), args.coeff, /*adjoint=*/true, nullptr},
      stream);
}

}  // namespace kmixup::cuda
