// CPU kernels of betainc and betaincinv: the scalar functions of special.h, elementwise.
#include <torch/csrc/stable/library.h>

#include "checks.h"

namespace kmixup::cpu {
namespace {

template <double (*Fn)(double, double, double)>
Tensor elementwise(const Tensor& a, const Tensor& b, const Tensor& t, const char* t_name) {
  check_elementwise(a, b, t, t_name);
  const Tensor a_c = contiguous_in(a), b_c = contiguous_in(b), t_c = contiguous_in(t);
  Tensor out = torch::stable::empty_like(t_c);
  KMIXUP_DISPATCH_FLOAT_DOUBLE(t.scalar_type(), "kmixup_special", [&] {
    const scalar_t* pa = a_c.const_data_ptr<scalar_t>();
    const scalar_t* pb = b_c.const_data_ptr<scalar_t>();
    const scalar_t* pt = t_c.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    // Each element costs from tens of nanoseconds to microseconds: small grains.
    torch::stable::parallel_for(0, t_c.numel(), 64, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) po[i] = static_cast<scalar_t>(Fn(pa[i], pb[i], pt[i]));
    });
  });
  return out;
}

Tensor betainc_cpu(const Tensor& a, const Tensor& b, const Tensor& x) {
  return elementwise<betainc>(a, b, x, "x");
}

Tensor betaincinv_cpu(const Tensor& a, const Tensor& b, const Tensor& y) {
  return elementwise<betaincinv>(a, b, y, "y");
}

}  // namespace

STABLE_TORCH_LIBRARY_IMPL(kmixup_C, CPU, m) {
  m.impl("betainc", TORCH_BOX(&betainc_cpu));
  m.impl("betaincinv", TORCH_BOX(&betaincinv_cpu));
}

}  // namespace kmixup::cpu
