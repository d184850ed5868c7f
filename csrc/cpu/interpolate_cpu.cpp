// CPU kernels of interpolate and its adjoint. The backward gathers through the inverse
// permutation, so every output row is written by one task and nothing accumulates.
#include <torch/csrc/stable/library.h>

#include <vector>

#include "checks.h"
#include "cpu/rows.h"

namespace kmixup::cpu {
namespace {

Tensor interpolate_cpu(const Tensor& x, const Tensor& perm, const Tensor& coeff) {
  check_batch_and_perm(x, "x", perm);
  check_coefficients(coeff, "coeff", x);
  const Tensor perm_c = contiguous_in(perm);
  check_perm_range(perm_c.const_data_ptr<int64_t>(), x.size(0));
  const Tensor rows = row_dense(x);
  Tensor out = empty_rows_like(rows);
  mix_batch(rows, perm_c.const_data_ptr<int64_t>(), coeff, /*adjoint=*/false, out);
  return out;
}

// grad_x[j] = coeff[j] * grad[j] + (1 - coeff[q]) * grad[q] with q the sample whose partner
// is j (perm[q] == j). That single q exists only for a permutation: any other index vector
// is refused here rather than given a wrong gradient.
Tensor interpolate_backward_cpu(const Tensor& grad, const Tensor& perm, const Tensor& coeff) {
  check_batch_and_perm(grad, "grad", perm);
  check_coefficients(coeff, "coeff", grad);
  const Tensor perm_c = contiguous_in(perm);
  const int64_t batch = grad.size(0);
  const int64_t* partner = perm_c.const_data_ptr<int64_t>();
  check_perm_range(partner, batch);
  std::vector<int64_t> source(batch, -1);
  for (int64_t i = 0; i < batch; ++i) {
    KMIXUP_CHECK_VALUE(source[partner[i]] < 0, "kmixup: perm must be a permutation of 0..",
                       batch - 1, " for the gradient of interpolate/kernel_mix, but ",
                       partner[i], " appears twice");
    source[partner[i]] = i;
  }
  const Tensor rows = row_dense(grad);
  Tensor out = empty_rows_like(rows);
  mix_batch(rows, source.data(), coeff, /*adjoint=*/true, out);
  return out;
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(kmixup_C, CPU, m) {
  m.impl("interpolate", TORCH_BOX(&interpolate_cpu));
  m.impl("interpolate_backward", TORCH_BOX(&interpolate_backward_cpu));
}

}  // namespace kmixup::cpu
