"""Input validation shared by the functional API and the transforms.

Two kinds of checks:

* metadata checks (dtype, shape, device, Python arguments) always run: they read no
  tensor data, so they never synchronise a device;
* value checks (``perm`` is a permutation, ``lam`` in [0, 1], class indices in range)
  read data, so they run only when :func:`should_validate` says so.

Every error names the offending argument.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
import torch.distributed as dist

WARPINGS = ("beta_cdf", "inverse_beta_cdf", "none")
_INDEX_DTYPES = (torch.int64, torch.int32)
# What the kernels compute with; float8 and other exotic floats are refused, not guessed at.
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def should_validate(validate: bool | None, *tensors: torch.Tensor) -> bool:
    """Resolve ``validate=None``: check values only on CPU and outside torch.compile.

    On an accelerator a value check means a host sync, which the fused op must never do
    unless the user asked for it explicitly.
    """
    if any(t.device.type == "meta" for t in tensors):
        return False  # no values to check
    if validate is not None:
        return bool(validate)
    if torch.compiler.is_compiling():
        return False
    return all(t.device.type == "cpu" for t in tensors)


def is_integer_tensor(t: torch.Tensor) -> bool:
    return not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool


def check_tensor(t: object, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def check_floating(t: object, name: str) -> None:
    check_tensor(t, name)
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a float32, float64, float16 or bfloat16 tensor, got dtype {t.dtype}"
        )


def check_batched(t: torch.Tensor, name: str, min_batch: int = 1) -> None:
    if t.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    if t.shape[0] < min_batch:
        raise ValueError(f"{name} must have batch size >= {min_batch}, got {t.shape[0]}")


def check_same_device(t: torch.Tensor, name: str, ref: torch.Tensor, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} must be on {ref_name}'s device {ref.device}, got {t.device}")


def check_perm(perm: object, batch: int, ref: torch.Tensor, ref_name: str = "x") -> None:
    check_tensor(perm, "perm")
    if perm.dtype not in _INDEX_DTYPES:
        raise TypeError(f"perm must be an int64 or int32 tensor, got dtype {perm.dtype}")
    if perm.dim() != 1 or perm.shape[0] != batch:
        raise ValueError(f"perm must have shape [{batch}], got {list(perm.shape)}")
    check_same_device(perm, "perm", ref, ref_name)


def check_perm_values(perm: torch.Tensor) -> None:
    expected = torch.arange(perm.shape[0], device=perm.device, dtype=perm.dtype)
    if not torch.equal(torch.sort(perm).values, expected):
        raise ValueError("perm must be a permutation of 0..B-1")


def check_no_negative_values(t: torch.Tensor, name: str, allow_nan: bool) -> None:
    # Written so that NaN fails unless allowed.
    ok = (t >= 0) | t.isnan() if allow_nan else t >= 0
    if not bool(ok.all()):
        raise ValueError(f"{name} must be >= 0" + ("" if allow_nan else " (and not NaN)"))


def check_coefficient(c: object, name: str, batch: int, ref: torch.Tensor, ref_name: str) -> None:
    """A mixing coefficient: floating, a scalar or shape [B], on ``ref``'s device."""
    check_floating(c, name)
    if c.dim() > 1 or (c.dim() == 1 and c.shape[0] != batch):
        raise ValueError(f"{name} must be a scalar or have shape [{batch}], got {list(c.shape)}")
    check_same_device(c, name, ref, ref_name)


def check_unit_interval_values(c: torch.Tensor, name: str) -> None:
    # Written so that NaN fails too.
    if not bool(((c >= 0) & (c <= 1)).all()):
        raise ValueError(f"{name} must lie in [0, 1]")


def check_positive(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    # Comparisons only (NaN and inf fail them): under torch.compile(dynamic=True) a float
    # may be a SymFloat, which the comparisons guard on and math.isfinite cannot take.
    if not 0 < value < math.inf:
        raise ValueError(f"{name} must be finite and > 0, got {value}")


def check_positive_int(value: object, name: str) -> None:
    """A positive integer: Python or numpy, not bool."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_process_group(group: object) -> None:
    if group is not None and not (dist.is_available() and isinstance(group, dist.ProcessGroup)):
        raise TypeError(
            "process_group must be a torch.distributed.ProcessGroup (e.g. "
            f"dist.group.WORLD) or None, got {type(group).__name__}"
        )


def check_warping(warping: object) -> None:
    if warping not in WARPINGS:
        raise ValueError(f"warping must be one of {WARPINGS}, got {warping!r}")


def check_label_smoothing(label_smoothing: object) -> None:
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, Real):
        raise TypeError(
            f"label_smoothing must be a real number, got {type(label_smoothing).__name__}"
        )
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")


def check_num_classes(num_classes: object) -> None:
    check_positive_int(num_classes, "num_classes")


def check_class_values(y: torch.Tensor, num_classes: int, name: str) -> None:
    if y.numel() and not bool(((y >= 0) & (y < num_classes)).all()):
        raise class_values_error(num_classes, name)


def class_values_error(num_classes: int, name: str) -> ValueError:
    return ValueError(f"{name}: class indices must lie in [0, num_classes={num_classes})")
