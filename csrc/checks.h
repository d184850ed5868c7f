// Contract checks and layout helpers shared by the CPU and CUDA bindings. The public
// Python API validates user input with friendlier messages first; these guard the ops
// when they are called directly through torch.ops.kmixup.
//
// Everything here is on the LibTorch stable ABI (torch/csrc/stable, torch/headeronly):
// the extension links no at::/c10::/torch:: C++ symbol, so one build loads under every
// torch from TORCH_TARGET_VERSION (setup.py) on.
#pragma once

#include <torch/csrc/stable/c/shim.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/Dispatch.h>
#include <torch/headeronly/core/MemoryFormat.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/shim_utils.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "special.h"

namespace kmixup {

using torch::headeronly::MemoryFormat;
using torch::headeronly::ScalarType;
using torch::stable::Tensor;

// Errors. Python sees a C++ standard exception thrown by a kernel as the matching builtin:
// std::out_of_range as IndexError, std::invalid_argument as ValueError, any other as
// RuntimeError. No standard exception becomes a TypeError, so a type error is a
// std::runtime_error whose message starts with kTypeErrorPrefix; kmixup/_ops.py, which
// calls the compiled kernels, raises it as a TypeError without the prefix.
inline constexpr std::string_view kTypeErrorPrefix = "kmixup TypeError: ";

template <typename... Args>
std::string message(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

#define KMIXUP_CHECK_AS(exception, cond, ...)                    \
  do {                                                           \
    if (!(cond)) throw exception(::kmixup::message(__VA_ARGS__)); \
  } while (false)
#define KMIXUP_CHECK(cond, ...) KMIXUP_CHECK_AS(std::runtime_error, cond, __VA_ARGS__)
#define KMIXUP_CHECK_INDEX(cond, ...) KMIXUP_CHECK_AS(std::out_of_range, cond, __VA_ARGS__)
#define KMIXUP_CHECK_VALUE(cond, ...) KMIXUP_CHECK_AS(std::invalid_argument, cond, __VA_ARGS__)
#define KMIXUP_CHECK_TYPE(cond, ...) \
  KMIXUP_CHECK_AS(std::runtime_error, cond, ::kmixup::kTypeErrorPrefix, __VA_ARGS__)

// Runs the lambda with scalar_t bound to the dtype's C++ type: float or double
// (FLOAT_DOUBLE), or also c10::Half and c10::BFloat16 (FLOATING).
#define KMIXUP_DISPATCH_FLOAT_DOUBLE(TYPE, NAME, ...)                     \
  THO_DISPATCH_SWITCH(TYPE, NAME,                                         \
                      THO_DISPATCH_CASE(::kmixup::ScalarType::Float, __VA_ARGS__)  \
                      THO_DISPATCH_CASE(::kmixup::ScalarType::Double, __VA_ARGS__))
#define KMIXUP_DISPATCH_FLOATING(TYPE, NAME, ...)                         \
  THO_DISPATCH_SWITCH(TYPE, NAME,                                         \
                      THO_DISPATCH_CASE(::kmixup::ScalarType::Float, __VA_ARGS__)  \
                      THO_DISPATCH_CASE(::kmixup::ScalarType::Double, __VA_ARGS__) \
                      THO_DISPATCH_CASE(::kmixup::ScalarType::Half, __VA_ARGS__)   \
                      THO_DISPATCH_CASE(::kmixup::ScalarType::BFloat16, __VA_ARGS__))

// For messages: a device as torch prints it ("cpu", "cuda:0") and a shape as "[2, 3]".
inline std::string device_name(const torch::stable::Device& device) {
  using torch::headeronly::DeviceType;
  const DeviceType type = device.type();
  std::string name = type == DeviceType::CPU    ? "cpu"
                     : type == DeviceType::CUDA ? "cuda"
                     : type == DeviceType::Meta ? "meta"
                                                : message("device type ", static_cast<int>(type));
  return device.index() < 0 ? name : message(name, ':', static_cast<int>(device.index()));
}

inline std::string shape(const Tensor& t) {
  std::string out = "[";
  for (int64_t d = 0; d < t.dim(); ++d) out += message(d ? ", " : "", t.size(d));
  return out + "]";
}

inline bool same_shape(const Tensor& a, const Tensor& b) {
  if (a.dim() != b.dim()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) != b.size(d)) return false;
  }
  return true;
}

