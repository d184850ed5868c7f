// CUDA kernels of every kmixup op (schemas in csrc/kmixup.cpp): contract checks, layout,
// outputs and workspace from the caching allocator, then one launcher call on the current
// stream. Nothing here reads device memory or synchronises the host, so the ops run under
// torch.cuda.set_sync_debug_mode("error") and inside CUDA graph capture.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "checks.h"
#include "cuda/launchers.h"

namespace kmixup::cuda {
namespace {

void check_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "kmixup: ", name, " must be a CUDA tensor, got ", t.device());
}

DType dtype_of(const at::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    default:
      TORCH_CHECK(false, "kmixup: ", name,
                  " must be float32, float64, float16 or bfloat16 on CUDA, got ",
                  t.scalar_type());
  }
}

Coefficients coefficients_of(const at::Tensor& c) {
  return {c.const_data_ptr(), c.scalar_type() == at::kDouble, c.stride(0)};
}

// Uninitialised device bytes from the caching allocator (no cudaMalloc once it is warm, and
// graph-safe: captured allocations come from the graph's private pool).
at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  if (bytes == 0) return at::Tensor();
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

void* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// A batch beyond the row kernels' grid is refused here, naming the limit, rather than as the
// launcher's bare cudaErrorInvalidValue.
void check_rows_fit(int64_t batch, int64_t row_len, DType dtype, const char* name) {
  TORCH_CHECK(rows_fit(batch, row_len, dtype), "kmixup: ", name, " has ", batch, " rows of ",
              row_len, " elements, more than the ", max_rows(row_len, dtype),
              " rows of that length that one CUDA launch takes (a grid holds at most 2^31 - 1 "
              "blocks); mix it in smaller batches");
}

at::Tensor pair_sq_dist_cuda(const at::Tensor& f, const at::Tensor& perm) {
  check_batch_and_perm(f, "f", perm);
  check_cuda(f, "f");
  const DType dtype = dtype_of(f, "f");
  const c10::cuda::CUDAGuard guard(f.device());
  const at::Tensor rows = row_dense(f);
  const at::Tensor perm_c = perm.contiguous();
  const int64_t batch = f.size(0), row = row_length(rows);
  at::Tensor out = at::empty({batch}, f.options().dtype(acc_dtype(f)));
  if (batch == 0) return out;
  check_rows_fit(batch, row, dtype, "f");
  const at::Tensor ws = workspace(pair_sq_dist_workspace_bytes(batch, row, dtype), f);
  C10_CUDA_CHECK(launch_pair_sq_dist(
      {rows.const_data_ptr(), dtype, batch, row, perm_c.const_data_ptr<int64_t>(),
       out.data_ptr()},
      data_or_null(ws), current_stream()));
  return out;
}

// The fused op into out, a row-dense tensor in x's layout that does not overlap x (the
// rows of a block are read while other blocks write theirs). Returns the coefficients.
at::Tensor kernel_mix_into(const at::Tensor& x, const at::Tensor& perm, const at::Tensor& lam,
                           const at::Tensor& feats, double tau_max, double tau_std,
                           c10::string_view warping_name, const at::Tensor& out) {
  const int warping = check_kernel_mix(x, perm, lam, feats, std::string(warping_name));
  check_cuda(x, "x");
  const DType x_dtype = dtype_of(x, "x"), feats_dtype = dtype_of(feats, "feats");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t batch = x.size(0);
  const at::Tensor x_rows = row_dense(x);
  // With warping "none" the features are never read: no copy for them. Features that are x
  // (the default: Python passes x.detach(), another tensor over the same memory) share x's
  // row-dense copy rather than making a second one when x is in neither layout.
  const bool feats_is_x = feats.is_alias_of(x) && feats.scalar_type() == x.scalar_type() &&
                          feats.storage_offset() == x.storage_offset() &&
                          feats.sizes() == x.sizes() && feats.strides() == x.strides();
  const at::Tensor f_rows = warping == kNone ? feats : feats_is_x ? x_rows : row_dense(feats);
  const at::Tensor perm_c = perm.contiguous();
  at::Tensor coeff = at::empty({batch}, x.options().dtype(acc_dtype(x)));
  if (batch == 0) return coeff;
  const int64_t f_row = row_length(f_rows);
  check_rows_fit(batch, row_length(x_rows), x_dtype, "x");
  if (warping != kNone) check_rows_fit(batch, f_row, feats_dtype, "feats");
  const at::Tensor ws = workspace(kernel_mix_workspace_bytes(batch, f_row, feats_dtype, warping), x);
  KernelMixArgs args{};
  args.x = x_rows.const_data_ptr();
  args.x_dtype = x_dtype;
  args.x_row_len = row_length(x_rows);
  args.feats = f_rows.const_data_ptr();
  args.feats_dtype = feats_dtype;
  args.feats_row_len = f_row;
  args.batch = batch;
  args.perm = perm_c.const_data_ptr<int64_t>();
  args.lam = coefficients_of(lam);
  args.tau_max = tau_max;
  args.tau_std = tau_std;
  args.warping = warping;
  args.out = out.data_ptr();
  args.coeff = coeff.data_ptr();
  C10_CUDA_CHECK(launch_kernel_mix(args, data_or_null(ws), current_stream()));
  return coeff;
}

