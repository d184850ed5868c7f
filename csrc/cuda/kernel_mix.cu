// pair_sq_dist and the fused kernel_mix.
//
// Distances: the rows of f are laid out on blocks by plan_rows (rows.cuh): a long row is
// split into chunks, one block each; short rows share a block, each taking a power-of-two
// group of its threads. Each (row, chunk) sums (f[i] - f[perm[i]])^2 over its elements
// (16-byte loads, or the widest of 8, 4, 2 bytes that the row length and base address allow
// (pack_elems); float accumulation for float/half/bfloat16, double for double) with a
// fixed-order reduction over its threads and writes one partial; there are no float
// atomics. The last block to finish (a __threadfence and a ticket counter zeroed by
// cudaMemsetAsync) adds each row's partials in chunk order in double, rounds each sum once
// to the accumulation type and writes the B distances (pair_sq_dist: its output;
// kernel_mix: the workspace); for kernel_mix it also writes the mean of the finite distances
// (double, in the workspace). That is all the last block does: B additions of partials, no
// special function.
// kernel_mix then runs
//   * the coefficient kernel: one pair per thread in blocks of kCoeffThreads (small, so that
//     even a batch of 128 spreads over several SMs), kmixup::pair_coefficient from the
//     distance, the mean and lam;
//   * one mixing launch (interpolate.cu) that reads those coefficients.
// So the fused op is a memset and three kernels (one kernel with warping "none", where no
// distance is computed). Rows of f that fit one chunk with nothing to finish (pair_sq_dist)
// write their distances directly, with no workspace and no memset.
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
  int row_shift;
  const int64_t* __restrict__ perm;
  acc_t<T>* partial;     // [batch * chunks]; nullptr: one chunk a row, write dist directly
  unsigned int* ticket;  // blocks done, zero at launch
  acc_t<T>* dist;        // [batch]: pair_sq_dist's output, or kernel_mix's workspace
  double* mean;          // kernel_mix: mean of the finite distances; nullptr for pair_sq_dist
};

