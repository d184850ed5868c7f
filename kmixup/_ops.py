"""Registration of the ``torch.ops.kmixup`` operators.

The ops are declared here from :data:`SCHEMAS`. The compiled extension ``kmixup._C``
(built on the LibTorch stable ABI, so one build loads under every torch from
:data:`STABLE_ABI_TORCH` on) declares the same schemas in the namespace ``kmixup_C``
(``csrc/kmixup.cpp``; a test checks the two agree) with its CPU (and CUDA) kernels. This
module adds:

* each compiled kernel as the op's kernel for its device; a type error it reports (a
  RuntimeError with the prefix :data:`TYPE_ERROR_PREFIX`: the stable ABI passes only C++
  standard exceptions, and none of them becomes a TypeError) is raised as a TypeError;
* the pure-PyTorch kernels of :mod:`kmixup._torch_kernels` as the
  ``CompositeExplicitAutograd`` implementation, which serves every device that has no
  compiled kernel of its own (all of them when the extension is not built, does not load,
  or ``KMIXUP_PURE=1``);
* fake (meta) functions, so the ops trace under ``torch.compile`` and ``FakeTensor``;
* autograd: ``betainc``, ``betaincinv`` and ``pair_sq_dist`` are not differentiable
  (their outputs never require grad); ``interpolate`` and ``kernel_mix`` are linear in
  ``x``, their backward is ``interpolate_backward`` (a gather through the inverse
  permutation), whose own backward is ``interpolate`` again, so double backward works.
  Coefficients, ``lam``, ``perm`` and ``feats`` get no gradient.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings

import torch

from . import _torch_kernels as K

# The oldest torch whose stable ABI has all that kmixup._C uses (TORCH_TARGET_VERSION in
# setup.py); under an older one every op runs its pure-PyTorch kernel.
STABLE_ABI_TORCH = (2, 13)
# Starts the message of a type error raised by a compiled kernel (csrc/checks.h).
TYPE_ERROR_PREFIX = "kmixup TypeError: "

SCHEMAS = {
    "betainc": "(Tensor a, Tensor b, Tensor x) -> Tensor",
    "betaincinv": "(Tensor a, Tensor b, Tensor y) -> Tensor",
    "pair_sq_dist": "(Tensor f, Tensor perm) -> Tensor",
    "kernel_mix": "(Tensor x, Tensor perm, Tensor lam, Tensor feats, float tau_max, "
    "float tau_std, str warping) -> (Tensor, Tensor)",
    "kernel_mix_out": "(Tensor x, Tensor perm, Tensor lam, Tensor feats, float tau_max, "
    "float tau_std, str warping, Tensor(a!) out) -> Tensor",
    "kernel_mix_": "(Tensor(a!) x, Tensor perm, Tensor lam, Tensor feats, float tau_max, "
    "float tau_std, str warping) -> Tensor",
    "interpolate": "(Tensor x, Tensor perm, Tensor coeff) -> Tensor",
    "interpolate_backward": "(Tensor grad, Tensor perm, Tensor coeff) -> Tensor",
}


def _load_extension() -> str | None:
    """Import ``kmixup._C``; returns why it is not used, or None when it is loaded."""
    if os.environ.get("KMIXUP_PURE") == "1":
        return "KMIXUP_PURE=1"
    torch_version = tuple(int(v) for v in torch.__version__.split(".")[:2])
    if importlib.util.find_spec("kmixup._C") is None:
        reason = "extension not built"
    elif torch_version < STABLE_ABI_TORCH:
        reason = (
            f"the extension needs torch >= {'.'.join(map(str, STABLE_ABI_TORCH))} (its "
            f"stable ABI), this is torch {torch.__version__}"
        )
    else:
        try:
            importlib.import_module("kmixup._C")  # registers kmixup_C's schemas and kernels
            return None
        except ImportError as err:  # e.g. built against another torch
            reason = f"extension failed to load: {err}"
    warnings.warn(f"kmixup: {reason}; every op runs its pure-PyTorch kernel", stacklevel=2)
    return reason


EXTENSION_MISSING = _load_extension()

_lib = torch.library.Library("kmixup", "FRAGMENT")
for _name, _schema in SCHEMAS.items():
    _lib.define(_name + _schema)


def _with_type_errors(compiled: torch._ops.OpOverload):
    """The compiled kernel ``compiled``, raising its type errors as TypeError."""

    def kernel(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except RuntimeError as err:
            message = str(err)
            if message.startswith(TYPE_ERROR_PREFIX):
                raise TypeError(message[len(TYPE_ERROR_PREFIX) :]) from None
            raise

    return kernel


if not EXTENSION_MISSING:
    for _name in SCHEMAS:
        for _key in ("CPU", "CUDA"):
            if torch._C._dispatch_has_kernel_for_dispatch_key(f"kmixup_C::{_name}", _key):
                _compiled = getattr(torch.ops.kmixup_C, _name).default
                _lib.impl(_name, _with_type_errors(_compiled), _key)

_PURE = {
    "betainc": K.betainc,
    "betaincinv": K.betaincinv,
    "pair_sq_dist": K.pair_sq_dist,
    "kernel_mix": K.kernel_mix,
    "kernel_mix_out": K.kernel_mix_out,
    "kernel_mix_": K.kernel_mix_inplace,
    "interpolate": K.interpolate,
    "interpolate_backward": K.interpolate_backward,
}
for _name, _kernel in _PURE.items():
    _lib.impl(_name, _kernel, "CompositeExplicitAutograd")


def has_compiled_kernel(device_type: str) -> bool:
    """Whether ``kmixup.kernel_mix`` has a compiled kernel for ``device_type``."""
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
        "kmixup::kernel_mix", key
    )


# ----------------------------------------------------------------------------- fake


def _elementwise_fake(a, b, t):
    return torch.empty(t.shape, dtype=t.dtype, device=t.device)


def _rows_fake(x, perm, coeff):
    return K.empty_like_rows(x)


for _name in ("betainc", "betaincinv"):
    torch.library.register_fake(f"kmixup::{_name}", _elementwise_fake)
for _name in ("interpolate", "interpolate_backward"):
    torch.library.register_fake(f"kmixup::{_name}", _rows_fake)


@torch.library.register_fake("kmixup::pair_sq_dist")
def _(f, perm):
    return f.new_empty((f.shape[0],), dtype=K.float_dtype(f.dtype))


def _coefficients_fake(x, *args):
    return x.new_empty((x.shape[0],), dtype=K.float_dtype(x.dtype))


@torch.library.register_fake("kmixup::kernel_mix")
def _(x, perm, lam, feats, tau_max, tau_std, warping):
    return K.empty_like_rows(x), _coefficients_fake(x)


for _name in ("kernel_mix_out", "kernel_mix_"):
    torch.library.register_fake(f"kmixup::{_name}", _coefficients_fake)


# ----------------------------------------------------------------------------- autograd


def _not_differentiable(ctx, inputs, output):
    ctx.mark_non_differentiable(output)


def _no_grad(ctx, *grads):
    raise RuntimeError("unreachable: the output is marked non-differentiable")


def _save_perm_coeff(ctx, inputs, output):
    ctx.save_for_backward(inputs[1], inputs[2])


def _interpolate_grad(ctx, grad):
    perm, coeff = ctx.saved_tensors
    return torch.ops.kmixup.interpolate_backward(grad, perm, coeff), None, None


def _interpolate_backward_grad(ctx, grad):
    perm, coeff = ctx.saved_tensors
    return torch.ops.kmixup.interpolate(grad, perm, coeff), None, None


def _kernel_mix_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1], output[1])
    ctx.mark_non_differentiable(output[1])  # coefficients are never differentiated


def _kernel_mix_grad(ctx, grad_mixed, grad_coeff):
    perm, coeff = ctx.saved_tensors
    grad_x = torch.ops.kmixup.interpolate_backward(grad_mixed, perm, coeff)
    return grad_x, None, None, None, None, None, None


for _name in ("betainc", "betaincinv", "pair_sq_dist"):
    torch.library.register_autograd(
        f"kmixup::{_name}", _no_grad, setup_context=_not_differentiable
    )
torch.library.register_autograd(
    "kmixup::interpolate", _interpolate_grad, setup_context=_save_perm_coeff
)
torch.library.register_autograd(
    "kmixup::interpolate_backward", _interpolate_backward_grad, setup_context=_save_perm_coeff
)
torch.library.register_autograd(
    "kmixup::kernel_mix", _kernel_mix_grad, setup_context=_kernel_mix_setup
)


# ----------------------------------------------------------------------------- mutation

def _written_argument(name: str) -> int | None:
    """The position of the tensor op ``name`` writes (``Tensor(a!)`` in its schema), if any."""
    arguments = getattr(torch.ops.kmixup, name).default._schema.arguments
    written = [i for i, a in enumerate(arguments) if a.alias_info and a.alias_info.is_write]
    return written[0] if written else None


def _in_place_kernel(name: str, index: int):
    """The ADInplaceOrView kernel of op ``name``: what autograd must know of a write it
    cannot see.

    The compiled kernels write through a data pointer. Without this kernel, a graph that
    saved the written tensor (``w * x`` saves ``x`` for ``w``'s gradient) backpropagated
    through the mixed values, and a written or mixed tensor that requires grad kept its old
    ``grad_fn``: silently wrong gradients either way. So, as for torch's own in-place and
    ``out=`` ops: with grad enabled, ``x`` or the written tensor requiring grad is an error;
    otherwise the written tensor's version is bumped (``torch.library.custom_op`` does the
    same at this dispatch key), then the op runs.
    """
    op = getattr(torch.ops.kmixup, name).default

    def kernel(keyset, *args):
        if torch.is_grad_enabled() and (args[0].requires_grad or args[index].requires_grad):
            raise RuntimeError(
                f"kmixup::{name}: x or the tensor it writes requires grad, and mixing "
                "in place or into out= is not differentiable; use kmixup::kernel_mix"
            )
        torch.autograd.graph.increment_version(args[index])
        return op.redispatch(keyset & torch._C._after_ADInplaceOrView_keyset, *args)

    return kernel


for _name in SCHEMAS:
    if (_index := _written_argument(_name)) is not None:
        _lib.impl(_name, _in_place_kernel(_name, _index), "ADInplaceOrView", with_keyset=True)
