// Host launchers of the CUDA kernels: plain C++ over raw pointers and a stream, no torch,
// so the kernels compile with nvcc alone and binding.cpp stays a thin layer.
//
// Conventions shared by every launcher:
// * x / f / grad are B rows of row_len elements, row i at data + i * row_len (each sample a
//   dense block; the order inside a row does not matter as long as all rows share it).
// * perm is int64 [B] with values in [0, B) (a value outside traps on the device).
// * Arithmetic is float for float/half/bfloat16 data and double for double data; the
//   coefficients and distances written are of that type (float32 or float64).
// * Nothing synchronises the host and nothing allocates: the workspace comes from the
//   caller (see *_workspace_bytes), the only memset is a cudaMemsetAsync on `stream`, so
//   every launcher can be captured in a CUDA graph.
// * The return value is cudaGetLastError() after the launches (cudaErrorInvalidValue for
//   arguments the kernels cannot take, e.g. a batch beyond max_rows: every grid is checked
//   before anything is launched).
//
// Structure (kernel_mix.cu, interpolate.cu, rows.cuh). The row kernels (distances, mixing)
// run 256-thread blocks: a long row is split over several blocks, short rows share one (a
// power-of-two group of threads a row, e.g. [4096, 512] bfloat16: 4 rows a block); loads and
// stores are 16-byte packs, or the widest of 8, 4, 2 bytes the row length and base addresses
// allow. Every reduction has a fixed order (no float atomics). kernel_mix is a ticket memset
// and three kernels: distances (the last block to finish adds each row's partials and writes
// the distances and their finite mean to the workspace), coefficients (one pair a thread,
// 64-thread blocks over the whole GPU), mixing (exact copies for coefficients 1 and 0).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace kmixup::cuda {

enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// A CUDA grid holds at most 2^31 - 1 blocks, and the row kernels take one block per chunk of
// a long row or one per several short rows: a launch takes at most max_rows(row_len, dtype)
// rows of row_len elements (billions; more than any GPU memory holds for realistic rows).
// rows_fit(batch, ...) is batch <= max_rows(...). The binding checks it first, to name the
// limit in its error; the launchers check it again.
bool rows_fit(int64_t batch, int64_t row_len, DType dtype);
int64_t max_rows(int64_t row_len, DType dtype);

// A strided float32 / float64 vector of B values (lam or coeff); stride 0 broadcasts one.
struct Coefficients {
  const void* data;
  bool is_double;
  int64_t stride;
};

// Squared distance of every row to its partner: out[i] = sum_j (f[i, j] - f[perm[i], j])^2,
// accumulated in float (double for double f); out is float32 (float64 for double f).
struct PairSqDistArgs {
  const void* f;
  DType f_dtype;
  int64_t batch;
  int64_t row_len;
  const int64_t* perm;
  void* out;
};
size_t pair_sq_dist_workspace_bytes(int64_t batch, int64_t row_len, DType f_dtype);
cudaError_t launch_pair_sq_dist(const PairSqDistArgs& args, void* workspace, cudaStream_t stream);

// The fused op: distances of feats rows, their finite mean, one coefficient per pair
// (kmixup::pair_coefficient), then out[i] = k[i] * x[i] + (1 - k[i]) * x[perm[i]].
// coeff receives k: float32, float64 for double x. warping is a kmixup::Warping value;
// with kNone no distance is computed and k = lam.
struct KernelMixArgs {
  const void* x;
  DType x_dtype;
  int64_t x_row_len;
  const void* feats;
  DType feats_dtype;
  int64_t feats_row_len;
  int64_t batch;
  const int64_t* perm;
  Coefficients lam;
  double tau_max;
  double tau_std;
  int warping;
  void* out;
  void* coeff;
};
size_t kernel_mix_workspace_bytes(int64_t batch, int64_t feats_row_len, DType feats_dtype,
                                  int warping);
cudaError_t launch_kernel_mix(const KernelMixArgs& args, void* workspace, cudaStream_t stream);

// out[i] = c[i] * x[i] + (1 - c[i]) * x[perm[i]] (interpolate), or its adjoint
// out[perm[i]] = c[perm[i]] * x[perm[i]] + (1 - c[i]) * x[i] (interpolate_backward, x the
// incoming gradient; its workspace holds the inverse permutation, and a perm that is not a
// permutation traps). c is converted to the arithmetic type first; a row whose weights are
// (1, 0) or (0, 1) is an exact copy of one source row and never reads the other.
struct InterpolateArgs {
  const void* x;
  DType dtype;
  int64_t batch;
  int64_t row_len;
  const int64_t* perm;
  Coefficients coeff;
  void* out;
};
cudaError_t launch_interpolate(const InterpolateArgs& args, cudaStream_t stream);
size_t interpolate_backward_workspace_bytes(int64_t batch);
cudaError_t launch_interpolate_backward(const InterpolateArgs& args, void* workspace,
                                        cudaStream_t stream);

// Elementwise out[i] = betainc(a[i], b[i], t[i]) (or betaincinv), evaluated in double.
// dtype is kFloat32 or kFloat64 for all four arrays.
struct SpecialArgs {
  const void* a;
  const void* b;
  const void* t;
  void* out;
  DType dtype;
  int64_t numel;
};
cudaError_t launch_betainc(const SpecialArgs& args, cudaStream_t stream);
cudaError_t launch_betaincinv(const SpecialArgs& args, cudaStream_t stream);

}  // namespace kmixup::cuda