template <typename T, int N>
__device__ __forceinline__ acc_t<T> sq_dist_range(const T* __restrict__ a,
                                                  const T* __restrict__ b, int64_t begin,
                                                  int64_t end, int lane, int threads) {
  acc_t<T> sum = 0;
  for_pack_pairs<T, N>(a, b, begin, end, lane, threads,
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

// The last block: the B distances from the partials and, for kernel_mix, their finite mean
// (each thread adds its rows r = threadIdx.x + k * kThreads in order, then a fixed-order
// block sum: deterministic).
template <typename T>
__device__ __forceinline__ void finish_distances(const DistParams<T>& p) {
  __shared__ double scratch[kThreads / 32];
  double sum = 0.0, finite = 0.0;
  for (int64_t r = threadIdx.x; r < p.batch; r += kThreads) {
    const acc_t<T> d = row_distance(p.partial, p.chunks, r);
    p.dist[r] = d;
    if (isfinite(d)) {
      sum += d;
      finite += 1.0;
    }
  }
  if (p.mean == nullptr) return;  // block-uniform
  sum = group_sum(sum, kLogThreads, scratch);
  finite = group_sum(finite, kLogThreads, scratch);
  if (threadIdx.x == 0) *p.mean = finite > 0.0 ? sum / finite : 0.0;
}

template <typename T, int N>
__global__ void __launch_bounds__(kThreads) pair_dist_kernel(const DistParams<T> p) {
  using A = acc_t<T>;
  __shared__ A scratch[kThreads / 32];
  __shared__ bool last;
  const Slice s = thread_slice(blockIdx.x, threadIdx.x, p.chunks, p.chunk_elems, p.row_len,
                                 p.row_shift);
  const bool valid = s.row < p.batch;  // the block's last rows may lie past the batch
  A sum = 0;
  if (valid) {
    const int64_t partner = p.perm[s.row];
    KMIXUP_CHECK_INDEX(partner, p.batch);
    sum = sq_dist_range<T, N>(p.f + s.row * p.row_len, p.f + partner * p.row_len, s.begin,
                              s.end, s.lane, s.threads);
  }
  sum = group_sum(sum, p.row_shift, scratch);  // every thread takes part
  const bool writer = valid && s.lane == 0;    // holds its row's (chunk's) sum
  if (p.partial == nullptr) {
    if (writer) p.dist[s.row] = sum;
    return;
  }
  if (writer) p.partial[s.row * p.chunks + s.index] = sum;
  // The block's partials are visible device-wide before the ticket counts the block: the
  // barrier orders every writer's store before thread 0's fence, the fence before the
  // atomic (the pattern of cooperative groups' grid sync).
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    last = atomicAdd(p.ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  finish_distances(p);
}

// Steps 2-4 of kernel_mix, one pair per thread: the special functions are most of the code
// and of the compile time, so this is one kernel, not a template (dist float or double by
// flag), and the distance kernel carries none of it. dist and mean come from the distance
// kernel earlier on the stream.
constexpr int kCoeffThreads = 64;
constexpr int64_t kCoeffMaxBlocks = 1 << 16;

__global__ void __launch_bounds__(kCoeffThreads)
    coefficient_kernel(const void* __restrict__ dist, bool dist_double,
                       const double* __restrict__ mean, int64_t batch, const CoefficientArgs q) {
  const double m = *mean;
  const int64_t step = int64_t{gridDim.x} * kCoeffThreads;
  for (int64_t r = int64_t{blockIdx.x} * kCoeffThreads + threadIdx.x; r < batch; r += step) {
    const double d = dist_double ? static_cast<const double*>(dist)[r]
                                 : static_cast<double>(static_cast<const float*>(dist)[r]);
    const double lam = load_coeff<double>(q.lam, r);
    // The warp in the coefficient's type: float32 arithmetic for float/half/bfloat16 data.
    if (q.coeff_double) {
      static_cast<double*>(q.coeff)[r] =
          kmixup::pair_coefficient<double>(d, m, lam, q.tau_max, q.tau_std, q.warping);
    } else {
      static_cast<float*>(q.coeff)[r] =
          kmixup::pair_coefficient<float>(d, m, lam, q.tau_max, q.tau_std, q.warping);
    }
  }
}

// Workspace: the partials; for kernel_mix (with_mean) the distances and their mean; then the
// ticket counter. Every piece starts at a 16-byte boundary.
struct Workspace {
  size_t dist_offset, mean_offset, ticket_offset, bytes;
};
inline Workspace workspace_layout(int64_t batch, const RowPlan& plan, size_t acc_bytes,
                                  bool with_mean) {
  const auto align = [](size_t n) { return (n + kVecBytes - 1) / kVecBytes * kVecBytes; };
  Workspace w{};
  size_t at = align(static_cast<size_t>(batch * plan.chunks) * acc_bytes);
  if (with_mean) {
    w.dist_offset = at;
    at = align(at + static_cast<size_t>(batch) * acc_bytes);
    w.mean_offset = at;
    at += kVecBytes;
  }
  w.ticket_offset = at;
  w.bytes = at + sizeof(unsigned int);
  return w;
}

inline size_t acc_bytes(DType d) { return d == DType::kFloat64 ? 8 : 4; }

// One distance pass, untyped: rows of f, the plan, and where its results go (see DistParams;
// partial and ticket are null when the plan has one chunk a row and no mean is wanted).
struct DistLaunch {
  DType dtype;
  const void* f;
  int64_t batch, row_len;
  const int64_t* perm;
  RowPlan plan;
  void* partial;
  unsigned int* ticket;
  void* dist;
  double* mean;
};

// Points the pass at the workspace (partials, ticket; the distances and mean too for
// kernel_mix) and zeroes the ticket on the stream. dist: pair_sq_dist's output.
cudaError_t place_dist(DistLaunch& d, void* dist, bool with_mean, void* workspace,
                       cudaStream_t stream) {
  d.dist = dist;
  if (!with_mean && d.plan.chunks == 1) return cudaSuccess;
  if (workspace == nullptr) return cudaErrorInvalidValue;
  char* base = static_cast<char*>(workspace);
  const Workspace ws = workspace_layout(d.batch, d.plan, acc_bytes(d.dtype), with_mean);
  d.partial = base;
  d.ticket = reinterpret_cast<unsigned int*>(base + ws.ticket_offset);
  if (with_mean) {
    d.dist = base + ws.dist_offset;
    d.mean = reinterpret_cast<double*>(base + ws.mean_offset);
  }
  return cudaMemsetAsync(d.ticket, 0, sizeof(unsigned int), stream);
}

cudaError_t launch_dist(const DistLaunch& d, cudaStream_t stream) {
  return dispatch(d.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const DistParams<T> p{static_cast<const T*>(d.f), d.batch,
                          d.row_len,                  d.plan.chunks,
                          d.plan.chunk_elems,         d.plan.row_shift,
                          d.perm,                     static_cast<A*>(d.partial),
                          d.ticket,                   static_cast<A*>(d.dist),
                          d.mean};
    const auto grid = static_cast<unsigned int>(d.plan.blocks);
    return dispatch_pack<T>(pack_elems(d.row_len, sizeof(T), d.f), [&](auto n) {
      pair_dist_kernel<T, decltype(n)::value><<<grid, kThreads, 0, stream>>>(p);
      return cudaGetLastError();
    });
  });
}

cudaError_t launch_coefficients(const DistLaunch& d, const CoefficientArgs& q,
                                cudaStream_t stream) {
  const int64_t wanted = ceil_div(d.batch, kCoeffThreads);
  const auto grid = static_cast<unsigned int>(wanted < kCoeffMaxBlocks ? wanted : kCoeffMaxBlocks);
  coefficient_kernel<<<grid, kCoeffThreads, 0, stream>>>(d.dist, d.dtype == DType::kFloat64,
                                                         d.mean, d.batch, q);
  return cudaGetLastError();
}

}  // namespace
}  // namespace kmixup::cuda::detail