inline bool same_strides(const Tensor& a, const Tensor& b) {
  if (a.dim() != b.dim()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

// The data dtypes every kernel takes: float32, float64, float16 and bfloat16 (not float8).
inline void check_float(const Tensor& t, const char* name) {
  const auto dtype = t.scalar_type();
  KMIXUP_CHECK_TYPE(dtype == ScalarType::Float || dtype == ScalarType::Double ||
                        dtype == ScalarType::Half || dtype == ScalarType::BFloat16,
                    "kmixup: ", name, " must be float32, float64, float16 or bfloat16, got ",
                    dtype);
}

inline void check_same_device(const Tensor& t, const char* name, const Tensor& ref) {
  KMIXUP_CHECK(t.device() == ref.device(), "kmixup: ", name, " must be on ",
               device_name(ref.device()), ", got ", device_name(t.device()));
}

// x [B, ...] floating with B >= 1, perm int64 [B] on x's device.
inline void check_batch_and_perm(const Tensor& x, const char* x_name, const Tensor& perm) {
  check_float(x, x_name);
  KMIXUP_CHECK(x.dim() >= 1, "kmixup: ", x_name, " must have a batch dimension");
  KMIXUP_CHECK(perm.scalar_type() == ScalarType::Long, "kmixup: perm must be int64, got ",
               perm.scalar_type());
  KMIXUP_CHECK(perm.dim() == 1 && perm.size(0) == x.size(0), "kmixup: perm must have shape [",
               x.size(0), "], got ", shape(perm));
  check_same_device(perm, "perm", x);
}

// perm values become row addresses: every kernel that reads a row through perm checks them
// first (B integers), whatever the Python side validated. The CPU kernels call this; the
// CUDA kernels check each value on the device where they use it.
inline void check_perm_range(const int64_t* perm, int64_t batch) {
  for (int64_t i = 0; i < batch; ++i) {
    KMIXUP_CHECK_INDEX(perm[i] >= 0 && perm[i] < batch, "kmixup: perm values must lie in [0, ",
                       batch, "), got perm[", i, "] = ", perm[i]);
  }
}

// coeff / lam: float32 or float64 [B] on x's device.
inline void check_coefficients(const Tensor& c, const char* name, const Tensor& x) {
  KMIXUP_CHECK(c.scalar_type() == ScalarType::Float || c.scalar_type() == ScalarType::Double,
               "kmixup: ", name, " must be float32 or float64, got ", c.scalar_type());
  KMIXUP_CHECK(c.dim() == 1 && c.size(0) == x.size(0), "kmixup: ", name, " must have shape [",
               x.size(0), "], got ", shape(c));
  check_same_device(c, name, x);
}

// A str argument as a registered kernel takes it: the string's handle, passed through as it
// comes. torch 2.13's stable-ABI unboxing of a std::string or std::string_view parameter
// copies the string out of a `new std::string` that it never deletes (fixed in torch 2.14):
// 48 bytes lost per kernel_mix call, and on the CPU the lost block could split the freed
// block of the last call's output, so that a loop of kernel_mix calls grew by a whole batch
// per call. A kernel takes the string out with take_string, which deletes the handle, as
// its first statement (before any check can throw).
using StrArg = StringHandle;

inline std::string take_string(StrArg arg) {
  size_t length = 0;
  const char* data = nullptr;
  TORCH_ERROR_CODE_CHECK(torch_string_length(arg, &length));
  TORCH_ERROR_CODE_CHECK(torch_string_c_str(arg, &data));
  std::string value(data, length);
  TORCH_ERROR_CODE_CHECK(torch_delete_string(arg));
  return value;
}

inline int parse_warping(std::string_view warping) {
  if (warping == "beta_cdf") return kBetaCdf;
  if (warping == "inverse_beta_cdf") return kInverseBetaCdf;
  if (warping == "none") return kNone;
  throw std::runtime_error(message(
      "kmixup: warping must be 'beta_cdf', 'inverse_beta_cdf' or 'none', got '", warping, "'"));
}

// A setting that must be finite and > 0 (kmixup/_checks.py's check_positive).
inline void check_positive(double value, const char* name) {
  KMIXUP_CHECK_VALUE(std::isfinite(value) && value > 0, "kmixup: ", name,
                     " must be finite and > 0, got ", value);
}

// lam values, read on the host by the CPU kernels: outside [0, 1] (or NaN) the warps are
// undefined and would write NaN rows. The CUDA kernels leave them to validate=True, which
// would otherwise cost a host sync.
inline void check_lam_range(const double* lam, int64_t batch) {
  for (int64_t i = 0; i < batch; ++i) {
    KMIXUP_CHECK_VALUE(lam[i] >= 0 && lam[i] <= 1,
                       "kmixup: lam values must lie in [0, 1], got lam[", i, "] = ", lam[i]);
  }
}

// The inputs of kernel_mix; returns the warping as a kmixup::Warping. tau_max and tau_std
// are host numbers, so they are checked on every device (a zero or non-finite one would
// turn every coefficient into NaN).
inline int check_kernel_mix(const Tensor& x, const Tensor& perm, const Tensor& lam,
                            const Tensor& feats, double tau_max, double tau_std,
                            std::string_view warping) {
  check_batch_and_perm(x, "x", perm);
  check_coefficients(lam, "lam", x);
  check_positive(tau_max, "tau_max");
  check_positive(tau_std, "tau_std");
  check_float(feats, "feats");
  check_same_device(feats, "feats", x);
  KMIXUP_CHECK(feats.dim() >= 1 && feats.size(0) == x.size(0),
               "kmixup: feats must have batch size ", x.size(0), ", got shape ", shape(feats));
  return parse_warping(warping);
}

// a, b and t (x or y) elementwise inputs of betainc / betaincinv.
inline void check_elementwise(const Tensor& a, const Tensor& b, const Tensor& t,
                              const char* t_name) {
  const std::pair<const Tensor&, const char*> inputs[] = {{a, "a"}, {b, "b"}, {t, t_name}};
  for (const auto& [tensor, name] : inputs) {
    KMIXUP_CHECK(
        tensor.scalar_type() == ScalarType::Float || tensor.scalar_type() == ScalarType::Double,
        "kmixup: ", name, " must be float32 or float64, got ", tensor.scalar_type());
    KMIXUP_CHECK(tensor.scalar_type() == t.scalar_type() && same_shape(tensor, t),
                 "kmixup: a, b and ", t_name, " must share shape and dtype (broadcast first)");
    check_same_device(tensor, name, t);
  }
}

// Whether t is dense in `format`, as Tensor.is_contiguous(memory_format=...) answers it:
// a channels-last layout orders the strides C, W, H(, D), N from the innermost, sizes of 1
// not counting.
inline bool is_contiguous_in(const Tensor& t, MemoryFormat format) {
  if (format == MemoryFormat::Contiguous) return t.is_contiguous();
  const bool is_3d = format == MemoryFormat::ChannelsLast3d;
  if (t.dim() != (is_3d ? 5 : 4)) return false;
  constexpr int64_t kOrder2d[] = {1, 3, 2, 0}, kOrder3d[] = {1, 4, 3, 2, 0};
  int64_t expected = 1;
  for (int64_t i = 0; i < t.dim(); ++i) {
    const int64_t d = is_3d ? kOrder3d[i] : kOrder2d[i];
    if (t.size(d) == 1) continue;
    if (t.stride(d) != expected) return false;
    expected *= t.size(d);
  }
  return true;
}

// The memory format an output of x keeps: channels_last(_3d) when x is in it, otherwise
// contiguous. Each sample is then one dense block, so the kernels walk rows in memory
// order: distances and interpolation do not depend on the order inside a row.
inline MemoryFormat row_memory_format(const Tensor& x) {
  if (!x.is_contiguous()) {
    if (x.dim() == 4 && is_contiguous_in(x, MemoryFormat::ChannelsLast))
      return MemoryFormat::ChannelsLast;
    if (x.dim() == 5 && is_contiguous_in(x, MemoryFormat::ChannelsLast3d))
      return MemoryFormat::ChannelsLast3d;
  }
  return MemoryFormat::Contiguous;
}

// t dense in `format`, and t dense (contiguous) of `dtype`: t itself when it already is.
// Unlike their at::Tensor twins, the stable ops always go through the dispatcher (about a
// microsecond each), even when they have nothing to do.
inline Tensor contiguous_in(const Tensor& t, MemoryFormat format = MemoryFormat::Contiguous) {
  return is_contiguous_in(t, format) ? t : torch::stable::contiguous(t, format);
}

inline Tensor contiguous_as(const Tensor& t, ScalarType dtype) {
  return contiguous_in(t.scalar_type() == dtype ? t : torch::stable::to(t, dtype));
}

// x with each sample a dense block (a copy only when x is in neither format).
inline Tensor row_dense(const Tensor& x) { return contiguous_in(x, row_memory_format(x)); }

// An uninitialised tensor of x's shape and device, row-dense in x's layout.
inline Tensor empty_rows(const Tensor& x, ScalarType dtype) {
  return torch::stable::empty(x.sizes(), dtype, std::nullopt, x.device(), std::nullopt,
                              row_memory_format(x));
}

// An uninitialised 1-D tensor of n elements on t's device.
inline Tensor empty_vector(int64_t n, ScalarType dtype, const Tensor& t) {
  return torch::stable::empty({n}, dtype, std::nullopt, t.device());
}

// The dtype of distances and coefficients: float32 for float/half/bfloat16 data, float64
// for double.
inline ScalarType acc_dtype(const Tensor& t) {
  return t.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
}

// The bytes [first, last) that t's elements span (empty for an empty t).
inline std::pair<uintptr_t, uintptr_t> byte_span(const Tensor& t) {
  const auto first = reinterpret_cast<uintptr_t>(t.data_ptr());
  if (t.numel() == 0) return {first, first};
  int64_t last = 0;  // offset of the last element, in elements
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  return {first, first + (last + 1) * t.element_size()};
}

inline bool overlap(const Tensor& a, const Tensor& b) {
  const auto [a_first, a_last] = byte_span(a);
  const auto [b_first, b_last] = byte_span(b);
  return a_first < b_last && b_first < a_last;
}

// out= of kernel_mix: x's shape, dtype and device, row-dense in x's layout, and not
// overlapping x (in-place mixing is kernel_mix_).
inline void check_out(const Tensor& out, const Tensor& x) {
  KMIXUP_CHECK(same_shape(out, x) && out.scalar_type() == x.scalar_type(),
               "kmixup: out must have x's shape ", shape(x), " and dtype ", x.scalar_type(),
               ", got ", shape(out), " ", out.scalar_type());
  check_same_device(out, "out", x);
  KMIXUP_CHECK(is_contiguous_in(out, row_memory_format(x)),
               "kmixup: out must be contiguous in x's memory format");
  KMIXUP_CHECK(!overlap(out, x), "kmixup: out must not overlap x; mix in place with kernel_mix_");
}

// In-place mixing walks whole rows: x must be contiguous or channels_last.
inline void check_in_place(const Tensor& x) {
  check_float(x, "x");
  KMIXUP_CHECK(x.dim() >= 1 && is_contiguous_in(x, row_memory_format(x)),
               "kmixup: x must be contiguous (or channels_last) to be mixed in place");
}

inline int64_t row_length(const Tensor& x) {
  return x.size(0) == 0 ? 0 : x.numel() / x.size(0);
}

}  // namespace kmixup
