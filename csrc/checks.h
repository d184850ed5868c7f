// Contract checks and layout helpers shared by the CPU and CUDA bindings. The public
// Python API validates user input with friendlier messages first; these guard the ops
// when they are called directly through torch.ops.kmixup.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "special.h"

namespace kmixup {

// The data dtypes every kernel takes: float32, float64, float16 and bfloat16 (not float8).
inline void check_float(const at::Tensor& t, const char* name) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf ||
                       dtype == at::kBFloat16,
                   "kmixup: ", name, " must be float32, float64, float16 or bfloat16, got ",
                   dtype);
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), "kmixup: ", name, " must be on ", ref.device(),
              ", got ", t.device());
}

// x [B, ...] floating with B >= 1, perm int64 [B] on x's device.
inline void check_batch_and_perm(const at::Tensor& x, const char* x_name, const at::Tensor& perm) {
  check_float(x, x_name);
  TORCH_CHECK(x.dim() >= 1, "kmixup: ", x_name, " must have a batch dimension");
  TORCH_CHECK(perm.scalar_type() == at::kLong, "kmixup: perm must be int64, got ",
              perm.scalar_type());
  TORCH_CHECK(perm.dim() == 1 && perm.size(0) == x.size(0), "kmixup: perm must have shape [",
              x.size(0), "], got ", perm.sizes());
  check_same_device(perm, "perm", x);
}

// perm values become row addresses: every kernel that reads a row through perm checks them
// first (B integers), whatever the Python side validated. The CPU kernels call this; the
// CUDA kernels check each value on the device where they use it.
inline void check_perm_range(const int64_t* perm, int64_t batch) {
  for (int64_t i = 0; i < batch; ++i) {
    TORCH_CHECK_INDEX(perm[i] >= 0 && perm[i] < batch, "kmixup: perm values must lie in [0, ",
                      batch, "), got perm[", i, "] = ", perm[i]);
  }
}

// coeff / lam: float32 or float64 [B] on x's device.
inline void check_coefficients(const at::Tensor& c, const char* name, const at::Tensor& x) {
  TORCH_CHECK(c.scalar_type() == at::kFloat || c.scalar_type() == at::kDouble, "kmixup: ", name,
              " must be float32 or float64, got ", c.scalar_type());
  TORCH_CHECK(c.dim() == 1 && c.size(0) == x.size(0), "kmixup: ", name, " must have shape [",
              x.size(0), "], got ", c.sizes());
  check_same_device(c, name, x);
}

inline int parse_warping(const std::string& warping) {
  if (warping == "beta_cdf") return kBetaCdf;
  if (warping == "inverse_beta_cdf") return kInverseBetaCdf;
  if (warping == "none") return kNone;
  TORCH_CHECK(false, "kmixup: warping must be 'beta_cdf', 'inverse_beta_cdf' or 'none', got '",
              warping, "'");
}

// The inputs of kernel_mix; returns the warping as a kmixup::Warping.
inline int check_kernel_mix(const at::Tensor& x, const at::Tensor& perm, const at::Tensor& lam,
                            const at::Tensor& feats, const std::string& warping) {
  check_batch_and_perm(x, "x", perm);
  check_coefficients(lam, "lam", x);
  check_float(feats, "feats");
  check_same_device(feats, "feats", x);
  TORCH_CHECK(feats.dim() >= 1 && feats.size(0) == x.size(0),
              "kmixup: feats must have batch size ", x.size(0), ", got shape ", feats.sizes());
  return parse_warping(warping);
}

// a, b and t (x or y) elementwise inputs of betainc / betaincinv.
inline void check_elementwise(const at::Tensor& a, const at::Tensor& b, const at::Tensor& t,
                              const char* t_name) {
  const std::pair<const at::Tensor&, const char*> inputs[] = {{a, "a"}, {b, "b"}, {t, t_name}};
  for (const auto& [tensor, name] : inputs) {
    TORCH_CHECK(tensor.scalar_type() == at::kFloat || tensor.scalar_type() == at::kDouble,
                "kmixup: ", name, " must be float32 or float64, got ", tensor.scalar_type());
    TORCH_CHECK(tensor.scalar_type() == t.scalar_type() && tensor.sizes() == t.sizes(),
                "kmixup: a, b and ", t_name, " must share shape and dtype (broadcast first)");
    check_same_device(tensor, name, t);
  }
}


// The memory format an output of x keeps: channels_last(_3d) when x is in it, otherwise
// contiguous. Each sample is then one dense block, so the kernels walk rows in memory
// order: distances and interpolation do not depend on the order inside a row.
inline at::MemoryFormat row_memory_format(const at::Tensor& x) {
  if (!x.is_contiguous()) {
    if (x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast))
      return at::MemoryFormat::ChannelsLast;
    if (x.dim() == 5 && x.is_contiguous(at::MemoryFormat::ChannelsLast3d))
      return at::MemoryFormat::ChannelsLast3d;
  }
  return at::MemoryFormat::Contiguous;
}

// x with each sample a dense block (a copy only when x is in neither format).
inline at::Tensor row_dense(const at::Tensor& x) {
  return x.contiguous(row_memory_format(x));
}

// The dtype of distances and coefficients: float32 for float/half/bfloat16 data, float64
// for double.
inline at::ScalarType acc_dtype(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// out= of kernel_mix: x's shape, dtype and device, row-dense in x's layout, and not
// overlapping x (in-place mixing is kernel_mix_).
inline void check_out(const at::Tensor& out, const at::Tensor& x) {
  TORCH_CHECK(out.sizes() == x.sizes() && out.scalar_type() == x.scalar_type(),
              "kmixup: out must have x's shape ", x.sizes(), " and dtype ", x.scalar_type(),
              ", got ", out.sizes(), " ", out.scalar_type());
  check_same_device(out, "out", x);
  TORCH_CHECK(out.is_contiguous(row_memory_format(x)),
              "kmixup: out must be contiguous in x's memory format");
  TORCH_CHECK(!out.is_alias_of(x), "kmixup: out must not overlap x; mix in place with kernel_mix_");
}

// In-place mixing walks whole rows: x must be contiguous or channels_last.
inline void check_in_place(const at::Tensor& x) {
  check_float(x, "x");
  TORCH_CHECK(x.dim() >= 1 && x.is_contiguous(row_memory_format(x)),
              "kmixup: x must be contiguous (or channels_last) to be mixed in place");
}

inline int64_t row_length(const at::Tensor& x) {
  return x.size(0) == 0 ? 0 : x.numel() / x.size(0);
}

}  // namespace kmixup
