// pair_sq_dist and the fused kernel_mix.
//
// Distances: one block per (row, chunk) sums (f[i] - f[perm[i]])^2 over its chunk (16-byte
// packs, float accumulation for float/half/bfloat16, double for double) and writes one
// partial; there are no float atomics. The last block to finish (a __threadfence and a
// ticket counter zeroed by cudaMemsetAsync) adds each row's partials in chunk order in
// double and then
//   * pair_sq_dist: writes the B distances;
//   * kernel_mix: takes the mean of the finite distances and evaluates the B coefficients
//     (kmixup::pair_coefficient), spread over its threads.
// kernel_mix then runs one mixing launch (interpolate.cu) that reads those coefficients, so
// the fused op is a memset and two kernels (one kernel with warping "none", where no
// distance is computed). A row of f that fits one chunk with nothing to finish writes its
// distance directly, with no workspace and no memset.
#include "cuda/rows.cuh"
#include "special.h"

namespace kmixup::cuda::detail {
namespace {

// kernel_mix's steps 2-4: lam in, coeff ([batch], float64 if coeff_double) out.
struct CoefficientArgs {
  Coefficients lam;
  double tau_max, tau_std;
  int warping;
  void* coeff;
  bool coeff_double;
};

template <typename T>
struct DistParams {
  const T* __restrict__ f;
  int64_t batch, row_len, chunks, chunk_elems;
  const int64_t* __restrict__ perm;
  acc_t<T>* partial;     // [batch * chunks]; nullptr: one chunk a row, write dist directly
  unsigned int* ticket;  // blocks done, zero at launch
  acc_t<T>* dist;        // pair_sq_dist output [batch]
  CoefficientArgs coeff;  // kernel_mix
};

template <typename T, int N>
__device__ __forceinline__ acc_t<T> sq_dist_range(const T* __restrict__ a,
                                                  const T* __restrict__ b, int64_t begin,
                                                  int64_t end) {
  acc_t<T> sum = 0;
  for_pack_pairs<T, N>(a, b, begin, end,
                       [&](int64_t, const Pack<T, N>& va, const Pack<T, N>& vb) {
#pragma unroll
                         for (int e = 0; e < N; ++e) {
                           const acc_t<T> d = to_acc(va.v[e]) - to_acc(vb.v[e]);
                           sum += d * d;
                         }
                       });
  return sum;
}

// Row r's distance: its chunk partials added in chunk order, in double, rounded once to the
// accumulation type (what pair_sq_dist returns). Reads through L2: other blocks wrote them.
template <typename A>
__device__ __forceinline__ A row_distance(const A* partial, int64_t chunks, int64_t r) {
  double sum = 0.0;
  for (int64_t c = 0; c < chunks; ++c) sum += __ldcg(partial + r * chunks + c);
  return static_cast<A>(sum);
}

template <typename T>
__device__ __forceinline__ void finish_distances(const DistParams<T>& p) {
  for (int64_t r = threadIdx.x; r < p.batch; r += kThreads)
    p.dist[r] = row_distance(p.partial, p.chunks, r);
}

// Steps 2-4 for the whole batch in one block, B / kThreads pairs per thread. Out of line and
// not a template (partials float or double by flag): the special functions are most of the
// code, and of the compile time, and are then compiled once. Arguments by value.
__device__ __noinline__ void finish_coefficients(const void* partial, bool partial_double,
                                                 int64_t chunks, int64_t batch,
                                                 const CoefficientArgs q) {
  __shared__ double scratch[kThreads / 32];
  const auto distance = [&](int64_t r) -> double {
    return partial_double ? row_distance(static_cast<const double*>(partial), chunks, r)
                          : row_distance(static_cast<const float*>(partial), chunks, r);
  };
  double sum = 0.0, finite = 0.0;
  for (int64_t r = threadIdx.x; r < batch; r += kThreads) {
    const double d = distance(r);
    if (isfinite(d)) {
      sum += d;
      finite += 1.0;
    }
  }
  sum = block_sum(sum, scratch);
  finite = block_sum(finite, scratch);
  const double mean = finite > 0.0 ? sum / finite : 0.0;
  for (int64_t r = threadIdx.x; r < batch; r += kThreads) {
    const double k = kmixup::pair_coefficient(distance(r), mean, load_coeff<double>(q.lam, r),
                                              q.tau_max, q.tau_std, q.warping);
    if (q.coeff_double) {
      static_cast<double*>(q.coeff)[r] = k;
    } else {
      static_cast<float*>(q.coeff)[r] = static_cast<float>(k);
    }
  }
}

template <typename T, int N, bool kCoefficients>
__device__ __forceinline__ void pair_dist_body(const DistParams<T>& p) {
  using A = acc_t<T>;
  __shared__ A scratch[kThreads / 32];
  __shared__ bool last;
  const Chunk c = block_chunk(p.chunks, p.chunk_elems, p.row_len);
  const int64_t partner = p.perm[c.row];
  KMIXUP_CHECK_INDEX(partner, p.batch);
  const A sum = block_sum(
      sq_dist_range<T, N>(p.f + c.row * p.row_len, p.f + partner * p.row_len, c.begin, c.end),
      scratch);
  if (!kCoefficients && p.partial == nullptr) {
    if (threadIdx.x == 0) p.dist[c.row] = sum;
    return;
  }
  if (threadIdx.x == 0) {
    p.partial[blockIdx.x] = sum;
    __threadfence();  // the partial is visible device-wide before the ticket counts it
    last = atomicAdd(p.ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  if constexpr (kCoefficients) {
    finish_coefficients(p.partial, sizeof(A) == 8, p.chunks, p.batch, p.coeff);
  } else {
    finish_distances(p);
  }
}

template <typename T, int N>
__global__ void __launch_bounds__(kThreads) pair_dist_kernel(const DistParams<T> p) {
  pair_dist_body<T, N, false>(p);
}

// The call into finish_coefficients needs more registers than ptxas grants a call under
// __launch_bounds__ alone (it spills); __maxnreg__ (CUDA 12.4+) lifts that without inlining
// the special functions into every instantiation.
#if defined(__CUDACC_VER_MAJOR__) && \
    (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 4))
#define KMIXUP_COEFFICIENT_BOUNDS __maxnreg__(128)
#else
#define KMIXUP_COEFFICIENT_BOUNDS __launch_bounds__(kThreads)
#endif

// Packed or not is a runtime (block-uniform) choice here: each instantiation carries its own
// copy of the coefficient code through ptxas, which dominates the compile time.
template <typename T>
__global__ void KMIXUP_COEFFICIENT_BOUNDS pair_dist_coeff_kernel(const DistParams<T> p,
                                                                 bool packed) {
  if (packed) {
    pair_dist_body<T, kVecBytes / sizeof(T), true>(p);
  } else {
    pair_dist_body<T, 1, true>(p);
  }
}

// Workspace: the partials, then the ticket counter at a 16-byte boundary.
struct Workspace {
  size_t ticket_offset, bytes;
};
inline Workspace workspace_layout(int64_t batch, const RowPlan& plan, size_t acc_bytes) {
  const size_t partials = static_cast<size_t>(batch * plan.chunks) * acc_bytes;
  const size_t ticket = (partials + kVecBytes - 1) / kVecBytes * kVecBytes;
  return {ticket, ticket + sizeof(unsigned int)};
}

inline size_t acc_bytes(DType d) { return d == DType::kFloat64 ? 8 : 4; }

template <typename T, bool kCoefficients>
cudaError_t launch_dist(DistParams<T> p, void* workspace, cudaStream_t stream) {
  const RowPlan plan = plan_rows(p.batch, p.row_len, sizeof(T));
  if (!grid_fits(p.batch, plan)) return cudaErrorInvalidValue;
  p.chunks = plan.chunks;
  p.chunk_elems = plan.chunk_elems;
  if (kCoefficients || plan.chunks > 1) {
    if (workspace == nullptr) return cudaErrorInvalidValue;
    const Workspace ws = workspace_layout(p.batch, plan, sizeof(acc_t<T>));
    p.partial = static_cast<acc_t<T>*>(workspace);
    p.ticket = reinterpret_cast<unsigned int*>(static_cast<char*>(workspace) + ws.ticket_offset);
    const cudaError_t err = cudaMemsetAsync(p.ticket, 0, sizeof(unsigned int), stream);
    if (err != cudaSuccess) return err;
  }
  const auto grid = static_cast<unsigned int>(p.batch * plan.chunks);
  constexpr int kPack = kVecBytes / sizeof(T);
  const bool packed = packable(p.row_len, sizeof(T), p.f);
  if constexpr (kCoefficients) {
    pair_dist_coeff_kernel<T><<<grid, kThreads, 0, stream>>>(p, packed);
  } else {
    if (packed) {
      pair_dist_kernel<T, kPack><<<grid, kThreads, 0, stream>>>(p);
    } else {
      pair_dist_kernel<T, 1><<<grid, kThreads, 0, stream>>>(p);
    }
  }
  return cudaGetLastError();
}

// The distance pass over the rows of f for either op: pair_sq_dist writes the distances to
// dist; kernel_mix (kCoefficients) turns them into coefficients as described by coeff.
template <bool kCoefficients>
cudaError_t launch_rows_dist(DType f_dtype, const void* f, int64_t batch, int64_t row_len,
                             const int64_t* perm, void* dist, const CoefficientArgs& coeff,
                             void* workspace, cudaStream_t stream) {
  return dispatch(f_dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    DistParams<T> p{};
    p.f = static_cast<const T*>(f);
    p.batch = batch;
    p.row_len = row_len;
    p.perm = perm;
    p.dist = static_cast<acc_t<T>*>(dist);
    p.coeff = coeff;
    return launch_dist<T, kCoefficients>(p, workspace, stream);
  });
}

}  // namespace
}  // namespace kmixup::cuda::detail

