// Operator schemas of the compiled kernels, in the namespace kmixup_C. Kernels are
// registered per device in csrc/cpu and csrc/cuda. kmixup/_ops.py declares the public ops,
// torch.ops.kmixup, with the same schemas, and serves each with the kmixup_C kernel where
// there is one (turning the kernels' type errors into TypeError, see csrc/checks.h), else
// with its pure-PyTorch kernel; it also adds the fake (meta) functions and autograd.
//
// Contracts shared by every backend (kmixup/functional.py validates user input first):
//   betainc, betaincinv: a, b and x/y of one shape and one floating dtype; elementwise,
//     evaluated in float64, returned in that dtype.
//   pair_sq_dist: f [B, ...] floating, perm int64 [B] -> [B] float32 (float64 for f64).
//   kernel_mix: x [B, ...] floating, perm int64 [B], lam [B] float32/float64, feats
//     [B, ...] floating -> (mixed like x, coeff [B] float32, float64 for float64 x).
//   kernel_mix_out: kernel_mix writing the mixed batch into out (x's shape and dtype,
//     contiguous in x's layout, not overlapping x); returns coeff.
//   kernel_mix_: kernel_mix in place: x (contiguous or channels_last) becomes the mixed
//     batch; returns coeff. feats may be x: every distance is taken before any row moves.
//   interpolate: out[i] = coeff[i] * x[i] + (1 - coeff[i]) * x[perm[i]], exact copies
//     where coeff is 1 or 0; interpolate_backward is its adjoint in x.
//   Outputs keep x's memory format (contiguous or channels_last).

// The module is built against the limited Python API (one binary for every CPython) and
// the LibTorch stable ABI (one binary for every torch from TORCH_TARGET_VERSION on).
#include <Python.h>
#include <torch/csrc/stable/library.h>

extern "C" {
// `import kmixup._C` loads this library, which runs the registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}

STABLE_TORCH_LIBRARY(kmixup_C, m) {
  m.def("betainc(Tensor a, Tensor b, Tensor x) -> Tensor");
  m.def("betaincinv(Tensor a, Tensor b, Tensor y) -> Tensor");
  m.def("pair_sq_dist(Tensor f, Tensor perm) -> Tensor");
  m.def(
      "kernel_mix(Tensor x, Tensor perm, Tensor lam, Tensor feats, float tau_max, "
      "float tau_std, str warping) -> (Tensor, Tensor)");
  m.def(
      "kernel_mix_out(Tensor x, Tensor perm, Tensor lam, Tensor feats, float tau_max, "
      "float tau_std, str warping, Tensor(a!) out) -> Tensor");
  m.def(
      "kernel_mix_(Tensor(a!) x, Tensor perm, Tensor lam, Tensor feats, float tau_max, "
      "float tau_std, str warping) -> Tensor");
  m.def("interpolate(Tensor x, Tensor perm, Tensor coeff) -> Tensor");
  m.def("interpolate_backward(Tensor grad, Tensor perm, Tensor coeff) -> Tensor");
}