namespace kmixup::cuda::detail {

// The distance pass over B rows of f, with its row plan (grid_fits says whether it launches).
inline DistLaunch dist_launch(DType dtype, const void* f, int64_t batch, int64_t row_len,
                              const int64_t* perm) {
  DistLaunch d{};
  d.dtype = dtype;
  d.f = f;
  d.batch = batch;
  d.row_len = row_len;
  d.perm = perm;
  d.plan = plan_rows(batch, row_len, elem_bytes(dtype));
  return d;
}

}  // namespace kmixup::cuda::detail

namespace kmixup::cuda {

size_t pair_sq_dist_workspace_bytes(int64_t batch, int64_t row_len, DType f_dtype) {
  const detail::RowPlan plan = detail::plan_rows(batch, row_len, detail::elem_bytes(f_dtype));
  if (batch == 0 || plan.chunks == 1) return 0;
  return detail::workspace_layout(batch, plan, detail::acc_bytes(f_dtype), false).bytes;
}

size_t kernel_mix_workspace_bytes(int64_t batch, int64_t feats_row_len, DType feats_dtype,
                                  int warping) {
  if (batch == 0 || warping == kmixup::kNone) return 0;
  const detail::RowPlan plan =
      detail::plan_rows(batch, feats_row_len, detail::elem_bytes(feats_dtype));
  return detail::workspace_layout(batch, plan, detail::acc_bytes(feats_dtype), true).bytes;
}

cudaError_t launch_pair_sq_dist(const PairSqDistArgs& args, void* workspace,
                                cudaStream_t stream) {
  if (args.batch == 0) return cudaSuccess;
  detail::DistLaunch d =
      detail::dist_launch(args.f_dtype, args.f, args.batch, args.row_len, args.perm);
  if (!detail::grid_fits(d.plan)) return cudaErrorInvalidValue;
  const cudaError_t err = detail::place_dist(d, args.out, /*with_mean=*/false, workspace, stream);
  if (err != cudaSuccess) return err;
  return detail::launch_dist(d, stream);
}

cudaError_t launch_kernel_mix(const KernelMixArgs& args, void* workspace, cudaStream_t stream) {
  if (args.batch == 0) return cudaSuccess;
  // Both grids are checked before the first launch (the mixing one again by launch_mix_rows).
  if (!rows_fit(args.batch, args.x_row_len, args.x_dtype)) return cudaErrorInvalidValue;
  const bool coeff_double = args.x_dtype == DType::kFloat64;
  detail::MixLaunch mix{args.x,         args.out,     args.x_dtype, args.batch,
                        args.x_row_len, args.perm,    args.lam,     /*adjoint=*/false,
                        /*coeff_out=*/args.coeff};
  if (args.warping == kmixup::kNone) return detail::launch_mix_rows(mix, stream);

  detail::DistLaunch d = detail::dist_launch(args.feats_dtype, args.feats, args.batch,
                                                   args.feats_row_len, args.perm);
  if (!detail::grid_fits(d.plan)) return cudaErrorInvalidValue;
  cudaError_t err = detail::place_dist(d, nullptr, /*with_mean=*/true, workspace, stream);
  if (err != cudaSuccess) return err;
  err = detail::launch_dist(d, stream);
  if (err != cudaSuccess) return err;
  const detail::CoefficientArgs coeff{args.lam,     args.tau_max, args.tau_std,
                                      args.warping, args.coeff,   coeff_double};
  err = detail::launch_coefficients(d, coeff, stream);
  if (err != cudaSuccess) return err;
  mix.coeff = {args.coeff, coeff_double, 1};
  mix.coeff_out = nullptr;
  return detail::launch_mix_rows(mix, stream);
}

}  // namespace kmixup::cuda