namespace kmixup::cuda {

size_t pair_sq_dist_workspace_bytes(int64_t batch, int64_t row_len, DType f_dtype) {
  const detail::RowPlan plan = detail::plan_rows(batch, row_len, detail::elem_bytes(f_dtype));
  if (batch == 0 || plan.chunks == 1) return 0;
  return detail::workspace_layout(batch, plan, detail::acc_bytes(f_dtype)).bytes;
}

size_t kernel_mix_workspace_bytes(int64_t batch, int64_t feats_row_len, DType feats_dtype,
                                  int warping) {
  if (batch == 0 || warping == kmixup::kNone) return 0;
  const detail::RowPlan plan =
      detail::plan_rows(batch, feats_row_len, detail::elem_bytes(feats_dtype));
  return detail::workspace_layout(batch, plan, detail::acc_bytes(feats_dtype)).bytes;
}

cudaError_t launch_pair_sq_dist(const PairSqDistArgs& args, void* workspace,
                                cudaStream_t stream) {
  if (args.batch == 0) return cudaSuccess;
  return detail::launch_rows_dist<false>(args.f_dtype, args.f, args.batch, args.row_len,
                                         args.perm, args.out, {}, workspace, stream);
}

cudaError_t launch_kernel_mix(const KernelMixArgs& args, void* workspace, cudaStream_t stream) {
  if (args.batch == 0) return cudaSuccess;
  const bool coeff_double = args.x_dtype == DType::kFloat64;
  detail::MixLaunch mix{args.x,         args.out,     args.x_dtype, args.batch,
                        args.x_row_len, args.perm,    args.lam,     /*adjoint=*/false,
                        /*coeff_out=*/args.coeff};
  if (args.warping == kmixup::kNone) return detail::launch_mix_rows(mix, stream);

  const detail::CoefficientArgs coeff{args.lam,     args.tau_max, args.tau_std,
                                      args.warping, args.coeff,   coeff_double};
  const cudaError_t err = detail::launch_rows_dist<true>(
      args.feats_dtype, args.feats, args.batch, args.feats_row_len, args.perm,
      /*dist=*/nullptr, coeff, workspace, stream);
  if (err != cudaSuccess) return err;
  mix.coeff = {args.coeff, coeff_double, 1};
  mix.coeff_out = nullptr;
  return detail::launch_mix_rows(mix, stream);
}

}  // namespace kmixup::cuda
