// CPU kernels of interpolate and its adjoint. The backward gathers through the inverse
// permutation, so every output row is written by one task and nothing accumulates.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "checks.h"
#include "cpu/rows.h"

namespace kmixup::cpu {
namespace {

at::Tensor check_and_prepare(const at::Tensor& x, const char* x_name, const at::Tensor& perm,
                             const at::Tensor& coeff) {
  check_batch_and_perm(x, x_name, perm);
  check_coefficients(coeff, "coeff", x);
  return row_dense(x);
}

at::Tensor interpolate_cpu(const at::Tensor& x, const at::Tensor& perm, const at::Tensor& coeff) {
  const at::Tensor x_rows = check_and_prepare(x, "x", perm, coeff);
  at::Tensor out = at::empty_like(x_rows);
  const int64_t batch = x.size(0), row = row_length(x_rows);
  const at::Tensor perm_c = perm.contiguous();
  const int64_t* partner = perm_c.const_data_ptr<int64_t>();
  KMIXUP_DISPATCH_FLOATING(x.scalar_type(), "kmixup_interpolate", [&] {
    using weight_t = acc_t<scalar_t>;
    const at::Tensor k_t = coeff.to(c10::CppTypeToScalarType<weight_t>::value).contiguous();
    const weight_t* k = k_t.const_data_ptr<weight_t>();
    const scalar_t* src = x_rows.const_data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, batch, rows_per_task(row), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        mix_row(src + i * row, k[i], src + partner[i] * row, weight_t(1) - k[i], dst + i * row,
                row);
      }
    });
  });
  return out;
}

// grad_x[j] = coeff[j] * grad[j] + (1 - coeff[q]) * grad[q] with q the sample whose partner
// is j (perm[q] == j).
at::Tensor interpolate_backward_cpu(const at::Tensor& grad, const at::Tensor& perm,
                                    const at::Tensor& coeff) {
  const at::Tensor grad_rows = check_and_prepare(grad, "grad", perm, coeff);
  at::Tensor grad_x = at::empty_like(grad_rows);
  const int64_t batch = grad.size(0), row = row_length(grad_rows);
  const at::Tensor perm_c = perm.contiguous();
  const int64_t* partner = perm_c.const_data_ptr<int64_t>();
  std::vector<int64_t> source(batch);
  for (int64_t i = 0; i < batch; ++i) source[partner[i]] = i;
  KMIXUP_DISPATCH_FLOATING(grad.scalar_type(), "kmixup_interpolate_backward", [&] {
    using weight_t = acc_t<scalar_t>;
    const at::Tensor k_t = coeff.to(c10::CppTypeToScalarType<weight_t>::value).contiguous();
    const weight_t* k = k_t.const_data_ptr<weight_t>();
    const scalar_t* g = grad_rows.const_data_ptr<scalar_t>();
    scalar_t* dst = grad_x.data_ptr<scalar_t>();
    at::parallel_for(0, batch, rows_per_task(row), [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int64_t q = source[j];
        mix_row(g + j * row, k[j], g + q * row, weight_t(1) - k[q], dst + j * row, row);
      }
    });
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(kmixup, CPU, m) {
  m.impl("interpolate", &interpolate_cpu);
  m.impl("interpolate_backward", &interpolate_backward_cpu);
}

}  // namespace kmixup::cpu