std::tuple<at::Tensor, at::Tensor> kernel_mix_cuda(const at::Tensor& x, const at::Tensor& perm,
                                                   const at::Tensor& lam,
                                                   const at::Tensor& feats, double tau_max,
                                                   double tau_std, c10::string_view warping) {
  check_float(x, "x");
  at::Tensor mixed = at::empty(x.sizes(), x.options().memory_format(row_memory_format(x)));
  at::Tensor coeff = kernel_mix_into(x, perm, lam, feats, tau_max, tau_std, warping, mixed);
  return {mixed, coeff};
}

at::Tensor kernel_mix_out_cuda(const at::Tensor& x, const at::Tensor& perm,
                               const at::Tensor& lam, const at::Tensor& feats, double tau_max,
                               double tau_std, c10::string_view warping, at::Tensor& out) {
  check_out(out, x);
  return kernel_mix_into(x, perm, lam, feats, tau_max, tau_std, warping, out);
}

// Blocks mix rows concurrently, so x[perm[i]] may already be overwritten when row i reads
// it: the GPU mixes into a fresh buffer and copies back (on the CPU the cycle walk makes
// true in-place mixing safe).
at::Tensor kernel_mix_inplace_cuda(at::Tensor& x, const at::Tensor& perm, const at::Tensor& lam,
                                   const at::Tensor& feats, double tau_max, double tau_std,
                                   c10::string_view warping) {
  check_in_place(x);
  auto [mixed, coeff] = kernel_mix_cuda(x, perm, lam, feats, tau_max, tau_std, warping);
  x.copy_(mixed);
  return coeff;
}

// interpolate, or its adjoint (which first inverts perm in a workspace).
at::Tensor mix_rows(const at::Tensor& x, const char* x_name, const at::Tensor& perm,
                    const at::Tensor& coeff, bool backward) {
  check_batch_and_perm(x, x_name, perm);
  check_cuda(x, x_name);
  check_coefficients(coeff, "coeff", x);
  const DType dtype = dtype_of(x, x_name);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor rows = row_dense(x);
  const at::Tensor perm_c = perm.contiguous();
  check_rows_fit(x.size(0), row_length(rows), dtype, x_name);
  at::Tensor out = at::empty_like(rows);
  const InterpolateArgs args{rows.const_data_ptr(), dtype,        x.size(0),
                             row_length(rows),      perm_c.const_data_ptr<int64_t>(),
                             coefficients_of(coeff), out.data_ptr()};
  if (!backward) {
    if (out.numel() > 0) C10_CUDA_CHECK(launch_interpolate(args, current_stream()));
    return out;
  }
  const at::Tensor ws = workspace(interpolate_backward_workspace_bytes(x.size(0)), x);
  C10_CUDA_CHECK(launch_interpolate_backward(args, data_or_null(ws), current_stream()));
  return out;
}

at::Tensor interpolate_cuda(const at::Tensor& x, const at::Tensor& perm, const at::Tensor& coeff) {
  return mix_rows(x, "x", perm, coeff, /*backward=*/false);
}

at::Tensor interpolate_backward_cuda(const at::Tensor& grad, const at::Tensor& perm,
                                     const at::Tensor& coeff) {
  return mix_rows(grad, "grad", perm, coeff, /*backward=*/true);
}

template <cudaError_t (*Launch)(const SpecialArgs&, cudaStream_t)>
at::Tensor special(const at::Tensor& a, const at::Tensor& b, const at::Tensor& t,
                   const char* t_name) {
  check_elementwise(a, b, t, t_name);
  check_cuda(t, t_name);
  const c10::cuda::CUDAGuard guard(t.device());
  const at::Tensor a_c = a.contiguous(), b_c = b.contiguous(), t_c = t.contiguous();
  at::Tensor out = at::empty_like(t_c);
  if (out.numel() == 0) return out;
  C10_CUDA_CHECK(Launch({a_c.const_data_ptr(), b_c.const_data_ptr(), t_c.const_data_ptr(),
                         out.data_ptr(), dtype_of(t, t_name), out.numel()},
                        current_stream()));
  return out;
}

at::Tensor betainc_cuda(const at::Tensor& a, const at::Tensor& b, const at::Tensor& x) {
  return special<launch_betainc>(a, b, x, "x");
}

at::Tensor betaincinv_cuda(const at::Tensor& a, const at::Tensor& b, const at::Tensor& y) {
  return special<launch_betaincinv>(a, b, y, "y");
}

}  // namespace

TORCH_LIBRARY_IMPL(kmixup, CUDA, m) {
  m.impl("betainc", &betainc_cuda);
  m.impl("betaincinv", &betaincinv_cuda);
  m.impl("pair_sq_dist", &pair_sq_dist_cuda);
  m.impl("kernel_mix", &kernel_mix_cuda);
  m.impl("kernel_mix_out", &kernel_mix_out_cuda);
  m.impl("kernel_mix_", &kernel_mix_inplace_cuda);
  m.impl("interpolate", &interpolate_cuda);
  m.impl("interpolate_backward", &interpolate_backward_cuda);
}

}  // namespace kmixup::cuda
