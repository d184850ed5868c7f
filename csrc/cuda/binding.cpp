// CUDA kernels of every kmixup op (schemas in csrc/kmixup.cpp): contract checks, layout,
// outputs and workspace from the caching allocator, then one launcher call on the current
// stream. Nothing here reads device memory or synchronises the host, so the ops run under
// torch.cuda.set_sync_debug_mode("error") and inside CUDA graph capture. Like the CPU
// kernels, this is on the LibTorch stable ABI only (csrc/checks.h).
#include <cuda_runtime_api.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/macros.h>

#include <string_view>
#include <tuple>

#include "checks.h"
#include "cuda/launchers.h"

namespace kmixup::cuda {
namespace {

void check_cuda(const Tensor& t, const char* name) {
  KMIXUP_CHECK(t.is_cuda(), "kmixup: ", name, " must be a CUDA tensor, got ",
               device_name(t.device()));
}

DType dtype_of(const Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case ScalarType::Float:
      return DType::kFloat32;
    case ScalarType::Double:
      return DType::kFloat64;
    case ScalarType::Half:
      return DType::kFloat16;
    case ScalarType::BFloat16:
      return DType::kBFloat16;
    default:
      throw std::runtime_error(message("kmixup: ", name,
                                       " must be float32, float64, float16 or bfloat16 on "
                                       "CUDA, got ",
                                       t.scalar_type()));
  }
}

Coefficients coefficients_of(const Tensor& c) {
  return {c.const_data_ptr(), c.scalar_type() == ScalarType::Double, c.stride(0)};
}

// Uninitialised device bytes from the caching allocator (no cudaMalloc once it is warm, and
// graph-safe: captured allocations come from the graph's private pool).
Tensor workspace(size_t bytes, const Tensor& like) {
  if (bytes == 0) return Tensor();
  return empty_vector(static_cast<int64_t>(bytes), ScalarType::Byte, like);
}

void* data_or_null(const Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

// The current stream of t's device.
cudaStream_t current_stream(const Tensor& t) {
  return static_cast<cudaStream_t>(
      torch::stable::accelerator::getCurrentStream(t.get_device_index()).nativeHandle());
}

// A batch beyond the row kernels' grid is refused here, naming the limit, rather than as the
// launcher's bare cudaErrorInvalidValue.
void check_rows_fit(int64_t batch, int64_t row_len, DType dtype, const char* name) {
  KMIXUP_CHECK(rows_fit(batch, row_len, dtype), "kmixup: ", name, " has ", batch, " rows of ",
               row_len, " elements, more than the ", max_rows(row_len, dtype),
               " rows of that length that one CUDA launch takes (a grid holds at most 2^31 - 1 "
               "blocks); mix it in smaller batches");
}

Tensor pair_sq_dist_cuda(const Tensor& f, const Tensor& perm) {
  check_batch_and_perm(f, "f", perm);
  check_cuda(f, "f");
  const DType dtype = dtype_of(f, "f");
  const torch::stable::accelerator::DeviceGuard guard(f.get_device_index());
  const Tensor rows = row_dense(f);
  const Tensor perm_c = contiguous_in(perm);
  const int64_t batch = f.size(0), row = row_length(rows);
  Tensor out = empty_vector(batch, acc_dtype(f), f);
  if (batch == 0) return out;
  check_rows_fit(batch, row, dtype, "f");
  const Tensor ws = workspace(pair_sq_dist_workspace_bytes(batch, row, dtype), f);
  STD_CUDA_CHECK(launch_pair_sq_dist(
      {rows.const_data_ptr(), dtype, batch, row, perm_c.const_data_ptr<int64_t>(),
       out.data_ptr()},
      data_or_null(ws), current_stream(f)));
  return out;
}

// The fused op into out, a row-dense tensor in x's layout that does not overlap x (the
// rows of a block are read while other blocks write theirs). Returns the coefficients.
Tensor kernel_mix_into(const Tensor& x, const Tensor& perm, const Tensor& lam,
                       const Tensor& feats, double tau_max, double tau_std,
                       std::string_view warping_name, const Tensor& out) {
  const int warping = check_kernel_mix(x, perm, lam, feats, tau_max, tau_std, warping_name);
  check_cuda(x, "x");
  const DType x_dtype = dtype_of(x, "x"), feats_dtype = dtype_of(feats, "feats");
  const torch::stable::accelerator::DeviceGuard guard(x.get_device_index());
  const int64_t batch = x.size(0);
  const Tensor x_rows = row_dense(x);
  // With warping "none" the features are never read: no copy for them. Features that are x
  // (the default: Python passes x.detach(), another tensor over the same memory) share x's
  // row-dense copy rather than making a second one when x is in neither layout.
  const bool feats_is_x = feats.data_ptr() == x.data_ptr() &&
                          feats.scalar_type() == x.scalar_type() && same_shape(feats, x) &&
                          same_strides(feats, x);
  const Tensor f_rows = warping == kNone ? feats : feats_is_x ? x_rows : row_dense(feats);
  const Tensor perm_c = contiguous_in(perm);
  Tensor coeff = empty_vector(batch, acc_dtype(x), x);
  if (batch == 0) return coeff;
  const int64_t f_row = row_length(f_rows);
  check_rows_fit(batch, row_length(x_rows), x_dtype, "x");
  if (warping != kNone) check_rows_fit(batch, f_row, feats_dtype, "feats");
  const Tensor ws = workspace(kernel_mix_workspace_bytes(batch, f_row, feats_dtype, warping), x);
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
  STD_CUDA_CHECK(launch_kernel_mix(args, data_or_null(ws), current_stream(x)));
  return coeff;
}

std::tuple<Tensor, Tensor> kernel_mix_cuda(const Tensor& x, const Tensor& perm,
                                           const Tensor& lam, const Tensor& feats,
                                           double tau_max, double tau_std, StrArg warping) {
  const std::string warping_name = take_string(warping);
  check_float(x, "x");
  Tensor mixed = empty_rows(x, x.scalar_type());
  Tensor coeff = kernel_mix_into(x, perm, lam, feats, tau_max, tau_std, warping_name, mixed);
  return {mixed, coeff};
}

Tensor kernel_mix_out_cuda(const Tensor& x, const Tensor& perm, const Tensor& lam,
                           const Tensor& feats, double tau_max, double tau_std, StrArg warping,
                           Tensor& out) {
  const std::string warping_name = take_string(warping);
  check_out(out, x);
  return kernel_mix_into(x, perm, lam, feats, tau_max, tau_std, warping_name, out);
}

// Blocks mix rows concurrently, so x[perm[i]] may already be overwritten when row i reads
// it: the GPU mixes into a fresh buffer and copies back (on the CPU the cycle walk makes
// true in-place mixing safe).
Tensor kernel_mix_inplace_cuda(Tensor& x, const Tensor& perm, const Tensor& lam,
                               const Tensor& feats, double tau_max, double tau_std,
                               StrArg warping) {
  const std::string warping_name = take_string(warping);
  check_in_place(x);
  Tensor mixed = empty_rows(x, x.scalar_type());
  Tensor coeff = kernel_mix_into(x, perm, lam, feats, tau_max, tau_std, warping_name, mixed);
  torch::stable::copy_(x, mixed);
  return coeff;
}

// interpolate, or its adjoint (which first inverts perm in a workspace).
Tensor mix_rows(const Tensor& x, const char* x_name, const Tensor& perm, const Tensor& coeff,
                bool backward) {
  check_batch_and_perm(x, x_name, perm);
  check_cuda(x, x_name);
  check_coefficients(coeff, "coeff", x);
  const DType dtype = dtype_of(x, x_name);
  const torch::stable::accelerator::DeviceGuard guard(x.get_device_index());
  const Tensor rows = row_dense(x);
  const Tensor perm_c = contiguous_in(perm);
  check_rows_fit(x.size(0), row_length(rows), dtype, x_name);
  Tensor out = torch::stable::empty_like(rows);
  const InterpolateArgs args{rows.const_data_ptr(), dtype,        x.size(0),
                             row_length(rows),      perm_c.const_data_ptr<int64_t>(),
                             coefficients_of(coeff), out.data_ptr()};
  if (!backward) {
    if (out.numel() > 0) STD_CUDA_CHECK(launch_interpolate(args, current_stream(x)));
    return out;
  }
  const Tensor ws = workspace(interpolate_backward_workspace_bytes(x.size(0)), x);
  STD_CUDA_CHECK(launch_interpolate_backward(args, data_or_null(ws), current_stream(x)));
  return out;
}

Tensor interpolate_cuda(const Tensor& x, const Tensor& perm, const Tensor& coeff) {
  return mix_rows(x, "x", perm, coeff, /*backward=*/false);
}

Tensor interpolate_backward_cuda(const Tensor& grad, const Tensor& perm, const Tensor& coeff) {
  return mix_rows(grad, "grad", perm, coeff, /*backward=*/true);
}

template <cudaError_t (*Launch)(const SpecialArgs&, cudaStream_t)>
Tensor special(const Tensor& a, const Tensor& b, const Tensor& t, const char* t_name) {
  check_elementwise(a, b, t, t_name);
  check_cuda(t, t_name);
  const torch::stable::accelerator::DeviceGuard guard(t.get_device_index());
  const Tensor a_c = contiguous_in(a), b_c = contiguous_in(b), t_c = contiguous_in(t);
  Tensor out = torch::stable::empty_like(t_c);
  if (out.numel() == 0) return out;
  STD_CUDA_CHECK(Launch({a_c.const_data_ptr(), b_c.const_data_ptr(), t_c.const_data_ptr(),
                         out.data_ptr(), dtype_of(t, t_name), out.numel()},
                        current_stream(t)));
  return out;
}

Tensor betainc_cuda(const Tensor& a, const Tensor& b, const Tensor& x) {
  return special<launch_betainc>(a, b, x, "x");
}

Tensor betaincinv_cuda(const Tensor& a, const Tensor& b, const Tensor& y) {
  return special<launch_betaincinv>(a, b, y, "y");
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(kmixup_C, CUDA, m) {
  m.impl("betainc", TORCH_BOX(&betainc_cuda));
  m.impl("betaincinv", TORCH_BOX(&betaincinv_cuda));
  m.impl("pair_sq_dist", TORCH_BOX(&pair_sq_dist_cuda));
  m.impl("kernel_mix", TORCH_BOX(&kernel_mix_cuda));
  m.impl("kernel_mix_out", TORCH_BOX(&kernel_mix_out_cuda));
  m.impl("kernel_mix_", TORCH_BOX(&kernel_mix_inplace_cuda));
  m.impl("interpolate", TORCH_BOX(&interpolate_cuda));
  m.impl("interpolate_backward", TORCH_BOX(&interpolate_backward_cuda));
}

}  // namespace kmixup::cuda
