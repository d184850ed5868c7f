"""Fuzz cases: kmixup's public API and raw ops under random hostile arguments.

Every call is held to one contract: **a named error, or the oracle's answer**.

* An error is a TypeError, ValueError, IndexError, RuntimeError or NotImplementedError
  whose message names the offending argument. Raw ``torch.ops.kmixup`` calls may raise
  anything with a message, but an op given a perm value outside [0, B) must raise.
* A call that returns gives what the numpy/scipy oracle (tests/oracle.py) gives: never NaN
  for finite inputs, coefficients in [0, 1], a pair with a non-finite distance left
  unmixed, batches of 0 and 1 passed through, and for an accepted perm with duplicates
  the right result and the right gradient (the adjoint of ``c*x + (1-c)*x[perm]``).
* Nothing crashes or hangs. tests/test_fuzz.py runs the cases in worker processes (forks
  of this file run with ``--fork-server``) and records a worker's death as the failure of
  its case.

Each argument of a case is generated in one of four kinds: ``ok`` (valid, possibly
extreme), ``bad`` (the call must raise a named error), ``maybe`` (a named error, or a
correct result) and ``lax`` (a named error, or any result: the contract says nothing
about the value, e.g. ``lam = 1.5`` with ``validate=False``). At most one argument of a
case is hostile, so a failure points at it.

The targets form one table, ``TARGETS``: each entry is a generator registered with
``@target(name, weight)`` that draws the arguments and returns a :class:`Case` holding
the call (``run``) and its checker (``check``); ``weight`` is its share of the cases
(``--list`` prints the table). The checkers compare with tests/oracle.py (numpy/scipy),
widened only where the oracle itself needs help: scipy's incomplete beta is replaced
where it is known to be wrong (shapes >= 1e7, subnormal x, shapes below 1e-280), and a
coefficient may lie anywhere the oracle gives over the rounding of the float32
distances, so a steep kernel does not fail on the last bit of a sum.

A case is a function of (seed, index) alone. To replay one in this process::

    python tests/fuzz_cases.py --case 123                # the compiled backend
    KMIXUP_PURE=1 python tests/fuzz_cases.py --case 123   # pure PyTorch
    python tests/fuzz_cases.py --case 123 --show         # print the case, do not run it
    python tests/fuzz_cases.py --range 40 124            # a sequence, as a worker ran it

(For a crash that needed earlier cases, add ``LD_PRELOAD=libc_malloc_debug.so.0
MALLOC_CHECK_=3 MALLOC_PERTURB_=165`` as tests/test_fuzz.py does.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy import special as sp

HERE = Path(__file__).resolve().parent
if __name__ == "__main__":  # the repository's kmixup and tests/oracle.py, not an installed copy
    sys.path[:0] = [str(HERE.parent), str(HERE)]

import oracle  # noqa: E402

import kmixup  # noqa: E402
from kmixup import functional as F  # noqa: E402
from kmixup import special  # noqa: E402

DEFAULT_SEED = 20250601
ERROR_TYPES = (TypeError, ValueError, IndexError, RuntimeError, NotImplementedError)
FLT_MAX = float(np.finfo(np.float32).max)
OPS = torch.ops.kmixup

OK, MAYBE, LAX, BAD = "ok", "maybe", "lax", "bad"

# ----------------------------------------------------------------------------- cases


@dataclass
class Arg:
    """One argument of a case: its value, its kind (OK/MAYBE/LAX/BAD) and a short tag
    saying what is special about it (e.g. ``out_of_range=-1``, ``nan,noncontig``)."""

    value: Any
    kind: str = OK
    tag: str = ""


class Failure(Exception):
    """A broken contract: ``kind`` classifies it (the failure class), ``detail`` shows it."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(kind)
        self.kind, self.detail = kind, detail


def fail(kind: str, detail: str = "") -> None:
    raise Failure(kind, detail)


@dataclass
class Case:
    target: str
    args: dict[str, Arg]
    run: Callable[[Case], Any]
    check: Callable[[Case, Any], None]
    raw: bool = False  # a raw torch.ops call: any exception with a message will do
    also: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other names its error may use
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # internal names
    extra: dict[str, Any] = field(default_factory=dict)  # what the runner needs beyond args
    index: int = -1

    def v(self, name: str, default: Any = None) -> Any:
        arg = self.args.get(name)
        return default if arg is None else arg.value

    def hostile(self) -> dict[str, Arg]:
        return {n: a for n, a in self.args.items() if a.kind != OK}

    def tags(self) -> list[str]:
        return [f"{n}:{a.tag}" for n, a in self.hostile().items()]

    def describe(self) -> str:
        parts = []
        for name, arg in self.args.items():
            note = f" <{arg.kind}: {arg.tag}>" if arg.kind != OK else (
                f" <{arg.tag}>" if arg.tag else "")
            parts.append(f"{name}={show(arg.value)}{note}")
        extras = "".join(f"; {k}={show(v)}" for k, v in self.extra.items() if k in SHOWN_EXTRAS)
        return f"{self.target}({', '.join(parts)}){extras}"


SHOWN_EXTRAS = ("grad", "ops")


def show(value: Any, limit: int = 12) -> str:
    """A short description of an argument or a result."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).replace("torch.", "")
        text = f"{dtype}{list(value.shape)}"
        if value.device.type != "cpu":
            return text + f"@{value.device.type}"
        if value.dim() and not value.is_contiguous():
            text += f"(stride={list(value.stride())})"
        if 0 < value.numel() <= limit:
            flat = value.detach().reshape(-1)
            if value.is_floating_point() or value.is_complex():
                vals = [fmt(float(v)) if not value.is_complex() else str(complex(v)) for v in flat]
            else:
                vals = [str(int(v)) for v in flat]
            text += "=[" + ", ".join(vals) + "]"
        return text
    if isinstance(value, np.ndarray):
        return f"ndarray({value.dtype}){list(value.shape)}"
    if isinstance(value, np.generic):
        return f"np.{type(value).__name__}({value.item()!r})"
    if isinstance(value, float):
        return fmt(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(show(v) for v in value[:6]) + (", ..." if len(value) > 6 else "")
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, torch.nn.Module):
        return type(value).__name__
    if isinstance(value, (kmixup.KernelMixup, kmixup.MixupCollate)):
        return repr(value)
    if callable(value) and getattr(value, "__name__", "") == "<lambda>":
        return "<lambda>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fmt(v: float) -> str:
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return repr(float(v))
    return f"{v:.6g}"


# ----------------------------------------------------------------------------- random


class Rng:
    """The case's random source: numpy's generator seeded with (seed, index)."""

    def __init__(self, seed: int, index: int, occurrence: int = 0):
        self.g = np.random.default_rng([seed, index])
        self.turn = occurrence + seed  # the target's turn in choose_hostile's rotation

    def chance(self, p: float) -> bool:
        return bool(self.g.random() < p)

    def pick(self, options: list | tuple, weights: list | None = None) -> Any:
        if weights is None:
            return options[int(self.g.integers(len(options)))]
        p = np.asarray(weights, float)
        return options[int(self.g.choice(len(options), p=p / p.sum()))]

    def normal(self, shape) -> np.ndarray:
        return self.g.standard_normal(shape)

    def uniform(self, lo=0.0, hi=1.0, size=None):
        return self.g.uniform(lo, hi, size)

    def integers(self, lo, hi=None, size=None):
        return self.g.integers(lo, hi, size)

    def seed(self) -> int:
        return int(self.g.integers(2**31))


# ----------------------------------------------------------------------------- values

OK_FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
OK_FLOAT_WEIGHTS = [5, 3, 1, 1]
BAD_DTYPES = [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64,
              torch.float8_e4m3fn, torch.float8_e5m2]
BATCHES = [0, 1, 2, 3, 4, 5, 7, 8, 16]
BATCH_WEIGHTS = [0.5, 0.8, 1.4, 1.4, 1.4, 1.2, 1.2, 1.1, 1.0]
TAILS = [(), (1,), (3,), (6,), (37,), (2, 3), (3, 2, 2), (2, 3, 3)]
TAIL_WEIGHTS = [1, 0.5, 2, 1.5, 1, 1.5, 1.5, 1]
FLAVORS = {  # name: weight
    "normal": 10, "spread": 2, "identical": 1, "zeros": 1, "subnormal": 1, "integers": 2,
    "1e20": 1, "3e38": 1, "1e200": 1, "nan": 1.5, "inf": 1, "-inf": 0.5, "nan_row": 0.5,
}
FINITE_FLAVORS = ("normal", "spread", "identical", "zeros", "integers")
LAYOUTS = {"contiguous": 10, "noncontig": 2, "batch_strided": 1, "transposed": 1.5,
           "channels_last": 1.5, "expanded": 1, "batch_expanded": 0.5}
POSITIVE_OK = [1.0, 0.25, 0.5, 2.0, 5.0, 0.05, 1, 3, 1e-300, 1e-200, 1e-30, 1e-5, 1e5, 1e30,
               1e300, 5e-324, np.float64(0.3), np.float32(0.5), np.int64(2)]
POSITIVE_OK_WEIGHTS = [4, 4, 2, 2, 1, 1, 1, 1, 1.5, 1.5, 1, 1, 1, 1, 1, 1, 1, 1, 1]
POSITIVE_BAD = [0, 0.0, -1.0, -1e-300, math.inf, -math.inf, math.nan, "1", None, True,
                [1.0], torch.tensor(1.0), np.float64("nan"), 1j]
WARPINGS = ["beta_cdf", "inverse_beta_cdf", "none"]
WARPINGS_BAD = ["beta", "", None, 0, "Beta_CDF", b"beta_cdf"]


def make_data(rg: Rng, shape: tuple, flavor: str) -> np.ndarray:
    """float64 data of ``shape`` in a flavor: normal values, or one extreme injected."""
    a = rg.normal(shape) * 3.0 + 1.0
    if a.size == 0:
        return a
    if flavor == "spread" and a.ndim:
        a = a * 10.0 ** rg.uniform(-3, 3, size=(shape[0],) + (1,) * (a.ndim - 1))
    elif flavor == "identical" and a.ndim:
        a[:] = a[0]
    elif flavor == "zeros":
        a[...] = 0.0
    elif flavor == "subnormal":
        a = a * rg.pick([1e-40, 1e-310])
    elif flavor == "integers":
        a = np.round(a)
    elif flavor in ("1e20", "3e38", "1e200", "nan", "inf", "-inf"):
        value = {"1e20": 1e20, "3e38": 3e38, "1e200": 1e200, "nan": math.nan,
                 "inf": math.inf, "-inf": -math.inf}[flavor]
        for _ in range(int(rg.integers(1, 3))):
            sign = -1.0 if flavor in ("1e20", "3e38", "1e200") and rg.chance(0.5) else 1.0
            a.flat[int(rg.integers(a.size))] = sign * value
    elif flavor == "nan_row" and a.ndim:
        a[int(rg.integers(shape[0]))] = math.nan
    return a


def relayout(t: torch.Tensor, how: str) -> torch.Tensor:
    """``t`` in another memory layout (same values, except the two expansions)."""
    if how == "noncontig" and t.dim():
        shape = list(t.shape)
        shape[-1] *= 2
        big = torch.zeros(shape, dtype=t.dtype)
        big[..., ::2] = t
        return big[..., ::2]
    if how == "batch_strided" and t.dim():
        big = torch.zeros((2 * t.shape[0], *t.shape[1:]), dtype=t.dtype)
        big[::2] = t
        return big[::2]
    if how == "transposed" and t.dim() >= 2:
        dims = list(reversed(range(t.dim())))
        return t.permute(dims).contiguous().permute(dims)
    if how == "channels_last" and t.dim() in (4, 5):
        fmt_ = torch.channels_last if t.dim() == 4 else torch.channels_last_3d
        return t.contiguous(memory_format=fmt_)
    if how == "expanded" and t.dim() >= 2 and t.shape[1] > 0:
        return t[:, :1].expand(t.shape)
    if how == "batch_expanded" and t.dim() and t.shape[0] > 0:
        return t[:1].expand(t.shape)
    return t


def float_tensor(rg: Rng, shape: tuple, *, dtype=None, finite=False, layout=True):
    """A floating tensor with a random dtype, value flavor and layout; returns (t, tag)."""
    dtype = dtype or rg.pick(OK_FLOATS, OK_FLOAT_WEIGHTS)
    names = [f for f in FLAVORS if not finite or f in FINITE_FLAVORS]
    flavor = rg.pick(names, [FLAVORS[f] for f in names])
    t = torch.from_numpy(make_data(rg, shape, flavor)).to(dtype)
    how = rg.pick(list(LAYOUTS), list(LAYOUTS.values())) if layout else "contiguous"
    t = relayout(t, how)
    tag = ",".join(s for s in (str(dtype).replace("torch.", ""), flavor, how)
                   if s not in ("normal", "contiguous"))
    return t, tag


def float_arg(rg: Rng, shape: tuple, hostile: bool = False, **kw) -> Arg:
    """A floating [B, ...] tensor argument; hostile: a wrong dtype, type, rank or device."""
    if not hostile:
        t, tag = float_tensor(rg, shape, **kw)
        return Arg(t, OK, tag)
    how = rg.pick(["dtype", "0-d", "list", "ndarray", "None", "meta"], [6, 1.5, 1, 1, 0.5, 1])
    t, _ = float_tensor(rg, shape, finite=True, layout=False)
    if how == "dtype":
        dtype = rg.pick(BAD_DTYPES)
        return Arg(t.to(dtype), BAD, f"dtype={str(dtype).replace('torch.', '')}")
    if how == "0-d":
        return Arg(torch.tensor(1.5), BAD, "0-d")
    if how == "list":
        return Arg(t.tolist(), BAD, "list")
    if how == "ndarray":
        return Arg(t.double().numpy(), BAD, "ndarray")
    if how == "None":
        return Arg(None, BAD, "None")
    return Arg(t.to("meta"), BAD, "meta")


def dense_rows(t: Any) -> bool:
    """Contiguous, or channels_last(_3d): the layouts mixed in place (and out= buffers)."""
    if not isinstance(t, torch.Tensor) or t.device.type == "meta":
        return True
    if t.is_contiguous():
        return True
    fmt_ = {4: torch.channels_last, 5: torch.channels_last_3d}.get(t.dim())
    return fmt_ is not None and t.is_contiguous(memory_format=fmt_)


def empty_like_rows(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor like x, contiguous in x's row layout (a valid out=)."""
    fmt_ = torch.contiguous_format
    if x.dim() in (4, 5) and not x.is_contiguous() and dense_rows(x):
        fmt_ = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    return torch.empty(x.shape, dtype=x.dtype, memory_format=fmt_)


def batch_size(rg: Rng, min_batch: int = 0) -> int:
    sizes = [b for b in BATCHES if b >= min_batch]
    return rg.pick(sizes, BATCH_WEIGHTS[len(BATCHES) - len(sizes):])


def tail_shape(rg: Rng) -> tuple:
    return rg.pick(TAILS, TAIL_WEIGHTS)


def perm_arg(rg: Rng, batch: int, hostile: bool = False, *, validating: bool = True,
             raw: bool = False) -> Arg:
    """``perm`` for a batch of ``batch``. Hostile: out-of-range values (always an error),
    duplicates (an error when validating, else maybe), a wrong dtype, shape, type or
    device. For raw ops (no named errors), malformed metadata is lax."""
    if not hostile:
        how = rg.pick(["random", "identity", "derangement", "reverse", "swaps", "cycles"],
                      [5, 1, 2, 1, 1.5, 1.5])
        if how == "identity":
            p = np.arange(batch)
        elif how == "cycles":  # short cycles of 1 to 6 rows, which the CPU sweeps differently
            order, p, start = rg.g.permutation(batch), np.arange(batch), 0
            while start < batch:
                rows = order[start:start + int(rg.integers(1, 7))]
                p[rows] = np.roll(rows, -1)
                start += len(rows)
        elif how == "swaps":  # pairs swapped: both rows of a pair share one distance
            order = rg.g.permutation(batch)
            p = np.arange(batch)
            for i, j in zip(order[0::2], order[1::2]):
                p[i], p[j] = j, i
        elif how == "reverse":
            p = np.arange(batch)[::-1].copy()
        elif how == "derangement" and batch >= 2:
            order = rg.g.permutation(batch)
            p = np.empty(batch, int)
            p[order] = np.roll(order, 1)
        else:
            p = rg.g.permutation(batch)
        t = torch.from_numpy(np.asarray(p, np.int64))
        tag = how if how != "random" else ""
        if not raw and rg.chance(0.2):
            t, tag = t.int(), (tag + ",int32").strip(",")
        if rg.chance(0.15):
            t, tag = relayout(t, "noncontig"), (tag + ",noncontig").strip(",")
        return Arg(t, OK, tag)
    meta_kind = LAX if raw else BAD
    how = rg.pick(["out_of_range", "duplicates", "dtype", "shape", "type", "meta"],
                  [5, 3, 1.5, 1.5, 1.5, 1])
    if how == "out_of_range" and batch == 0:
        how = "shape"
    if how == "duplicates" and batch < 2:
        how = "out_of_range" if batch else "shape"
    base = torch.from_numpy(rg.g.permutation(batch).astype(np.int64))
    if how == "out_of_range":
        value = rg.pick([batch, -1, 1 << 40, -(1 << 62), batch + 7, -batch - 1, 2**31,
                         2**63 - 1])
        base[int(rg.integers(batch))] = value
        return Arg(base, BAD, f"out_of_range={value}")
    if how == "duplicates":
        p = base.clone()
        i, j = rg.g.choice(batch, 2, replace=False)
        p[int(i)] = p[int(j)]
        kind = BAD if validating and not raw else MAYBE
        return Arg(p, kind, "duplicates")
    if how == "dtype":
        if raw and rg.chance(0.4):
            return Arg(base.int(), MAYBE, "dtype=int32")
        dtype = rg.pick([torch.float32, torch.float64, torch.int16, torch.uint8, torch.bool,
                         torch.int8, torch.complex64])
        return Arg(base.to(dtype), meta_kind if raw else BAD,
                   f"dtype={str(dtype).replace('torch.', '')}")
    if how == "shape":
        which = rg.pick(["longer", "shorter", "2-d", "0-d"])
        if which == "longer" or (which == "shorter" and batch == 0):
            value = torch.arange(batch + 1)
        elif which == "shorter":
            value = base[:-1]
        elif which == "2-d":
            value = base[None]
        else:
            value = torch.tensor(0)
        return Arg(value, LAX if raw else BAD, f"shape={list(value.shape)}")
    if how == "type":
        which = rg.pick(["list", "ndarray", "None", "str", "np.int64"])
        value = {"list": base.tolist(), "ndarray": base.numpy(), "None": None, "str": "perm",
                 "np.int64": np.int64(0)}[which]
        return Arg(value, BAD, which)
    return Arg(base.to("meta"), meta_kind, "meta")


def lam_arg(rg: Rng, batch: int, hostile: bool = False, *, validating: bool = True,
            name_kind: str = "lam") -> Arg:
    """``lam`` (or ``coeff``): a Python number, a 0-d or a [B] tensor in [0, 1]. Hostile:
    values outside [0, 1] or NaN (an error when validating, else lax), a wrong type,
    dtype, shape or device."""
    if not hostile:
        how = rg.pick(["float", "int", "np.float64", "0-d", "vector"], [3, 0.5, 0.5, 1, 5])
        special_values = [0.0, 1.0, 0.5, 1e-300, 1 - 2**-53, 5e-324]
        if how == "float":
            v = rg.pick(special_values) if rg.chance(0.4) else float(rg.uniform())
            return Arg(v, OK, "")
        if how == "int":
            return Arg(int(rg.pick([0, 1])), OK, "")
        if how == "np.float64":
            return Arg(np.float64(rg.uniform()), OK, "")
        dtype = rg.pick(OK_FLOATS, [3, 4, 1, 1])
        if how == "0-d":
            return Arg(torch.tensor(float(rg.uniform()), dtype=dtype), OK, "0-d")
        v = rg.uniform(size=batch)
        if batch >= 2 and rg.chance(0.5):
            v[0], v[-1] = 0.0, 1.0  # exact endpoints
        if batch and rg.chance(0.15):
            v[int(rg.integers(batch))] = rg.pick(special_values)
        t = torch.from_numpy(v).to(dtype)
        tag = str(dtype).replace("torch.", "")
        if rg.chance(0.15):
            t, tag = relayout(t, "noncontig"), tag + ",noncontig"
        return Arg(t, OK, tag)
    value_kind = BAD if validating else LAX
    how = rg.pick(["value", "vector_value", "type", "shape", "meta"], [3, 2, 3, 1.5, 0.7])
    if how == "vector_value" and batch == 0:
        how = "value"
    if how == "value":
        v = rg.pick([1.5, -0.1, math.nan, math.inf, -math.inf, 1 + 2**-52, -5e-324])
        return Arg(v, value_kind, f"value={v}")
    if how == "vector_value":
        v = rg.uniform(size=batch)
        bad = rg.pick([1.5, -0.1, math.nan, math.inf, -1e-300])
        v[int(rg.integers(batch))] = bad
        t = torch.from_numpy(v).to(rg.pick([torch.float32, torch.float64]))
        w = np64(t)
        if ((w >= 0) & (w <= 1)).all():  # -1e-300 is -0.0 in float32: valid after all
            return Arg(t, OK, f"entry={bad} rounded into [0, 1]")
        return Arg(t, value_kind, f"entry={bad}")
    if how == "type":
        which = rg.pick(["str", "None", "list", "ndarray", "bool", "int_tensor",
                         "complex_tensor", "float8_tensor", "np.float32"])
        v = rg.uniform(size=batch)
        value = {
            "str": "0.5", "None": None, "list": v.tolist(), "ndarray": v, "bool": True,
            "int_tensor": torch.zeros(batch, dtype=torch.int64),
            "complex_tensor": torch.from_numpy(v).to(torch.complex64),
            "float8_tensor": torch.from_numpy(v).to(torch.float8_e4m3fn),
            "np.float32": np.float32(0.25),
        }[which]
        return Arg(value, MAYBE if which == "np.float32" else BAD, which)
    if how == "shape":
        shape = rg.pick([(batch + 1,), (batch, 1), (1, batch), (2, 2)])
        if shape == (2, 2) and batch == 2:
            shape = (3,)
        return Arg(torch.rand(shape, dtype=torch.float64), BAD, f"shape={list(shape)}")
    return Arg(torch.rand(batch, device="meta"), BAD, "meta")


def positive_arg(rg: Rng, hostile: bool = False) -> Arg:
    """A finite positive real (tau_max, tau_std, alpha); hostile: 0, negative, inf, NaN,
    or not a real number."""
    if not hostile:
        v = rg.pick(POSITIVE_OK, POSITIVE_OK_WEIGHTS)
        return Arg(v, OK, "" if v in (1.0, 0.25, 0.5, 2.0) else "extreme")
    v = rg.pick(POSITIVE_BAD)
    return Arg(v, BAD, f"value={show(v)}")


def warping_arg(rg: Rng, hostile: bool = False) -> Arg:
    if not hostile:
        return Arg(rg.pick(WARPINGS, [3, 2, 1]))
    v = rg.pick(WARPINGS_BAD)
    return Arg(v, BAD, f"value={v!r}")


def choose_hostile(rg: Rng, names: list[str], weights: list[float] | None = None,
                   p_valid: float = 0.4) -> str | None:
    """Which argument of a case is hostile (None: all are valid). A target's successive
    cases take turns through a fixed rotation in which each argument has about its weight
    in slots and a share p_valid is all-valid, so a short run reaches every argument."""
    slots = [n for n, w in zip(names, weights or [1] * len(names))
             for _ in range(max(1, round(w)))]
    rotation = [None] * round(len(slots) * p_valid / (1 - p_valid)) + slots
    order = np.random.default_rng(len(rotation)).permutation(len(rotation))  # interleaved
    return rotation[order[rg.turn % len(rotation)]]


def accepts(fn: Callable, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# ----------------------------------------------------------------------------- oracle


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


TINY_NORMAL = float(np.finfo(np.float64).tiny)


def tiny_x_cdf(a, b, x) -> np.ndarray:
    """I_x(a, b) for a subnormal x: the leading term x^a / (a B(a, b)) of its series, exact
    to O(x); scipy loses up to 2e-7 there (0.99259834 for I(5e-324; 1e-5, 3), mpmath
    0.99259813)."""
    with np.errstate(all="ignore"):
        return np.exp(a * np.log(x) - np.log(a) - sp.betaln(a, b))


def sym_cdf(a, x) -> np.ndarray:
    """I(x; a, a) in float64: oracle.beta_cdf_sym (scipy, with the limits) below a = 1e7;
    above, where scipy loses accuracy (1e-3 off at a = 1e13), the normal approximation with
    its kurtosis term (Edgeworth), which agrees with scipy to 1e-12 between 1e5 and 1e10."""
    a, x = np.broadcast_arrays(np.asarray(a, float), np.asarray(x, float))
    big = np.isfinite(a) & (a >= 1e7)
    a = np.where(a < 1e-280, 0.0, a)  # 0.5 + O(a) inside (0, 1): the a = 0 limit (scipy: NaN)
    with np.errstate(all="ignore"):
        out = oracle.beta_cdf_sym(np.where(big, 1.0, a), x)
        tiny = (x > 0) & (x < TINY_NORMAL) & (a > 0) & np.isfinite(a)
        out = np.where(tiny, tiny_x_cdf(a, a, x), out)
        z = (x - 0.5) * 2.0 * np.sqrt(2.0 * a + 1.0)
        kurt = -6.0 / (2.0 * a + 3.0)
        edge = sp.ndtr(z) - np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * kurt / 24 * (
            z**3 - 3 * z)
    edge = np.where(x <= 0, 0.0, np.where(x >= 1, 1.0, np.where(x == 0.5, 0.5, edge)))
    out = np.where(big, edge, out)
    return np.where((x < 0) | (x > 1) | np.isnan(x) | np.isnan(a) | (a < 0), np.nan, out)


def sym_quantile(a, y) -> np.ndarray:
    """I^-1(y; a, a): oracle.beta_quantile_sym below a = 1e7, the Cornish-Fisher normal
    quantile above."""
    a, y = np.broadcast_arrays(np.asarray(a, float), np.asarray(y, float))
    big = np.isfinite(a) & (a >= 1e7)
    a = np.where(a < 1e-280, 0.0, a)  # a step at 1/2 to double precision (scipy: 0.5)
    with np.errstate(all="ignore"):
        out = oracle.beta_quantile_sym(np.where(big, 1.0, a), y)
        z = sp.ndtri(y)
        kurt = -6.0 / (2.0 * a + 3.0)
        cf = 0.5 + (z + kurt / 24 * (z**3 - 3 * z)) / (2.0 * np.sqrt(2.0 * a + 1.0))
    cf = np.where(y <= 0, 0.0, np.where(y >= 1, 1.0, np.where(y == 0.5, 0.5, np.clip(cf, 0, 1))))
    out = np.where(big, cf, out)
    return np.where((y < 0) | (y > 1) | np.isnan(y) | np.isnan(a) | (a < 0), np.nan, out)


def warp_oracle(lam, tau, warping) -> np.ndarray:
    lam, tau = np.broadcast_arrays(np.asarray(lam, float), np.asarray(tau, float))
    if warping == "none":
        return lam.copy()
    if warping == "beta_cdf":
        with np.errstate(divide="ignore"):
            return sym_cdf(1.0 / tau, lam)
    return sym_quantile(tau, lam)


def limits(a, b, t, inverse: bool):
    """betainc / betaincinv outside the interior, as documented: point masses for shapes
    0 or inf, exact endpoints, NaN for invalid input. Returns (value, decided mask)."""
    half = np.full(t.shape, 0.5)
    step = np.where(t < 0.5, 0.0, np.where(t > 0.5, 1.0, half))
    at_zero, at_one = (0.0, 1.0) if inverse else (1.0, 0.0)
    at_ends, at_half = (step, half) if inverse else (half, step)
    value = np.where((a == 0) | np.isinf(b), at_zero, at_one)
    value = np.where(np.isinf(a) & np.isinf(b), at_half, value)
    value = np.where((a == 0) & (b == 0), at_ends, value)
    interior = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b) & (t > 0) & (t < 1)
    value = np.where(t == 0, 0.0, np.where(t == 1, 1.0, value))
    invalid = (a < 0) | (b < 0) | (t < 0) | (t > 1) | np.isnan(a) | np.isnan(b) | np.isnan(t)
    return np.where(invalid, np.nan, value), ~interior | invalid


def betainc_oracle(a, b, x):
    """(expected I_x(a, b), known mask): scipy where it is reliable, sym_cdf for a == b."""
    a, b, x = np.broadcast_arrays(*(np.asarray(v, float) for v in (a, b, x)))
    value, decided = limits(a, b, x, inverse=False)
    with np.errstate(all="ignore"):
        general = sp.betainc(np.where(decided, 1.0, a), np.where(decided, 1.0, b),
                             np.where(decided, 0.5, x))
        general = np.where(~decided & (x < TINY_NORMAL), tiny_x_cdf(a, b, x), general)
        sym = sym_cdf(np.where(decided, 1.0, a), np.where(decided, 0.5, x))
    reliable = (np.minimum(a, b) >= 1e-30) & (np.maximum(a, b) <= 1e7)
    inner = np.where(a == b, sym, general)
    known = decided | (((a == b) | reliable) & ~np.isnan(inner))  # scipy's NaN: unknown
    return np.where(decided, value, inner), known


def betaincinv_oracle(a, b, y):
    a, b, y = np.broadcast_arrays(*(np.asarray(v, float) for v in (a, b, y)))
    value, decided = limits(a, b, y, inverse=True)
    with np.errstate(all="ignore"):
        general = sp.betaincinv(np.where(decided, 1.0, a), np.where(decided, 1.0, b),
                                np.where(decided, 0.5, y))
        sym = sym_quantile(np.where(decided, 1.0, a), np.where(decided, 0.5, y))
    reliable = (np.minimum(a, b) >= 1e-5) & (np.maximum(a, b) <= 1e6)
    inner = np.where(a == b, sym, general)
    known = decided | (((a == b) | reliable) & ~np.isnan(inner))
    return np.where(decided, value, inner), known


def quantile_ok(got, ref, a, b, y, tol):
    """Forward error within tol, or backward error (I(got) against y) tiny: the quantile
    is ill-conditioned where the CDF is flat."""
    with np.errstate(all="ignore"):
        ok = same(got, ref, tol)
        back, known = betainc_oracle(a, b, np.clip(got, 0, 1))
        slack = 1e-9 * np.minimum(y, 1 - y) + 1e-15
        return ok | (known & (np.abs(back - y) <= slack))


def distance_candidates(f: np.ndarray, fdtype: torch.dtype, perm: np.ndarray):
    """Squared distances the library may legitimately compute for features ``f`` (float64
    values of a ``fdtype`` tensor): the exact ones and, for float32 accumulation, numpy's
    float32 ones. A float32 sum above FLT_MAX is inf (the contract's overflow rule).
    Returns (candidates, relative rounding of each distance)."""
    batch = len(perm)
    f = f.reshape(batch, int(np.prod(f.shape[1:])))
    with np.errstate(all="ignore"):
        exact = oracle.sq_dist(f, perm) if batch else np.zeros(0)
        if fdtype == torch.float64:
            return [exact], 1e-13
        exact = np.where(exact > FLT_MAX, np.inf, exact)
        f32 = f.astype(np.float32)
        d32 = ((f32 - f32[perm]) ** 2).sum(axis=1, dtype=np.float32).astype(float)
    return [exact, d32], 1e-7 * (f.shape[1] + 16)


def coefficient_bounds(f, fdtype, perm, lam, tau_max, tau_std, warping):
    """Oracle coefficients over every candidate distance and every rounding of the
    normalised distance: (lo, hi, taus, unmixed mask). The library's coefficient must lie
    in [lo, hi] (up to the special functions' tolerance)."""
    cands, rel = distance_candidates(f, fdtype, perm)
    ks, taus = [], []
    with np.errstate(all="ignore"):
        for d in cands:
            finite = np.isfinite(d)
            mean = oracle.finite_mean(d)
            for m in (mean * (1 - 2 * rel), mean, mean * (1 + 2 * rel)):
                t = oracle.tau(d, float(tau_max), float(tau_std), mean=m)
                taus.append(t)
                ks.append(np.where(finite, warp_oracle(lam, t, warping), 1.0))
    ks = np.array(ks)
    return ks.min(0), ks.max(0), taus, ~np.isfinite(cands[0])


def adjoint(g: np.ndarray, perm: np.ndarray, c: np.ndarray, exact: bool = True) -> np.ndarray:
    """The adjoint of x -> c*x + (1-c)*x[perm] applied to g: with ``exact``, a weight of 0
    contributes exactly 0 (as the forward's exact copies do), else 0 * inf is NaN."""
    shape = (-1,) + (1,) * (g.ndim - 1)
    c = c.reshape(shape)
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.where(c == 0, 0.0, c * g) if exact else c * g
        np.add.at(out, perm, np.where(c == 1, 0.0, (1 - c) * g) if exact else (1 - c) * g)
    return out


def adjoint_close(got: np.ndarray, g: np.ndarray, perm, c, rtol: float, floor: float):
    """Elementwise: ``got`` is the adjoint (either convention) up to rounding."""
    with np.errstate(invalid="ignore", over="ignore"):
        shape = (-1,) + (1,) * (g.ndim - 1)
        ag, ac = np.abs(g), np.abs(c).reshape(shape)
        scale = ac * ag
        np.add.at(scale, perm, np.abs(1 - c).reshape(shape) * ag)
        tol = 4 * rtol * np.nan_to_num(scale, posinf=0.0) + floor
    want = adjoint(g, perm, c)
    return same(got, want, tol) | same(got, adjoint(g, perm, c, exact=False), tol), want


RTOL = {torch.float64: 1e-13, torch.float32: 1e-6, torch.float16: 1.5e-3,
        torch.bfloat16: 1e-2}


def atol(dtype: torch.dtype) -> float:
    """Twice the spacing of the dtype's subnormals: the absolute rounding error near 0."""
    info = torch.finfo(dtype)
    return 2 * info.tiny * info.eps


def acc_dtype(*dtypes: torch.dtype) -> torch.dtype:
    return torch.float64 if torch.float64 in dtypes else torch.float32


def same(got: np.ndarray, ref: np.ndarray, tol) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (got == ref) | (np.isnan(got) & np.isnan(ref)) | (np.abs(got - ref) <= tol)


def worst(mask: np.ndarray, got: np.ndarray, ref: np.ndarray, limit: int = 3) -> str:
    idx = np.argwhere(~mask)[:limit]
    return "; ".join(f"at {tuple(int(i) for i in ix)}: got {got[tuple(ix)]:.10g}, "
                     f"want {ref[tuple(ix)]:.10g}" for ix in idx)


def expect_tensor(out: Any, shape, dtype, what: str, device="cpu") -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        fail("wrong result type", f"{what}: got {show(out)}")
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype or out.device.type != device:
        fail("wrong result shape/dtype/device",
             f"{what}: got {show(out)} on {out.device}, want {dtype}{list(shape)} on {device}")
    return out


def check_layout(out: torch.Tensor, x: torch.Tensor, what: str) -> None:
    if x.dim() in (4, 5) and not x.is_contiguous() and x.numel():
        fmt_ = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        if x.is_contiguous(memory_format=fmt_) and not out.is_contiguous(memory_format=fmt_):
            fail("memory format not kept", f"{what}: stride {out.stride()}, x {x.stride()}")


def check_unit(c: torch.Tensor, what: str) -> np.ndarray:
    k = np64(c)
    if np.isnan(k).any() or np.isinf(k).any():
        fail("NaN/inf coefficient", f"{what}={show(c, 16)}")
    if (k < 0).any() or (k > 1).any():
        fail("coefficient outside [0, 1]", f"{what}={show(c, 16)}")
    return k


def check_coefficients(coeff, f_t, perm, lam, tau_max, tau_std, warping, what="coeff"):
    """A coefficient vector against the oracle, with the non-finite-distance rule."""
    k = check_unit(coeff, what)
    if warping == "none":
        want = np.asarray(torch.from_numpy(lam).to(coeff.dtype).double())
        if not np.array_equal(k, want):
            fail("coefficient differs from oracle", f"{what} (warping none) {k} != lam {want}")
        return k
    f = np64(f_t)
    lo, hi, taus, unmixed = coefficient_bounds(f, f_t.dtype, perm, lam, tau_max, tau_std,
                                               warping)
    if (k[unmixed] != 1).any():
        fail("non-finite distance not left unmixed (coeff != 1)",
             f"{what}={show(coeff, 16)}, non-finite pairs {np.flatnonzero(unmixed).tolist()}")
    tol = 1e-9 if coeff.dtype == torch.float64 else 2e-6
    with np.errstate(invalid="ignore"):
        ok = (k >= lo - tol) & (k <= hi + tol) | np.isnan(lo) | np.isnan(hi)
        if warping == "inverse_beta_cdf":
            for t in taus:
                back = sym_cdf(t, k)
                ok |= np.abs(back - lam) <= 1e-9 * np.minimum(lam, 1 - lam) + 1e-15
    if not ok.all():
        i = np.flatnonzero(~ok)[:3]
        fail("coefficient differs from oracle",
             f"{what}[{i.tolist()}]={k[i].tolist()}, oracle in [{lo[i].tolist()}, "
             f"{hi[i].tolist()}] (lam {lam[i].tolist()})")
    return k


def check_mixed(out: torch.Tensor, x_t: torch.Tensor, perm: np.ndarray, k: np.ndarray,
                what: str = "mixed") -> None:
    """``out`` against c*x + (1-c)*x[perm] with the library's coefficients ``k``; rows with
    c == 1 (0) must be exact copies of x[i] (x[perm[i]])."""
    x, got = np64(x_t), np64(out)
    if x_t.dtype != torch.float64:  # computed in float32: so are the coefficients
        k = k.astype(np.float32).astype(float)
    ref = oracle.interpolate(x, perm, k)
    kk = k.reshape((-1,) + (1,) * (x.ndim - 1))
    exact_x = np.broadcast_to(kk == 1, x.shape)
    exact_p = np.broadcast_to(kk == 0, x.shape)
    copy_ok = same(got, x, 0.0) | ~exact_x
    copy_ok &= same(got, x[perm], 0.0) | ~exact_p
    if not copy_ok.all():
        fail("row with coefficient 1 or 0 is not an exact copy", worst(copy_ok, got, ref))
    with np.errstate(invalid="ignore", over="ignore"):
        scale = np.nan_to_num(np.abs(x) + np.abs(x[perm]), posinf=0.0)
        # Beyond the compute dtype's range (a coefficient outside [0, 1] times a huge x),
        # any overflow pattern is that dtype's arithmetic, not the library's.
        fmax = float(torch.finfo(out.dtype if out.dtype == torch.float64 else
                                 torch.float16 if out.dtype == torch.float16 else
                                 torch.float32).max)
        overflow = (np.abs(kk * x) > fmax) | (np.abs((1 - kk) * x[perm]) > fmax) | (
            np.abs(ref) > fmax)
    ok = same(got, ref, RTOL.get(x_t.dtype, 1e-2) * scale + atol(out.dtype)) | overflow
    if not ok.all():
        fail(f"{what} differs from oracle", worst(ok, got, ref))


def check_grad(grad: torch.Tensor | None, x_t, perm, k, w) -> None:
    if grad is None:
        fail("no gradient reached x")
    expect_tensor(grad, x_t.shape, x_t.dtype, "x.grad")
    if x_t.dtype != torch.float64:
        k = k.astype(np.float32).astype(float)
    got = np64(grad)
    ok, want = adjoint_close(got, w, perm, k, RTOL.get(x_t.dtype, 1e-2), atol(x_t.dtype))
    if not ok.all():
        fail("gradient differs from the adjoint", worst(ok, got, want))


def finite_t(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and bool(torch.isfinite(t.detach().double()).all())


def check_finite_out(out: torch.Tensor, inputs_finite: bool, what: str) -> None:
    if inputs_finite and not finite_t(out):
        fail("NaN/inf output for finite input", f"{what}={show(out)}")


def lam_values(lam: Any, batch: int) -> np.ndarray:
    if isinstance(lam, torch.Tensor):
        v = np64(lam)
    else:
        v = np.asarray(float(lam))
    return np.broadcast_to(v, (batch,)).astype(float)


def perm_values(perm: Any) -> np.ndarray:
    return np.asarray(perm.long().numpy() if isinstance(perm, torch.Tensor) else perm, np.int64)


def one_hot(y: np.ndarray, num_classes: Any, smoothing: Any) -> np.ndarray:
    """timm-style smoothed one-hot rows; off/on computed from the objects as given (an
    np.float32 smoothing stays float32 in that arithmetic, as it does in the library)."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    out = np.full((len(y), int(num_classes)), float(off))
    out[np.arange(len(y)), y] = float(on)
    return out


def random_weights(rg_seed: int, shape) -> np.ndarray:
    return np.random.default_rng(rg_seed).standard_normal(shape)


# ----------------------------------------------------------------------------- targets

TARGETS: list[tuple[str, Callable[[Rng], Case], int]] = []


def target(name: str, weight: int = 1):
    """Register a case generator under the public name it exercises."""

    def register(gen: Callable[[Rng], Case]) -> Callable[[Rng], Case]:
        TARGETS.append((name, gen, weight))
        return gen

    return register


# --- kmixup.special


def special_inputs(rg: Rng, bad: str | None, names: tuple[str, str, str], pools):
    """(a, b, t) for betainc/betaincinv: Python floats or tensors of broadcastable shapes."""
    shape = rg.pick([(), (1,), (4,), (2, 3)])
    args = {}
    for name, pool in zip(names, pools):
        if name == bad:
            how = rg.pick(["int", "complex", "float8", "str", "None", "list", "ndarray",
                           "shape", "meta", "bool"])
            kind = MAYBE if how in ("list", "ndarray", "bool") else BAD
            value = {
                "int": torch.ones(shape, dtype=torch.int64), "complex": torch.ones(
                    shape, dtype=torch.complex64), "float8": torch.full(
                    shape, 0.5).to(torch.float8_e4m3fn), "str": "0.5", "None": None,
                "list": [0.25, 0.5], "ndarray": np.full((2, 3), 0.5), "shape": torch.full(
                    (5, 7), 0.5), "meta": torch.full(shape, 0.5, device="meta"),
                "bool": True,
            }[how]
            if how == "meta":
                kind = MAYBE  # with Python numbers beside it, a call on meta: no values
            if how == "shape":
                try:
                    np.broadcast_shapes(shape, (5, 7))
                    kind = OK  # it broadcasts after all
                except ValueError:
                    pass
            args[name] = Arg(value, kind, how)
            continue
        vals = np.array([rg.pick(pool) for _ in range(int(np.prod(shape)))]).reshape(shape)
        if rg.chance(0.25):
            args[name] = Arg(float(vals.reshape(-1)[0]) if vals.size else 0.5)
            continue
        dtype = rg.pick(OK_FLOATS, [3, 4, 1, 1])
        t = torch.from_numpy(np.asarray(vals, float)).to(dtype)
        if t.dim() and rg.chance(0.2):
            t = relayout(t, "noncontig")
        args[name] = Arg(t, OK, str(dtype).replace("torch.", ""))
    bad_arg = args.get(bad)
    if bad_arg is not None and bad_arg.tag == "shape":
        others = [a.value for k, a in args.items() if k != bad]
        if not any(isinstance(v, torch.Tensor) for v in others):
            args[bad] = Arg(bad_arg.value, OK, "shape")  # beside Python numbers it broadcasts
    return args


SHAPES_POOL = [0.0, 1e-300, 1e-30, 1e-5, 0.1, 0.5, 1.0, 2.0, 7.5, 30.0, 1e3, 1e6, 1e8, 1e15,
               1e300, math.inf, math.nan, -1.0, -math.inf, 0.5, 1.0, 2.0, 3.0]
POINTS_POOL = [0.0, 1.0, 0.5, 0.3, 0.7, 0.01, 0.999, 1e-300, 1 - 1e-12, -0.1, 1.5, math.nan,
               math.inf, 5e-324, 0.25]


def special_check(inverse: bool):
    def check(case: Case, out: Any) -> None:
        vals = [case.v(n) for n in case.args]
        tensors = [v for v in vals if isinstance(v, torch.Tensor)]
        dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else (
            torch.float32 if tensors else torch.get_default_dtype())
        if any(t.device.type == "meta" for t in tensors):  # no values: metadata only
            shape = torch.broadcast_shapes(*(torch.as_tensor(v).shape if not isinstance(
                v, torch.Tensor) else v.shape for v in vals))
            expect_tensor(out, shape, dtype, "result", "meta")
            return
        arrays = [np64(v) if isinstance(v, torch.Tensor) else np.asarray(v, float) for v in vals]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        expect_tensor(out, shape, dtype, "result")
        a, b, t = np.broadcast_arrays(*arrays)
        got = np64(out)
        if inverse:
            ref, known = betaincinv_oracle(a, b, t)
        else:
            ref, known = betainc_oracle(a, b, t)
        tol = 1e-9 if dtype == torch.float64 else 1e-6
        nan_ok = np.isnan(got) == np.isnan(ref)
        if not (nan_ok | ~known).all():
            fail("NaN where the oracle has a value, or a value where it has NaN",
                 worst(nan_ok | ~known, got, ref))
        if inverse:
            ok = quantile_ok(got, ref, a, b, t, tol)
        else:
            ok = same(got, ref, tol)
        ok |= ~known
        if not ok.all():
            fail("value differs from oracle", worst(ok, got, ref) + f" (a={a.ravel()[:3]}, "
                 f"b={b.ravel()[:3]})")

    return check


@target("special.betainc")
def gen_betainc(rg: Rng) -> Case:
    """a, b, x: numbers or tensors (any float dtype, strided, broadcast), shapes 0..inf,
    NaN, < 0; hostile: int/complex/float8, str, None, list, ndarray, bad shape, meta."""
    bad = choose_hostile(rg, ["a", "b", "x"])
    args = special_inputs(rg, bad, ("a", "b", "x"), (SHAPES_POOL, SHAPES_POOL, POINTS_POOL))
    return Case("special.betainc", args, lambda c: special.betainc(*(c.v(n) for n in c.args)),
                special_check(inverse=False))


@target("special.betaincinv")
def gen_betaincinv(rg: Rng) -> Case:
    """As betainc, for the quantile (forward or backward error)."""
    bad = choose_hostile(rg, ["a", "b", "y"])
    args = special_inputs(rg, bad, ("a", "b", "y"), (SHAPES_POOL, SHAPES_POOL, POINTS_POOL))
    return Case("special.betaincinv", args,
                lambda c: special.betaincinv(*(c.v(n) for n in c.args)),
                special_check(inverse=True))


# --- kmixup.functional pieces


def check_pair_sq_dist(case: Case, out: Any, f_name: str = "f") -> None:
    f_t, perm = case.v(f_name), perm_values(case.v("perm"))
    batch = f_t.shape[0]
    expect_tensor(out, (batch,), acc_dtype(f_t.dtype), "d", f_t.device.type)
    if f_t.device.type == "meta":
        return
    cands, rel = distance_candidates(np64(f_t), f_t.dtype, perm)
    ref, got = cands[0], np64(out)
    if (np.isfinite(got) != np.isfinite(ref)).any():
        fail("distance finiteness differs from oracle (float32 overflow rule)",
             f"d={got.tolist()}, want {ref.tolist()}")
    ok = same(got, ref, 4 * rel * np.abs(ref) + (1e-30 if f_t.dtype != torch.float64 else 1e-300))
    if f_t.dtype != torch.float64:
        ok |= same(got, cands[1], 4 * rel * np.abs(cands[1]) + 1e-30)
    if not ok.all():
        fail("distance differs from oracle", worst(ok, got, ref))


@target("functional.pair_sq_dist", weight=2)
def gen_pair_sq_dist(rg: Rng) -> Case:
    """f [B, ...] any flavour/layout; hostile f (dtype, type, rank, device) or perm (out
    of range, duplicates, dtype, shape, type, meta)."""
    bad = choose_hostile(rg, ["f", "perm", "batch"], [2, 3, 1])
    batch = batch_size(rg, 1)
    shape = (batch, *tail_shape(rg))
    if rg.chance(0.1):
        shape = (batch,)  # 1-D features are [B, 1]
    args = {"f": float_arg(rg, shape, bad == "f"),
            "perm": perm_arg(rg, batch, bad == "perm", validating=False)}
    if bad == "batch":  # f without a batch dim
        args["f"] = Arg(torch.tensor(2.0), BAD, "0-d")
        args["perm"] = Arg(torch.tensor([0]), OK)
    if args["perm"].tag == "duplicates":
        args["perm"].kind = MAYBE  # a well-defined gather: reject it, or compute it
    return Case("functional.pair_sq_dist", args,
                lambda c: F.pair_sq_dist(c.v("f"), c.v("perm")), check_pair_sq_dist)


@target("functional.similarity_tau", weight=2)
def gen_similarity_tau(rg: Rng) -> Case:
    """sq_dist with 0, inf, NaN, 1e300, subnormals; extreme tau_max/tau_std; hostile:
    negative or -inf sq_dist, bad dtype/rank, tau_max/tau_std 0, < 0, inf, NaN,
    non-numbers."""
    bad = choose_hostile(rg, ["sq_dist", "tau_max", "tau_std"], [3, 1, 1])
    has_validate = accepts(F.similarity_tau, "validate")
    validate = rg.pick([None, True, False]) if has_validate and rg.chance(0.5) else None
    validating = validate is not False
    batch = batch_size(rg, 1)
    dtype = rg.pick([torch.float32, torch.float64, torch.float16, torch.bfloat16], [4, 4, 1, 1])
    pool = [0.0, 1.0, 2.5, 1e-300, 1e300, 5e-324, 1e-40, 3e38, math.inf, math.nan, 7.0, 0.5]
    d = np.abs(rg.normal(batch)) * 10 ** rg.uniform(-3, 3)
    for _ in range(int(rg.integers(0, 3))):
        d[int(rg.integers(batch))] = rg.pick(pool)
    t = torch.from_numpy(d).to(dtype)
    args = {"sq_dist": Arg(t, OK, str(dtype).replace("torch.", "")),
            "tau_max": positive_arg(rg, bad == "tau_max"),
            "tau_std": positive_arg(rg, bad == "tau_std")}
    if bad == "sq_dist":
        how = rg.pick(["negative", "-inf", "int", "2-d", "0-d", "list", "float8"])
        if how in ("negative", "-inf"):
            d[int(rg.integers(batch))] = -1.5 if how == "negative" else -math.inf
            args["sq_dist"] = Arg(torch.from_numpy(d).to(dtype), BAD if validating else LAX, how)
        else:
            value = {"int": torch.ones(batch, dtype=torch.int64), "2-d": torch.ones(batch, 2),
                     "0-d": torch.tensor(1.0), "list": d.tolist(),
                     "float8": torch.ones(batch).to(torch.float8_e5m2)}[how]
            args["sq_dist"] = Arg(value, BAD, how)
    if has_validate and validate is not None:
        args["validate"] = Arg(validate)

    def run(c: Case):
        kw = {"validate": c.v("validate")} if "validate" in c.args else {}
        return F.similarity_tau(c.v("sq_dist"), c.v("tau_max"), c.v("tau_std"), **kw)

    def check(c: Case, out: Any) -> None:
        d_t = c.v("sq_dist")
        expect_tensor(out, d_t.shape, acc_dtype(d_t.dtype), "tau")
        got = np64(out)
        if np.isnan(got).any() or (got < 0).any():
            fail("NaN or negative tau", f"tau={got.tolist()}")
        d = np64(d_t)
        mean = oracle.finite_mean(d)
        with np.errstate(all="ignore"):
            refs = [oracle.tau(d, float(c.v("tau_max")), float(c.v("tau_std")), mean=m)
                    for m in (mean * (1 - 1e-13), mean, mean * (1 + 1e-13))]
        npd = np.float64 if out.dtype == torch.float64 else np.float32
        with np.errstate(over="ignore"):
            lo = np.min(refs, 0).astype(npd).astype(float)
            hi = np.max(refs, 0).astype(npd).astype(float)
        rtol = 1e-12 if out.dtype == torch.float64 else 2e-7
        ok = (got >= lo * (1 - rtol) - 1e-300) & (got <= hi * (1 + rtol) + 1e-300)
        ok |= np.isnan(lo) | np.isnan(hi)
        if not ok.all():
            fail("tau differs from oracle", worst(ok, got, np.asarray(refs[1])))

    return Case("functional.similarity_tau", args, run, check)


@target("functional.warp", weight=2)
def gen_warp(rg: Rng) -> Case:
    """lam (number, 0-d, [B]) and tau with 0, inf, subnormal, huge; hostile lam/tau
    values, dtypes, shapes, devices, warping names."""
    bad = choose_hostile(rg, ["lam", "tau", "warping"], [3, 3, 1])
    has_validate = accepts(F.warp, "validate")
    validate = rg.pick([None, True, False]) if has_validate and rg.chance(0.5) else None
    validating = validate is not False
    batch = batch_size(rg, 1)
    dtype = rg.pick([torch.float32, torch.float64, torch.float16], [4, 4, 1])
    tau = np.exp(rg.uniform(-6, 6, size=batch))
    for _ in range(int(rg.integers(0, 3))):
        tau[int(rg.integers(batch))] = rg.pick([0.0, math.inf, 1e-300, 1e300, 1.0, 5e-324,
                                                1e-8, 1e8, 1e15])
    args = {"lam": lam_arg(rg, batch, bad == "lam", validating=validating),
            "tau": Arg(torch.from_numpy(tau).to(dtype), OK, str(dtype).replace("torch.", "")),
            "warping": warping_arg(rg, bad == "warping")}
    lam_python_checked(args["lam"])
    if bad == "tau":
        how = rg.pick(["negative", "nan", "int", "2-d", "list", "meta", "complex"])
        if how in ("negative", "nan"):
            tau[int(rg.integers(batch))] = -0.5 if how == "negative" else math.nan
            kind = BAD if validating else LAX
            args["tau"] = Arg(torch.from_numpy(tau).to(dtype), kind, how)
        else:
            value = {"int": torch.ones(batch, dtype=torch.int64), "2-d": torch.ones(batch, 2),
                     "list": tau.tolist(), "meta": torch.ones(batch, device="meta"),
                     "complex": torch.ones(batch, dtype=torch.complex64)}[how]
            args["tau"] = Arg(value, BAD, how)
            if how == "meta" and not isinstance(args["lam"].value, torch.Tensor):
                args["tau"].kind = MAYBE  # lam follows tau onto meta: metadata only
    if has_validate and validate is not None:
        args["validate"] = Arg(validate)

    def run(c: Case):
        kw = {"validate": c.v("validate")} if "validate" in c.args else {}
        return F.warp(c.v("lam"), c.v("tau"), c.v("warping"), **kw)

    def check(c: Case, out: Any) -> None:
        lam, tau_t = c.v("lam"), c.v("tau")
        dtypes = [tau_t.dtype] + ([lam.dtype] if isinstance(lam, torch.Tensor) else [])
        expect_tensor(out, tau_t.shape, acc_dtype(*dtypes), "k", tau_t.device.type)
        if tau_t.device.type == "meta":
            return
        lam64 = lam_values(lam, tau_t.shape[0])
        k = check_unit(out, "k")
        ref = warp_oracle(lam64, np64(tau_t), c.v("warping"))
        tol = 1e-9 if out.dtype == torch.float64 else 2e-6
        ok = same(k, ref, tol) | np.isnan(ref)
        if c.v("warping") == "inverse_beta_cdf":
            t = np64(tau_t)
            ok |= np.abs(sym_cdf(t, k) - lam64) <= 1e-9 * np.minimum(lam64, 1 - lam64) + 1e-15
        if not ok.all():
            fail("coefficient differs from oracle", worst(ok, k, ref) + f" (tau {np64(tau_t)})")

    case = Case("functional.warp", args, run, check)
    if bad == "tau":
        case.also["tau"] = ("lam",)
    return case


@target("functional.interpolate", weight=3)
def gen_interpolate(rg: Rng) -> Case:
    """x any flavour/layout, coeff with exact 0/1; hostile x, perm or coeff; optional
    backward checked against the adjoint."""
    bad = choose_hostile(rg, ["x", "perm", "coeff"], [2, 4, 2])
    has_validate = accepts(F.interpolate, "validate")
    validate = rg.pick([None, True, False]) if has_validate else False
    validating = validate is not False
    batch = batch_size(rg)
    shape = (batch, *tail_shape(rg))
    args = {"x": float_arg(rg, shape, bad == "x"),
            "perm": perm_arg(rg, batch, bad == "perm", validating=validating),
            "coeff": lam_arg(rg, batch, bad == "coeff", validating=False)}
    if has_validate:
        args["validate"] = Arg(validate)
    if batch == 0 and args["x"].kind == OK:
        args["x"].kind, args["x"].tag = MAYBE, "batch=0"  # not in the batch-0 contract
    coeff = args["coeff"]
    if not isinstance(coeff.value, torch.Tensor) and coeff.kind == OK:
        coeff.value = torch.tensor(float(coeff.value), dtype=torch.float64)  # a tensor here
    if bad == "coeff" and coeff.kind == LAX:
        finite = not any(s in coeff.tag.lower() for s in ("nan", "inf"))
        coeff.kind = MAYBE if finite else LAX  # a finite c outside [0, 1]: the formula
        if isinstance(coeff.value, float):
            coeff.value = torch.tensor(coeff.value, dtype=torch.float64)
    grad = (args["x"].kind == OK and isinstance(args["x"].value, torch.Tensor)
            and args["x"].value.dtype in OK_FLOATS and rg.chance(0.6))
    extra = {"grad": grad, "w_seed": rg.seed()}

    def run(c: Case):
        x = c.v("x")
        if c.extra["grad"]:
            x = x.detach().requires_grad_(True)
        kw = {"validate": c.v("validate")} if "validate" in c.args else {}
        out = F.interpolate(x, c.v("perm"), c.v("coeff"), **kw)
        grad = None
        if c.extra["grad"]:
            w = torch.from_numpy(random_weights(c.extra["w_seed"], tuple(x.shape)))
            (out.double() * w).sum().backward()
            grad = x.grad
        return {"out": out, "grad": grad}

    def check(c: Case, res: Any) -> None:
        x_t, out = c.v("x"), res["out"]
        expect_tensor(out, x_t.shape, x_t.dtype, "out", x_t.device.type)
        if x_t.device.type == "meta":
            return
        check_layout(out, x_t, "out")
        perm = perm_values(c.v("perm"))
        k = lam_values(c.v("coeff"), x_t.shape[0])
        check_finite_out(out, finite_t(x_t) and np.isfinite(k).all(), "out")
        check_mixed(out, x_t, perm, k, "interpolate")
        if c.extra["grad"]:
            check_grad(res["grad"], x_t, perm, k,
                       random_weights(c.extra["w_seed"], tuple(x_t.shape)))

    return Case("functional.interpolate", args, run, check, extra=extra)


# --- kmixup.functional.kernel_mix


def check_kernel_mix_result(case: Case, res: Any, *, raw: bool = False) -> None:
    out = res["out"]
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        fail("wrong result type", f"got {show(out)}")
    mixed, coeff = out
    x_t = res.get("x0", case.v("x"))  # x before the call (mixed in place, x is the result)
    batch = x_t.shape[0]
    if res.get("into") is not None and mixed is not res["into"]:
        fail("in-place/out= result is not the given tensor", f"got {show(mixed)}")
    expect_tensor(mixed, x_t.shape, x_t.dtype, "mixed", x_t.device.type)
    expect_tensor(coeff, (batch,), acc_dtype(x_t.dtype), "coeff", x_t.device.type)
    if x_t.device.type == "meta":
        return
    check_layout(mixed, x_t, "mixed")
    perm = perm_values(case.v("perm"))
    lam = lam_values(case.v("lam"), batch)
    feats = res.get("feats0", case.v("feats"))
    f_t = x_t if feats is None else feats
    warping = case.v("warping", "beta_cdf")
    if batch <= 1 and not raw:
        k = np64(coeff)
        if (k != 1).any() or not bool((mixed == x_t).logical_or(mixed.isnan() & x_t.isnan()).all()):
            fail("batch of <= 1 not passed through unmixed", f"coeff={k.tolist()}")
        return
    if raw and batch <= 1:
        check_unit(coeff, "coeff")
        return
    k = check_coefficients(coeff, f_t, perm, lam, case.v("tau_max", 1.0),
                           case.v("tau_std", 0.25), warping)
    check_finite_out(mixed, finite_t(x_t), "mixed")
    if warping != "none":
        _, _, _, unmixed = coefficient_bounds(np64(f_t), f_t.dtype, perm, lam, 1.0, 1.0,
                                              "none")
        x, got = np64(x_t), np64(mixed)
        rows = np.flatnonzero(unmixed)
        if not all(same(got[i], x[i], 0.0).all() for i in rows):
            fail("non-finite distance not left unmixed (row is not a copy of x[i])",
                 f"rows {rows.tolist()}")
    check_mixed(mixed, x_t, perm, k)
    if res.get("grad") is not None or case.extra.get("grad"):
        check_grad(res.get("grad"), x_t, perm, k,
                   random_weights(case.extra["w_seed"], tuple(x_t.shape)))


def lam_python_checked(arg: Arg) -> None:
    """A Python-number lam outside [0, 1] is refused whatever ``validate`` says (it is on
    the host already: checking it costs no sync)."""
    if arg.kind == LAX and isinstance(arg.value, float):
        arg.kind = BAD


@target("functional.kernel_mix", weight=6)
def gen_kernel_mix(rg: Rng) -> Case:
    """The fused op with feats, validate, out=, process_group; hostile any argument, out=
    buffers, all-meta calls; optional backward."""
    return gen_kernel_mix_variant(rg, in_place=False)


@target("functional.kernel_mix_", weight=3)
def gen_kernel_mix_in_place(rg: Rng) -> Case:
    """kernel_mix_: x mixed in place (feats may be x); hostile: x requiring grad or not
    dense, and every kernel_mix argument."""
    return gen_kernel_mix_variant(rg, in_place=True)


def gen_kernel_mix_variant(rg: Rng, in_place: bool) -> Case:
    """kernel_mix (with or without out=) or kernel_mix_ (x mixed in place)."""
    names = ["x", "perm", "lam", "feats", "tau_max", "tau_std", "warping", "process_group",
             "batch", "all_meta", "out"]
    weights = [2, 4, 3, 2, 1.5, 1.5, 1, 1, 1, 0.5, 0 if in_place else 1.5]
    if in_place:
        names, weights = names[:-1], weights[:-1]
    bad = choose_hostile(rg, names, weights, p_valid=0.35)
    validate = rg.pick([None, True, False, np.bool_(True)], [3, 1, 2, 0.5])
    validating = validate is None or bool(validate)
    batch = batch_size(rg)
    shape = (batch, *tail_shape(rg))
    args = {"x": float_arg(rg, shape, bad == "x"),
            "perm": perm_arg(rg, batch, bad == "perm", validating=validating),
            "lam": lam_arg(rg, batch, bad == "lam", validating=validating)}
    lam_python_checked(args["lam"])
    x = args["x"]
    if in_place and x.kind == OK and not dense_rows(x.value):
        if bad in (None, "x"):
            x.kind, x.tag = BAD, x.tag + ",not dense (in place)"
        else:  # one hostile argument per case
            x.value = x.value.contiguous()
    if in_place and bad == "x" and rg.chance(0.4):  # autograd needs x's values
        x.value, x.kind, x.tag = float_tensor(rg, shape, layout=False)[0], BAD, "requires_grad"
        x.value.requires_grad_(True)
    if bad == "batch":
        which = rg.pick(["x_0d", "feats_batch"])
        if which == "x_0d":
            args["x"] = Arg(torch.tensor(0.5), BAD, "0-d")
            args["perm"] = Arg(torch.tensor([0]))
            args["lam"] = Arg(0.5)
        else:
            args["feats"] = Arg(torch.randn(batch + 1, 3), BAD, f"batch={batch + 1}")
    if bad == "feats":
        args["feats"] = float_arg(rg, (batch, 3), True)
        if args["feats"].value is None:
            args["feats"] = Arg(torch.randn(batch, 3).tolist(), BAD, "list")
    elif "feats" not in args and rg.chance(0.35):
        fshape = rg.pick([(batch, 4), (batch,), (batch, 2, 3), (batch, 37)])
        args["feats"] = float_arg(rg, fshape)
    elif "feats" not in args and in_place and rg.chance(0.3):
        args["feats"] = Arg(args["x"].value, OK, "feats is x")  # allowed: distances first
    for name in ("tau_max", "tau_std"):
        if rg.chance(0.75) or bad == name:
            args[name] = positive_arg(rg, bad == name)
    args["warping"] = warping_arg(rg, bad == "warping")
    args["validate"] = Arg(validate)
    if bad == "process_group":
        junk = rg.pick(["world", 0, object(), 1.5, True])
        kind = BAD if args["warping"].value != "none" else LAX
        args["process_group"] = Arg(junk, kind, f"junk={show(junk)}")
    if bad == "all_meta":  # everything on the meta device: no values, metadata only
        for name in ("x", "perm", "lam", "feats"):
            arg = args.get(name)
            if arg is not None and isinstance(arg.value, torch.Tensor):
                arg.value = arg.value.to("meta")
        if validating:
            args["validate"] = Arg(rg.pick([None, False]))
        args["x"].kind, args["x"].tag = MAYBE, "all_meta"
    x = args["x"]
    if not in_place and (bad == "out" or rg.chance(0.25)) and isinstance(x.value, torch.Tensor):
        args["out"] = out_arg(rg, x.value, bad == "out")
    grad = (x.kind == OK and isinstance(x.value, torch.Tensor) and x.value.dtype in OK_FLOATS
            and not in_place and "out" not in args and rg.chance(0.4))
    extra = {"grad": grad, "w_seed": rg.seed(), "in_place": in_place}

    def run(c: Case):
        x = c.v("x")
        if c.extra["grad"]:
            x = x.detach().requires_grad_(True)
        kw = {n: c.v(n) for n in ("feats", "tau_max", "tau_std", "warping", "validate",
                                  "process_group", "out") if n in c.args}
        res = inputs_before(x, kw.get("feats"))
        if c.extra["in_place"]:
            out = F.kernel_mix_(x, c.v("perm"), c.v("lam"), **kw)
            res["into"] = x
        else:
            out = F.kernel_mix(x, c.v("perm"), c.v("lam"), **kw)
            res["into"] = kw.get("out")
        grad = None
        if c.extra["grad"]:
            w = torch.from_numpy(random_weights(c.extra["w_seed"], tuple(x.shape)))
            (out[0].double() * w).sum().backward()
            grad = x.grad
        return {**res, "out": out, "grad": grad}

    name = "functional.kernel_mix_" if in_place else "functional.kernel_mix"
    case = Case(name, args, run, check_kernel_mix_result, extra=extra)
    if "out" in args:
        case.also["out"] = ("x",)
    if bad == "batch":
        case.also["x"] = ("feats",)
        case.also["feats"] = ("x",)
    return case


def inputs_before(x: Any, feats: Any) -> dict:
    """Copies of x (and of feats when it is x) as they were before a call that may write
    into x: what the checker compares the result with."""
    if not isinstance(x, torch.Tensor) or x.device.type == "meta":
        return {}
    x0 = x.detach().clone()
    res = {"x0": x0}
    if feats is x:
        res["feats0"] = x0
    return res


def out_arg(rg: Rng, x: torch.Tensor, hostile: bool) -> Arg:
    """A preallocated out= buffer for x; hostile: another shape, dtype or layout, x itself,
    one that requires grad, or not a tensor."""
    if not hostile or x.device.type == "meta":
        return Arg(empty_like_rows(x) if x.device.type != "meta" else torch.empty_like(x))
    how = rg.pick(["shape", "dtype", "layout", "x itself", "requires_grad", "list", "meta"])
    if how == "shape":
        value = torch.empty((x.shape[0] + 1, *x.shape[1:]), dtype=x.dtype)
    elif how == "dtype":
        value = torch.empty(x.shape, dtype=torch.float64 if x.dtype != torch.float64
                            else torch.float32)
    elif how == "layout" and x.dim() >= 1 and x.numel() > 1:
        value = relayout(torch.empty(x.shape, dtype=x.dtype), "noncontig")
        if dense_rows(value):
            value = torch.empty(x.shape, dtype=x.dtype).as_strided(x.shape, [0] * x.dim())
    elif how == "x itself":
        value = x
    elif how == "requires_grad" and x.dtype in OK_FLOATS:
        value = torch.empty(x.shape, dtype=x.dtype, requires_grad=True)
    elif how == "meta":
        value = torch.empty(x.shape, dtype=x.dtype, device="meta")
    else:
        value = [0.0] * max(1, x.shape[0] if x.dim() else 1)
    return Arg(value, BAD, how)


# --- kmixup.functional.mix_targets


@target("functional.mix_targets", weight=2)
def gen_mix_targets(rg: Rng) -> Case:
    """Class indices, soft labels, regression targets; hostile y, perm, coeff,
    num_classes, label_smoothing."""
    bad = choose_hostile(rg, ["y", "perm", "coeff", "num_classes", "label_smoothing"],
                         [3, 2, 2, 2, 1.5])
    validate = rg.pick([None, True, False], [3, 1, 1.5])
    validating = validate is not False
    batch = batch_size(rg)
    kind = rg.pick(["class", "soft", "regression"], [4, 2, 2])
    ncls = rg.pick([1, 2, 3, 10])
    if kind == "class":
        y = torch.from_numpy(rg.integers(0, ncls, batch)).to(
            rg.pick([torch.int64, torch.int32, torch.uint8, torch.int16]))
    elif kind == "soft":
        y, _ = float_tensor(rg, (batch, ncls), finite=rg.chance(0.8), layout=True)
    else:
        y, _ = float_tensor(rg, rg.pick([(batch,), (batch, 2)]))
    num_classes: Any = None if kind == "regression" else rg.pick(
        [ncls, ncls, np.int64(ncls), np.int32(ncls)])
    args = {"y": Arg(y, OK, kind),
            "perm": perm_arg(rg, batch, bad == "perm", validating=validating),
            "coeff": lam_arg(rg, batch, bad == "coeff", validating=validating),
            "num_classes": Arg(num_classes),
            "label_smoothing": Arg(rg.pick([0.0, 0.1, 0.5, 0.99, np.float32(0.2), 0]))}
    coeff = args["coeff"]
    if isinstance(coeff.value, (int, float)) and not isinstance(coeff.value, bool):
        coeff.value = torch.tensor(float(coeff.value), dtype=rg.pick([torch.float32,
                                                                      torch.float64]))
        w = float(coeff.value)
        if coeff.kind != OK and 0 <= w <= 1:  # -5e-324 is -0.0 in float32
            coeff.kind, coeff.tag = OK, coeff.tag + " rounded into [0, 1]"
    if batch == 0:
        args["y"].kind, args["y"].tag = MAYBE, "batch=0"
    also = {}
    if bad == "y":
        how = rg.pick(["out_of_range", "bool", "complex", "float8", "batch", "2-d_int", "list",
                       "soft_width"])
        if how == "out_of_range" and kind == "class" and batch:
            yv = y.long().clone()
            yv[int(rg.integers(batch))] = rg.pick([ncls, -1, 1 << 40])
            args["y"] = Arg(yv, BAD if validating else LAX, "class out_of_range")
        elif how == "batch":
            args["y"] = Arg(torch.zeros(batch + 1, dtype=torch.int64), BAD, "batch mismatch")
            args["num_classes"] = Arg(ncls)
            also["y"] = ("perm", "coeff")
        elif how == "2-d_int":
            args["y"] = Arg(torch.zeros(batch, 1, dtype=torch.int64), BAD, "2-d class indices")
            args["num_classes"] = Arg(ncls)
        elif how == "soft_width":
            args["y"] = Arg(torch.rand(batch, ncls + 1), BAD, "soft labels width")
            args["num_classes"] = Arg(ncls)
            also["y"] = ("num_classes",)
        elif how == "list":
            args["y"] = Arg([0] * batch, BAD, "list")
        else:
            dtype = {"bool": torch.bool, "complex": torch.complex64,
                     "float8": torch.float8_e4m3fn}.get(how, torch.bool)
            args["y"] = Arg(torch.zeros(batch, dtype=dtype), BAD, f"dtype={how}")
            args["num_classes"] = Arg(max(ncls, 2))
    if bad == "num_classes":
        if kind == "class":
            v = rg.pick([0, -1, 2.5, True, "3", None, np.float64(3.0)])
        else:  # soft labels of another width, or a junk count
            v = rg.pick([ncls + 1, 0, "3", 2.5])
        yv = args["y"].value
        # Floating targets as wide as the count are soft labels: a valid call after all.
        soft = isinstance(yv, torch.Tensor) and yv.is_floating_point() and yv.dim() == 2
        fits = soft and type(v) is int and yv.shape[1] == v
        args["num_classes"] = Arg(v, OK if fits else BAD, f"value={show(v)}")
        also["num_classes"] = ("y",)
    if bad == "label_smoothing":
        v = rg.pick([1.0, -0.1, math.nan, None, True, "0.1", math.inf])
        args["label_smoothing"] = Arg(v, BAD, f"value={show(v)}")
    args["validate"] = Arg(validate)

    def run(c: Case):
        return F.mix_targets(c.v("y"), c.v("perm"), c.v("coeff"), num_classes=c.v("num_classes"),
                             label_smoothing=c.v("label_smoothing"), validate=c.v("validate"))

    def check(c: Case, out: Any) -> None:
        y_t, coeff_t = c.v("y"), c.v("coeff")
        batch = y_t.shape[0]
        perm = perm_values(c.v("perm"))
        k = lam_values(coeff_t, batch)
        if y_t.dtype.is_floating_point:
            expect_tensor(out, y_t.shape, y_t.dtype, "mixed targets")
            check_finite_out(out, finite_t(y_t) and np.isfinite(k).all(), "mixed targets")
            check_mixed(out, y_t, perm, k, "mixed targets")
            return
        ncls = int(c.v("num_classes"))
        expect_tensor(out, (batch, ncls), acc_dtype(coeff_t.dtype), "mixed targets")
        onehot = torch.from_numpy(one_hot(y_t.long().numpy(), c.v("num_classes"),
                                          c.v("label_smoothing")))
        check_mixed(out, onehot.to(out.dtype), perm, k, "mixed targets")

    return Case("functional.mix_targets", args, run, check, also=also)


# --- KernelMixup / Mixup


def mixer_targets(rg: Rng, batch: int, kind: str, ncls: int) -> torch.Tensor:
    if kind == "class":
        return torch.from_numpy(rg.integers(0, ncls, batch)).to(
            rg.pick([torch.int64, torch.int32, torch.uint8]))
    if kind == "soft":
        p = np.abs(rg.normal((batch, ncls))) + 0.1
        return torch.from_numpy(p / p.sum(1, keepdims=True)).to(
            rg.pick([torch.float32, torch.float64]))
    t, _ = float_tensor(rg, rg.pick([(batch,), (batch, 2)]), layout=False)
    return t


def check_mixer_call(mixer: Any, x_t, target, feats, mixed, mixed_target) -> None:
    """A KernelMixup/Mixup call (x, target[, feats]) -> (mixed, mixed_target) against the
    oracle, using the draw the mixer recorded (last_perm, last_lam)."""
    batch = x_t.shape[0]
    expect_tensor(mixed, x_t.shape, x_t.dtype, "mixed x")
    check_layout(mixed, x_t, "mixed x")
    classes = not target.dtype.is_floating_point
    ncls = mixer.num_classes
    coeff_dtype = acc_dtype(x_t.dtype)
    if classes:
        expect_tensor(mixed_target, (batch, int(ncls)), coeff_dtype, "mixed target")
    else:
        expect_tensor(mixed_target, target.shape, target.dtype, "mixed target")
    y_ref = (torch.from_numpy(one_hot(target.long().numpy(), ncls, mixer.label_smoothing))
             if classes else target)
    if batch <= 1:
        same_x = bool((mixed == x_t).logical_or(mixed.isnan() & x_t.isnan()).all())
        if not same_x:
            fail("batch of <= 1 not passed through unmixed", f"mixed={show(mixed)}")
        if mixer.last_coeff is not None and bool((mixer.last_coeff != 1).any()):
            fail("batch of <= 1 not passed through unmixed", f"coeff={show(mixer.last_coeff)}")
        check_mixed(mixed_target, y_ref.to(mixed_target.dtype), np.arange(batch),
                    np.ones(batch), "mixed target")
        return
    perm_t, lam_t, coeff = mixer.last_perm, mixer.last_lam, mixer.last_coeff
    perm = perm_values(perm_t)
    if sorted(perm.tolist()) != list(range(batch)):
        fail("drawn perm is not a permutation", show(perm_t))
    lam = lam_values(lam_t, batch)
    if not (np.isfinite(lam) & (lam >= 0) & (lam <= 1)).all():
        fail("drawn lam outside [0, 1] or NaN", show(lam_t))
    if mixer.dominant_anchor and (lam < 0.5).any():
        fail("dominant_anchor lam below 0.5", show(lam_t))
    expect_tensor(coeff, (batch,), coeff_dtype, "last_coeff")
    f_t = x_t if feats is None else feats
    k = check_coefficients(coeff, f_t, perm, lam, mixer.tau_max, mixer.tau_std, mixer.warping,
                           "last_coeff")
    check_finite_out(mixed, finite_t(x_t), "mixed x")
    check_mixed(mixed, x_t, perm, k, "mixed x")
    tk = k
    if not classes and ncls is None and mixer.target_tau_max is not None:
        tk = check_coefficients(mixer.last_target_coeff, target, perm, lam,
                                mixer.target_tau_max, mixer.target_tau_std, mixer.warping,
                                "last_target_coeff")
    check_mixed(mixed_target, y_ref.to(mixed_target.dtype), perm, tk, "mixed target")


def mixer_ctor_args(rg: Rng, bad: str | None, plain: bool, kind: str, ncls: int):
    args: dict[str, Arg] = {}
    if kind != "regression" or bad == "num_classes":
        args["num_classes"] = Arg(rg.pick([ncls, ncls, np.int64(ncls), np.int32(ncls)]))
    if bad == "num_classes":
        v = rg.pick([0, -1, 2.5, True, "10", np.float64(3.0)])
        args["num_classes"] = Arg(v, BAD, f"value={show(v)}")
    if rg.chance(0.6) or bad == "alpha":
        args["alpha"] = positive_arg(rg, bad == "alpha")
    if not plain:
        for name in ("tau_max", "tau_std"):
            if rg.chance(0.6) or bad == name:
                args[name] = positive_arg(rg, bad == name)
        if rg.chance(0.7) or bad == "warping":
            args["warping"] = warping_arg(rg, bad == "warping")
    if rg.chance(0.4) or bad == "mode":
        args["mode"] = Arg(rg.pick(["elem", "batch"]))
        if bad == "mode":
            args["mode"] = Arg(rg.pick(["sample", "", None, 1]), BAD, "junk")
    if rg.chance(0.4) or bad == "label_smoothing":
        args["label_smoothing"] = Arg(rg.pick([0.0, 0.1, 0.3, np.float32(0.2)]))
        if bad == "label_smoothing":
            v = rg.pick([1.0, -0.1, math.nan, None, True])
            args["label_smoothing"] = Arg(v, BAD, f"value={show(v)}")
    if not plain and kind == "regression" and (rg.chance(0.5) or bad == "target_tau_max"):
        args["target_tau_max"] = positive_arg(rg, bad == "target_tau_max")
        if rg.chance(0.5):
            args["target_tau_std"] = positive_arg(rg)
    if not plain and bad == "target_tau_max" and kind != "regression":
        args["target_tau_max"] = Arg(1.0, BAD, "with num_classes")
    if rg.chance(0.25):
        args["inplace"] = Arg(rg.pick([True, False]))
    if rg.chance(0.3) or bad == "generator":
        args["generator"] = Arg(torch.Generator().manual_seed(rg.seed()))
        if bad == "generator":
            v = rg.pick(["gen", 42, np.random.default_rng(0)])
            args["generator"] = Arg(v, BAD, f"junk={show(v)}")
    if not plain:
        if rg.chance(0.3):
            args["dominant_anchor"] = Arg(rg.pick([True, False]))
        if rg.chance(0.2):
            args["global_mean"] = Arg(True)
        if bad == "process_group":  # used only under torch.distributed: may be ignored
            args["process_group"] = Arg(rg.pick(["world", 0, object()]), LAX, "junk")
    return args


def gen_mixer(rg: Rng, plain: bool) -> Case:
    ctor_names = ["num_classes", "alpha", "mode", "label_smoothing", "generator"]
    if not plain:
        ctor_names += ["tau_max", "tau_std", "warping", "target_tau_max", "process_group"]
    names = ctor_names + ["x", "target", "feats"]
    bad = choose_hostile(rg, names, [1] * len(ctor_names) + [2, 3, 1], p_valid=0.45)
    kind = rg.pick(["class", "soft", "regression"], [5, 2, 2])
    ncls = rg.pick([2, 3, 10])
    ctor = mixer_ctor_args(rg, bad, plain, kind, ncls)
    batch = batch_size(rg)
    x = float_arg(rg, (batch, *tail_shape(rg)), bad == "x")
    target = mixer_targets(rg, batch, kind, ncls)
    call = {"x": x, "target": Arg(target, OK, kind)}
    also: dict[str, tuple[str, ...]] = {}
    if bad == "target":
        how = rg.pick(["batch", "out_of_range", "bool", "float8", "list", "soft_width", "2-d"])
        if how == "out_of_range" and kind == "class" and batch:
            yv = target.long().clone()
            yv[int(rg.integers(batch))] = rg.pick([ncls, -1])
            call["target"] = Arg(yv, BAD, "class out_of_range")
        elif how == "soft_width" and kind == "soft":
            call["target"] = Arg(torch.rand(batch, ncls + 1), BAD, "soft width")
            also["target"] = ("num_classes",)
        elif how == "bool":
            call["target"] = Arg(torch.zeros(batch, dtype=torch.bool), BAD, "dtype=bool")
        elif how == "float8":
            call["target"] = Arg(torch.zeros(batch, ncls).to(torch.float8_e4m3fn), BAD,
                                 "dtype=float8")
        elif how == "list":
            call["target"] = Arg([0] * batch, BAD, "list")
        elif how == "2-d" and kind == "class":
            call["target"] = Arg(target.long()[:, None], BAD, "2-d class indices")
        else:
            call["target"] = Arg(torch.zeros(batch + 1, dtype=torch.int64), BAD,
                                 f"batch={batch + 1}")
    if kind == "class" and "num_classes" not in ctor:
        call["target"].kind = BAD
        also["target"] = ("num_classes",)
    if bad == "target_tau_max" and kind != "regression":
        also["target_tau_max"] = ("num_classes",)
    if not plain and (rg.chance(0.3) or bad == "feats"):
        call["feats"] = float_arg(rg, (batch, rg.pick([3, 8])), bad == "feats")
        if call["feats"].value is None:  # None is the default, not hostile
            call["feats"] = Arg(torch.randn(batch, 3).tolist(), BAD, "list")
        if bad == "feats" and rg.chance(0.4):
            call["feats"] = Arg(torch.randn(batch + 1, 3), BAD, f"batch={batch + 1}")
    if rg.chance(0.2):
        call["call_inplace"] = Arg(rg.pick([None, True, False]))
    in_place = call.get("call_inplace", Arg(None)).value
    in_place = ctor.get("inplace", Arg(False)).value if in_place is None else in_place
    if in_place and x.kind == OK and not dense_rows(x.value):
        if bad in (None, "x"):
            x.kind, x.tag = BAD, x.tag + ",not dense (in place)"
        else:  # one hostile argument per case
            x.value = x.value.contiguous()
    args = {**ctor, **call}
    ctor_keys = tuple(ctor)

    def run(c: Case):
        cls = kmixup.Mixup if plain else kmixup.KernelMixup
        mixer = cls(**{k: c.v(k) for k in ctor_keys})
        kw = {"feats": c.v("feats")} if "feats" in c.args else {}
        if "call_inplace" in c.args:
            kw["inplace"] = c.v("call_inplace")
        res = inputs_before(c.v("x"), None)
        mixed, mixed_target = mixer(c.v("x"), c.v("target"), **kw)
        return {**res, "mixer": mixer, "out": (mixed, mixed_target)}

    def check(c: Case, res: Any) -> None:
        mixed, mixed_target = res["out"]
        check_mixer_call(res["mixer"], res.get("x0", c.v("x")), c.v("target"), c.v("feats"),
                         mixed, mixed_target)

    # x on another device than the generator or the target: either may be named
    also["x"] = ("generator", "target") if "generator" in ctor else ("target",)
    name = "Mixup" if plain else "KernelMixup"
    return Case(name, args, run, check, also=also, aliases={"target": ("y",)})


@target("KernelMixup", weight=5)
def gen_kernel_mixup(rg: Rng) -> Case:
    """Constructor arguments (numpy ints, extremes, inplace) and calls on any batch size;
    hostile constructor or call argument."""
    return gen_mixer(rg, plain=False)


@target("Mixup", weight=2)
def gen_plain_mixup(rg: Rng) -> Case:
    """Mixup: constructor and calls, as KernelMixup."""
    return gen_mixer(rg, plain=True)


# --- HiddenMixup


def small_model(seed: int, dtype=torch.float32) -> torch.nn.Sequential:
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.7)
    return model.to(dtype)


@target("HiddenMixup", weight=2)
def gen_hidden(rg: Rng) -> Case:
    """A small Sequential, layers by name/module/list; hostile model, layers, mixer,
    target."""
    bad = choose_hostile(rg, ["model", "layers", "mixer", "target"], [1, 3, 1.5, 1])
    model = small_model(rg.seed(), rg.pick([torch.float32, torch.float64], [3, 1]))
    layer_opts = ["0", "1", "2", ["0", "2"], ("1",), model[1], [model[0], "2"], ["2", "2"]]
    layers = Arg(rg.pick(layer_opts))
    if bad == "layers":
        v = rg.pick([0, np.int64(1), 1.5, None, [], "3", "nope", torch.nn.Linear(4, 6), [0],
                     ["0", 5]], [2, 2, 1, 1, 1, 1, 1, 1, 1, 1])
        layers = Arg(v, BAD, f"value={show(v)}")
    ncls = 3
    if rg.chance(0.6):
        mixer = kmixup.KernelMixup(num_classes=ncls, warping=rg.pick(WARPINGS[:2]),
                                   tau_std=rg.pick([0.25, 1.0, 1e-200, 5.0]),
                                   label_smoothing=rg.pick([0.0, 0.1]))
    else:
        mixer = kmixup.Mixup(num_classes=ncls)
    mixer_arg = Arg(mixer)
    if bad == "mixer":
        v = rg.pick([None, "mixer", lambda x, y: (x, y), kmixup.MixupCollate(mixer)])
        mixer_arg = Arg(v, BAD, f"junk={show(v)}")
    model_arg = Arg(model)
    if bad == "model":
        v = rg.pick([None, "model", lambda x: x, [model]])
        model_arg = Arg(v, BAD, f"junk={show(v)}")
    batch = batch_size(rg)
    x = torch.from_numpy(rg.normal((batch, 4))).to(next(model.parameters()).dtype)
    target = torch.from_numpy(rg.integers(0, ncls, batch))
    target_arg = Arg(target)
    if bad == "target":
        target_arg = Arg(torch.zeros(batch + 1, dtype=torch.int64), BAD, f"batch={batch + 1}")
    x_arg = Arg(x, MAYBE if batch <= 1 else OK, "batch<=1" if batch <= 1 else "")
    args = {"model": model_arg, "layers": layers, "mixer": mixer_arg, "x": x_arg,
            "target": target_arg}

    def run(c: Case):
        hidden = kmixup.HiddenMixup(c.v("model"), c.v("layers"), c.v("mixer"))
        try:
            out, mixed_target = hidden(c.v("x"), c.v("target"))
        finally:
            hidden.remove()
        return {"out": out, "mixed_target": mixed_target}

    def check(c: Case, res: Any) -> None:
        model, mixer, x_t = c.v("model"), c.v("mixer"), c.v("x")
        layers = c.v("layers")
        layers = [layers] if isinstance(layers, (str, torch.nn.Module)) else list(layers)
        mods = list(model)
        idx = sorted({int(m) if isinstance(m, str) else next(
            i for i, mm in enumerate(mods) if mm is m) for m in layers})
        out, mixed_target = res["out"], res["mixed_target"]
        batch = x_t.shape[0]
        expect_tensor(out, (batch, 3), x_t.dtype, "output")
        errors = []
        for layer in idx:
            try:
                check_hidden_layer(model, mixer, x_t, c.v("target"), layer, out, mixed_target)
                return
            except Failure as err:
                errors.append(err)
        raise errors[0]

    return Case("HiddenMixup", args, run, check, also={"x": ("target", "layers")},
                aliases={"target": ("y",)})


def check_hidden_layer(model, mixer, x_t, target, layer, out, mixed_target) -> None:
    """The model's output with mixing at ``layer``, recomputed: the activations up to it in
    torch (as the model runs), the coefficients against the oracle, the rest in float64."""
    batch = x_t.shape[0]
    with torch.no_grad():
        h = x_t
        for i, module in enumerate(model):
            h = module(h) if i <= layer else h
            if i == layer:
                break
        if batch <= 1:
            k = np.ones(batch)
            perm = np.arange(batch)
        else:
            perm = perm_values(mixer.last_perm)
            lam = lam_values(mixer.last_lam, batch)
            k = check_coefficients(mixer.last_coeff, h, perm, lam, mixer.tau_max,
                                   mixer.tau_std, mixer.warping, "last_coeff")
        h = torch.from_numpy(oracle.interpolate(np64(h), perm, k))
        for module in list(model)[layer + 1:]:
            if isinstance(module, torch.nn.Linear):  # the rest of the model in float64
                h = torch.nn.functional.linear(h, module.weight.double(), module.bias.double())
            else:
                h = module(h)
    got, want = np64(out), h.numpy()
    tol = (1e-4 if x_t.dtype != torch.float64 else 1e-10) * (1 + np.abs(want))
    ok = same(got, want, tol)
    if not ok.all():
        fail("output differs from oracle (mixed at the layer)", f"layer {layer}: " +
             worst(ok, got, want))
    y_ref = one_hot(target.numpy(), mixer.num_classes, mixer.label_smoothing)
    expect_tensor(mixed_target, (batch, 3), acc_dtype(x_t.dtype), "mixed target")
    check_mixed(mixed_target, torch.from_numpy(y_ref).to(mixed_target.dtype), perm, k,
                "mixed target")


# --- FeatureBank


@target("FeatureBank", weight=2)
def gen_bank(rg: Rng) -> Case:
    """Constructor (numpy ints, dtypes, devices), update then lookup (duplicates, unfilled
    entries); hostile any of them."""
    bad = choose_hostile(rg, ["num_samples", "dim", "device", "dtype", "index", "feats"],
                         [2, 1.5, 1, 1.5, 3, 2])
    n = int(rg.pick([1, 4, 6, 10]))
    dim = int(rg.pick([1, 3, 4]))
    args = {"num_samples": Arg(rg.pick([n, n, np.int64(n), np.int32(n)])),
            "dim": Arg(rg.pick([dim, dim, np.int64(dim)]))}
    if bad in ("num_samples", "dim"):
        v = rg.pick([0, -1, 2.5, True, "5", None, np.float64(4.0), torch.tensor(4)])
        args[bad] = Arg(v, BAD, f"value={show(v)}")
    if rg.chance(0.3) or bad == "device":
        args["device"] = Arg(rg.pick([None, "cpu", torch.device("cpu")]))
        if bad == "device":
            v = rg.pick(["cuda", "nope", 5, "meta"])
            args["device"] = Arg(v, LAX if v == "meta" else BAD, f"value={v!r}")
    if rg.chance(0.4) or bad == "dtype":
        args["dtype"] = Arg(rg.pick(OK_FLOATS))
        if bad == "dtype":
            v = rg.pick([torch.int64, torch.bool, "float32", torch.float8_e4m3fn,
                         torch.complex64, None])
            args["dtype"] = Arg(v, BAD, f"value={show(v)}")
    batch = int(rg.pick([0, 1, 2, 3, 5]))
    index = torch.from_numpy(rg.integers(0, n, batch)).to(
        rg.pick([torch.int64, torch.int32, torch.int16, torch.uint8] if n < 128 else
                [torch.int64]))
    fshape = rg.pick([(batch, dim), (batch, dim), (batch, dim, 1)] + (
        [(batch,)] if dim == 1 else []) + ([(batch, 2, 2)] if dim == 4 else []))
    feats, ftag = float_tensor(rg, fshape)
    args["index"] = Arg(index, OK, "duplicates" if len(set(index.tolist())) < batch else "")
    args["feats"] = Arg(feats, OK, ftag)
    if bad == "index":
        how = rg.pick(["out_of_range", "float", "2-d", "list", "ndarray", "bool", "0-d"])
        if how == "out_of_range":
            v = rg.pick([n, -1, 1 << 40, -(1 << 62)])
            index = torch.from_numpy(rg.integers(0, n, max(batch, 1)))
            index[0] = v
            value = index
            if feats.shape[0] != len(index):
                args["feats"] = Arg(torch.randn(len(index), dim))
        else:
            value = {"float": index.double(), "2-d": index[None], "list": index.tolist(),
                     "ndarray": index.numpy(), "bool": index > 0, "0-d": torch.tensor(0)}[how]
        args["index"] = Arg(value, BAD, how if how != "out_of_range" else f"out_of_range={v}")
    if bad == "feats":
        how = rg.pick(["dim", "batch", "int", "0-d", "list", "float8"])
        value = {"dim": torch.randn(batch, dim + 1), "batch": torch.randn(batch + 1, dim),
                 "int": torch.ones(batch, dim, dtype=torch.int64), "0-d": torch.tensor(1.0),
                 "list": [[0.0] * dim] * batch,
                 "float8": torch.randn(batch, dim).to(torch.float8_e5m2)}[how]
        args["feats"] = Arg(value, BAD, how)
    index2 = torch.from_numpy(rg.integers(0, n, int(rg.integers(1, 4))))
    extra = {"index2": index2, "ops": "update(index, feats); lookup(index); lookup(index2)"}

    def run(c: Case):
        kw = {k: c.v(k) for k in ("device", "dtype") if k in c.args}
        bank = kmixup.FeatureBank(c.v("num_samples"), c.v("dim"), **kw)
        bank.update(c.v("index"), c.v("feats"))
        return {"bank": bank, "r1": bank.lookup(c.v("index")),
                "r2": bank.lookup(c.extra["index2"])}

    def check(c: Case, res: Any) -> None:
        bank = res["bank"]
        dtype = c.v("dtype", torch.float32)
        dim = int(c.v("dim"))
        index = c.v("index").long().tolist()
        feats = c.v("feats").detach().reshape(len(index), dim).to(dtype)
        if bank.feats.device.type == "meta":
            return
        r1 = expect_tensor(res["r1"], (len(index), dim), dtype, "lookup(index)")
        for i, key in enumerate(index):
            rows = [feats[j] for j, other in enumerate(index) if other == key]
            if not any(bool(((r1[i] == r) | (r1[i].isnan() & r.isnan())).all()) for r in rows):
                fail("lookup does not return the stored row", f"index {key}: {show(r1[i])}")
        missing = set(c.extra["index2"].tolist()) - set(index)
        if missing and res["r2"] is not None:
            fail("lookup of never-written entries is not None", f"missing {sorted(missing)}")
        if not missing:
            expect_tensor(res["r2"], (len(c.extra["index2"]), dim), dtype, "lookup(index2)")

    also = {"feats": ("dim",), "dim": ("feats",)}
    return Case("FeatureBank", args, run, check, extra=extra, also=also)


# --- MixupCollate


@target("MixupCollate", weight=2)
def gen_collate(rg: Rng) -> Case:
    """Lists of samples (with an index field, batch 0/1); hostile mixer, collate_fn,
    samples."""
    from torch.utils.data import default_collate

    bad = choose_hostile(rg, ["mixer", "collate_fn", "samples"], [1, 1, 3])
    ncls = 3
    if rg.chance(0.6):
        mixer = kmixup.KernelMixup(num_classes=ncls, warping=rg.pick(WARPINGS[:2]),
                                   label_smoothing=rg.pick([0.0, 0.1]),
                                   mode=rg.pick(["elem", "batch"]))
    else:
        mixer = kmixup.Mixup(num_classes=ncls, label_smoothing=rg.pick([0.0, 0.2]))
    args = {"mixer": Arg(mixer)}
    if bad == "mixer":
        v = rg.pick([None, "mixer", 42])
        args["mixer"] = Arg(v, BAD, f"junk={show(v)}")
    if rg.chance(0.3) or bad == "collate_fn":
        args["collate_fn"] = Arg(rg.pick([None, default_collate]))
        if bad == "collate_fn":
            v = rg.pick(["collate", 42])
            args["collate_fn"] = Arg(v, BAD, f"junk={show(v)}")
    batch = batch_size(rg)
    xshape = rg.pick([(3,), (2, 2), (5,)])
    dtype = rg.pick([torch.float32, torch.float64])
    with_index = rg.chance(0.4)
    tensor_labels = rg.chance(0.5)
    samples = []
    for i in range(batch):
        xi = torch.from_numpy(make_data(rg, xshape, rg.pick(["normal", "normal", "nan",
                                                             "integers"]))).to(dtype)
        yi = int(rg.integers(0, ncls))
        yi = torch.tensor(yi) if tensor_labels else yi
        samples.append((xi, yi, i) if with_index else (xi, yi))
    args["samples"] = Arg(samples, MAYBE if batch == 0 else OK,
                          "empty" if batch == 0 else ("with index" if with_index else ""))
    also = {"samples": ("x", "target", "batch")}
    if bad == "samples":
        how = rg.pick(["bare_tensors", "ragged", "not_a_list", "label_out_of_range",
                       "float_label", "one_field"])
        if how == "bare_tensors":
            value = [s[0] for s in samples] or [torch.zeros(3)]
        elif how == "ragged":
            value = samples + [(torch.zeros(7), 0)] if samples else [(torch.zeros(3), 0),
                                                                     (torch.zeros(4), 1)]
        elif how == "not_a_list":
            value = rg.pick([None, torch.zeros(3, 3), "samples"])
        elif how == "label_out_of_range":
            value = [(s[0], ncls + 5) for s in samples] or [(torch.zeros(3), -1)]
        elif how == "float_label":
            value = [(s[0], 0.5) for s in samples] or [(torch.zeros(3), 0.5)]
            also["samples"] = ("x", "target", "num_classes", "y")
        else:
            value = [(s[0],) for s in samples] or [(torch.zeros(3),)]
        args["samples"] = Arg(value, BAD, how)

    def run(c: Case):
        kw = {"collate_fn": c.v("collate_fn")} if "collate_fn" in c.args else {}
        collate = kmixup.MixupCollate(c.v("mixer"), **kw)
        return {"out": collate(c.v("samples"))}

    def check(c: Case, res: Any) -> None:
        out, samples = res["out"], c.v("samples")
        width = len(samples[0]) if samples else 2
        if not isinstance(out, tuple) or len(out) != width:
            fail("wrong result type", f"got {show(out)}")
        if not samples:
            return
        x = torch.stack([s[0] for s in samples])
        target = torch.tensor([int(s[1]) for s in samples])
        if width == 3 and out[2].tolist() != [s[2] for s in samples]:
            fail("extra field not passed through", show(out[2]))
        check_mixer_call(c.v("mixer"), x, target, None, out[0], out[1])

    return Case("MixupCollate", args, run, check, also=also, aliases={"samples": ("y",)})


# --- raw torch.ops.kmixup


def raw_special(rg: Rng, name: str) -> Case:
    bad = choose_hostile(rg, ["a", "b", "t"], p_valid=0.4)
    shape = rg.pick([(), (0,), (1,), (5,), (2, 3)])
    dtype = rg.pick([torch.float32, torch.float64])
    pools = (SHAPES_POOL, SHAPES_POOL, POINTS_POOL)
    args = {}
    for arg_name, pool in zip(("a", "b", "t"), pools):
        vals = np.array([rg.pick(pool) for _ in range(int(np.prod(shape)))]).reshape(shape)
        t = torch.from_numpy(np.asarray(vals, float)).to(dtype)
        tag = ""
        if t.dim() and rg.chance(0.25):
            t, tag = relayout(t, rg.pick(["noncontig", "transposed", "batch_expanded"])), "layout"
        args[arg_name] = Arg(t, OK, tag)
        if arg_name == bad:
            how = rg.pick(["dtype", "half", "int", "float8", "shape", "broadcast", "meta", "float",
                           "None"])
            value = {
                "dtype": t.to(torch.float64 if dtype == torch.float32 else torch.float32),
                "half": t.half(), "int": t.nan_to_num().clamp(-5, 5).long(),
                "float8": t.to(torch.float8_e5m2), "shape": torch.ones(7), "broadcast":
                torch.ones((), dtype=dtype), "meta": t.to("meta"), "float": 0.5, "None": None,
            }[how]
            args[arg_name] = Arg(value, BAD if how in ("float", "None") else LAX, how)

    def run(c: Case):
        return getattr(OPS, name)(c.v("a"), c.v("b"), c.v("t"))

    inner = special_check(inverse=name == "betaincinv")

    def check(c: Case, out: Any) -> None:
        expect_tensor(out, c.v("t").shape, c.v("t").dtype, "result")
        inner(c, out)

    return Case(f"ops.{name}", args, run, check, raw=True)


@target("ops.betainc")
def gen_raw_betainc(rg: Rng) -> Case:
    """The raw op with malformed tensors (dtype/shape mismatch, layouts, meta)."""
    return raw_special(rg, "betainc")


@target("ops.betaincinv")
def gen_raw_betaincinv(rg: Rng) -> Case:
    """The raw op with malformed tensors (dtype/shape mismatch, layouts, meta)."""
    return raw_special(rg, "betaincinv")


def raw_rows(rg: Rng, batch: int, bad: str | None, name: str, *, finite=False) -> Arg:
    """x / f / grad / feats for a raw op: any float dtype and layout; hostile: lax."""
    shape = (batch, *tail_shape(rg))
    if bad != name:
        t, tag = float_tensor(rg, shape, finite=finite)
        return Arg(t, OK, tag)
    how = rg.pick(["int", "bool", "complex", "float8", "0-d", "meta", "list"])
    t, _ = float_tensor(rg, shape, finite=True, layout=False)
    value = {"int": t.long(), "bool": t > 0, "complex": t.to(torch.complex64),
             "float8": t.to(torch.float8_e4m3fn), "0-d": torch.tensor(1.0),
             "meta": t.to("meta"), "list": t.tolist()}[how]
    return Arg(value, BAD if how == "list" else LAX, how)


def raw_coeff(rg: Rng, batch: int, bad: str | None, name: str) -> Arg:
    """A [B] float32/float64 coefficient vector for a raw op; hostile: lax."""
    v = rg.uniform(size=batch)
    if batch >= 2 and rg.chance(0.5):
        v[0], v[-1] = 0.0, 1.0
    t = torch.from_numpy(v).to(rg.pick([torch.float32, torch.float64]))
    if rg.chance(0.15):
        t = relayout(t, "noncontig")
    if bad != name:
        return Arg(t)
    how = rg.pick(["half", "0-d", "[1]", "longer", "int", "meta", "outside", "nan", "2-d"])
    value = {"half": t.half(), "0-d": torch.tensor(0.3), "[1]": torch.tensor([0.3]),
             "longer": torch.rand(batch + 1), "int": torch.ones(batch, dtype=torch.int64),
             "meta": t.to("meta"), "outside": t * 3 - 1, "nan": t.clone().fill_(math.nan),
             "2-d": t[:, None]}[how]
    return Arg(value, LAX, how)


@target("ops.pair_sq_dist")
def gen_raw_pair_sq_dist(rg: Rng) -> Case:
    """The raw op: out-of-range perm must raise; malformed metadata may."""
    bad = choose_hostile(rg, ["f", "perm"], [1, 2])
    batch = batch_size(rg)
    args = {"f": raw_rows(rg, batch, bad, "f"),
            "perm": perm_arg(rg, batch, bad == "perm", raw=True)}
    return Case("ops.pair_sq_dist", args, lambda c: OPS.pair_sq_dist(c.v("f"), c.v("perm")),
                check_pair_sq_dist, raw=True)


@target("ops.kernel_mix", weight=2)
def gen_raw_kernel_mix(rg: Rng) -> Case:
    """The raw op: out-of-range perm must raise; malformed metadata may."""
    return raw_kernel_mix(rg, "kernel_mix")


@target("ops.kernel_mix_out")
def gen_raw_kernel_mix_out(rg: Rng) -> Case:
    """The raw out= op, with malformed out buffers too."""
    return raw_kernel_mix(rg, "kernel_mix_out")


@target("ops.kernel_mix_")
def gen_raw_kernel_mix_in_place(rg: Rng) -> Case:
    """The raw in-place op (x not dense: outside its contract)."""
    return raw_kernel_mix(rg, "kernel_mix_")


def raw_kernel_mix(rg: Rng, op: str) -> Case:
    names = ["x", "perm", "lam", "feats", "tau_max", "tau_std", "warping"]
    weights = [1, 3, 1.5, 1, 1, 1, 0.5]
    if op == "kernel_mix_out":
        names, weights = names + ["out"], weights + [1.5]
    bad = choose_hostile(rg, names, weights)
    batch = batch_size(rg)
    args = {"x": raw_rows(rg, batch, bad, "x"),
            "perm": perm_arg(rg, batch, bad == "perm", raw=True),
            "lam": raw_coeff(rg, batch, bad, "lam"),
            "feats": Arg(None)}
    if rg.chance(0.4) or bad == "feats":
        args["feats"] = raw_rows(rg, batch, bad, "feats")
        if bad == "feats" and rg.chance(0.4):
            args["feats"] = Arg(torch.randn(batch + 1, 3), LAX, "batch mismatch")
    for name in ("tau_max", "tau_std"):
        arg = positive_arg(rg, bad == name)
        if arg.kind != OK:  # a non-number must be refused; a 0-d tensor may pass as one
            numeric = isinstance(arg.value, (int, float, torch.Tensor))
            arg.kind = LAX if numeric else BAD
        elif not isinstance(arg.value, (int, float)):
            arg.value = float(arg.value)
        args[name] = arg
    args["warping"] = warping_arg(rg, bad == "warping")
    if args["warping"].kind != OK:  # a wrong name must be refused; bytes may convert
        args["warping"].kind = BAD if isinstance(args["warping"].value, str) else LAX
    x = args["x"]
    if op == "kernel_mix_" and x.kind == OK and not dense_rows(x.value):
        x.kind, x.tag = LAX, x.tag + ",not dense (in place)"  # outside the op's contract
    if op == "kernel_mix_out" and isinstance(x.value, torch.Tensor):
        args["out"] = out_arg(rg, x.value, bad == "out")
        if args["out"].kind == BAD:
            args["out"].kind = BAD if isinstance(args["out"].value, list) else LAX

    def run(c: Case):
        x = c.v("x")
        feats = x if c.v("feats") is None else c.v("feats")
        rest = (c.v("perm"), c.v("lam"), feats, c.v("tau_max"), c.v("tau_std"), c.v("warping"))
        res = inputs_before(x, feats)
        if op == "kernel_mix":
            return {**res, "out": OPS.kernel_mix(x, *rest)}
        if op == "kernel_mix_":
            return {**res, "out": (x, OPS.kernel_mix_(x, *rest))}
        out = c.v("out")
        return {**res, "out": (out, OPS.kernel_mix_out(x, *rest, out))}

    return Case(f"ops.{op}", args, run,
                lambda c, res: check_kernel_mix_result(c, res, raw=True), raw=True)


def gen_raw_rows(rg: Rng, name: str) -> Case:
    first = "x" if name == "interpolate" else "grad"
    bad = choose_hostile(rg, [first, "perm", "coeff"], [1, 3, 1])
    batch = batch_size(rg)
    args = {first: raw_rows(rg, batch, bad, first),
            "perm": perm_arg(rg, batch, bad == "perm", raw=True),
            "coeff": raw_coeff(rg, batch, bad, "coeff")}
    if args["coeff"].tag == "outside":
        args["coeff"].kind = MAYBE  # the formula is defined for any coefficient

    def run(c: Case):
        return getattr(OPS, name)(c.v(first), c.v("perm"), c.v("coeff"))

    def check(c: Case, out: Any) -> None:
        x_t = c.v(first)
        expect_tensor(out, x_t.shape, x_t.dtype, "out", x_t.device.type)
        if x_t.device.type == "meta":
            return
        perm, k = perm_values(c.v("perm")), np64(c.v("coeff"))
        if x_t.dtype != torch.float64:
            k = k.astype(np.float32).astype(float)
        if name == "interpolate":
            check_mixed(out, x_t, perm, k, "interpolate")
            return
        got = np64(out)
        ok, want = adjoint_close(got, np64(x_t), perm, k, RTOL.get(x_t.dtype, 1e-2),
                                 atol(x_t.dtype))
        if not ok.all():
            fail("interpolate_backward differs from the adjoint", worst(ok, got, want))

    return Case(f"ops.{name}", args, run, check, raw=True)


@target("ops.interpolate")
def gen_raw_interpolate(rg: Rng) -> Case:
    """The raw op: out-of-range perm must raise; a coefficient outside [0, 1] is the
    formula."""
    return gen_raw_rows(rg, "interpolate")


@target("ops.interpolate_backward")
def gen_raw_interpolate_backward(rg: Rng) -> Case:
    """The adjoint op, against the adjoint (duplicates: either convention of 0 * inf)."""
    return gen_raw_rows(rg, "interpolate_backward")


# ----------------------------------------------------------------------------- judging

SCHEDULE = [(name, gen, weight, k) for name, gen, weight in TARGETS for k in range(weight)]


def make_case(seed: int, index: int) -> Case:
    """Case ``index`` of the run seeded ``seed``: the target comes from a fixed schedule
    (so every target gets its share), the arguments from the case's own generator."""
    name, gen, weight, k = SCHEDULE[index % len(SCHEDULE)]
    occurrence = index // len(SCHEDULE) * weight + k  # how many cases of it came before
    torch.manual_seed(seed * 7919 + index)
    case = gen(Rng(seed, index, occurrence))
    case.index, case.target = index, name
    return case


def names_in(message: str, name: str) -> bool:
    """Whether an error message names ``name``: as a word, and for one-letter names (a, b,
    x, y, f) in a position an argument takes (``x must``, ``x:``, ``x's``...), not as the
    article "a"."""
    if len(name) > 1:
        return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", message) is not None
    if re.match(rf"(kmixup: )?{name}\s", message):  # "x requires grad: ..."
        return True
    pattern = (rf"(^|[\s(\[,'\"`]){name}(?=\s+(must|has|is|and|or|of|should|cannot|needs?|"
               rf"to|with|was|were|are|requires?)\b|[:;.,)'\"`\]=]|\s*$)")
    return re.search(pattern, message) is not None


def judge(case: Case) -> tuple[str | None, str]:
    """(failure kind or None, detail) of one call."""
    try:
        result = case.run(case)
    except Exception as err:  # noqa: BLE001 - classifying every error is the point
        return judge_error(case, err)
    hostile = case.hostile()
    bad = [n for n, a in hostile.items() if a.kind == BAD]
    if bad:
        tags = ", ".join(f"{n} ({hostile[n].tag})" for n in bad)
        return "accepted an invalid argument", f"{tags} accepted; returned {show(result)}"
    if any(a.kind == LAX for a in hostile.values()):
        return None, "returned (unchecked)"
    try:
        case.check(case, result)
    except Failure as failure:
        return failure.kind, failure.detail
    return None, "returned the oracle's answer"


DTYPE_TAGS = {"float8_tensor", "int_tensor", "complex_tensor", "int", "complex", "float8",
              "bool", "float"}


def wants_type_error(name: str, arg: Arg) -> bool:
    """An unsupported dtype: the contract asks for a TypeError naming the argument."""
    if name == "dtype":  # FeatureBank(dtype=...)
        return True
    return isinstance(arg.value, torch.Tensor) and (
        arg.tag.startswith("dtype=") or arg.tag in DTYPE_TAGS)


def judge_error(case: Case, err: Exception) -> tuple[str | None, str]:
    message = str(err)
    text = f"{type(err).__name__}: {message}"[:400]
    hostile = case.hostile()
    if not hostile:
        return f"valid call raised {type(err).__name__}", text
    if case.raw:
        return (None, text) if message.strip() else ("error without a message", text)
    if not isinstance(err, ERROR_TYPES):
        return f"error of type {type(err).__name__}", text
    names = set(hostile)
    for name in hostile:
        names.update(case.also.get(name, ()))
    if any(names_in(message, n) for n in names):
        named = [n for n, a in hostile.items()
                 if any(names_in(message, m) for m in (n, *case.also.get(n, ())))]
        dtype_args = [n for n, a in hostile.items() if wants_type_error(n, a)]
        if named and all(n in dtype_args for n in named) and not isinstance(err, TypeError):
            return (f"{type(err).__name__}, not TypeError, for an unsupported dtype of "
                    f"{'/'.join(dtype_args)}", text)
        return None, text
    aliases = {a for n in hostile for a in case.aliases.get(n, ())}
    if any(names_in(message, a) for a in aliases):
        return f"error names an internal alias, not {'/'.join(sorted(hostile))}", text
    blamed = [n for n in case.args if n not in names and names_in(message, n)]
    if blamed:
        return f"error blames the valid argument {blamed[0]}", text
    return f"error does not name {'/'.join(sorted(hostile))} ({type(err).__name__})", text


def run_case(seed: int, index: int, announce: Callable[[dict], None] | None = None) -> dict:
    """Generate and run one case; the outcome as a JSON-able dict. ``announce`` gets the
    case's target and description before it runs."""
    warnings.simplefilter("ignore")
    random.seed(seed * 7919 + index)
    try:
        case = make_case(seed, index)
    except Exception:  # noqa: BLE001 - a harness bug must not pass as a library failure
        return {"case": index, "target": SCHEDULE[index % len(SCHEDULE)][0],
                "kind": "harness error (generator)", "desc": "",
                "detail": traceback.format_exc(limit=4)[-600:], "tags": []}
    desc = case.describe()
    if announce is not None:
        announce({"target": case.target, "desc": desc, "tags": case.tags()})
    try:
        kind, detail = judge(case)
    except Exception:  # noqa: BLE001
        kind, detail = "harness error (checker)", traceback.format_exc(limit=4)[-600:]
    return {"case": index, "target": case.target, "kind": kind, "desc": desc,
            "detail": detail, "tags": case.tags()}


def describe_case(seed: int, index: int) -> dict:
    case = make_case(seed, index)
    return {"case": index, "target": case.target, "desc": case.describe(), "tags": case.tags()}


# ----------------------------------------------------------------------------- worker


def serve(seed: int, commands, out) -> None:
    """The worker loop: read ``RUN start stop`` lines; for each case write ``{"begin": ...}``
    then its outcome as one JSON line, flushed before the next case starts, so the parent
    knows which case was running if this process dies."""
    out.write(json.dumps({"hello": kmixup.backend_info()}) + "\n")
    out.flush()
    # test_fuzz.py's self-test: "late:N" aborts in case N unless it is the first case this
    # process runs, "hang:N" sleeps in case N.
    selftest = os.environ.get("KMIXUP_FUZZ_SELFTEST", "").split(",")
    ran = 0
    for line in commands:
        cmd = line.split()
        if not cmd or cmd[0] != "RUN":
            break
        for index in range(int(cmd[1]), int(cmd[2])):
            def announce(info: dict, index: int = index, late: bool = ran > 0) -> None:
                out.write(json.dumps({"begin": index, **info}) + "\n")
                out.flush()
                if late and f"late:{index}" in selftest:
                    os.abort()
                if f"hang:{index}" in selftest:
                    time.sleep(3600)

            ran += 1
            out.write(json.dumps(run_case(seed, index, announce)) + "\n")
            out.flush()
        out.write(json.dumps({"done": True}) + "\n")
        out.flush()


def fork_server(seed: int, control_fd: int) -> None:
    """``--fork-server``: everything is imported once, here; tests/test_fuzz.py then asks
    for workers over the control socket (``FORK`` with a socket and a stderr file
    attached), and each is a fork of this process, in a session of its own, serving cases
    over that socket. A worker that crashes or hangs costs a fork, not an interpreter
    start. ``WAIT pid`` reaps a worker and answers its exit code (-signal if killed).
    No torch op runs in this process, so no thread pool exists to be lost in a fork."""
    import socket

    control = socket.socket(fileno=control_fd)
    control.send(json.dumps({"hello": kmixup.backend_info()}).encode())
    while True:
        msg, fds, _, _ = socket.recv_fds(control, 4096, 2)
        cmd = msg.decode().split()
        if not cmd:
            os._exit(0)  # the parent is gone (no interpreter teardown to wait for)
        if cmd[0] == "FORK":
            channel, stderr = fds
            pid = os.fork()
            if pid == 0:
                try:
                    control.close()
                    os.setsid()
                    os.dup2(stderr, 1)  # stray prints and faulthandler's report
                    os.dup2(stderr, 2)
                    sock = socket.socket(fileno=channel)
                    serve(seed, sock.makefile("r"), sock.makefile("w"))
                finally:
                    os._exit(0)
            os.close(channel)
            os.close(stderr)
            control.send(f"PID {pid}".encode())
        elif cmd[0] == "WAIT":
            _, status = os.waitpid(int(cmd[1]), 0)
            control.send(f"STATUS {os.waitstatus_to_exitcode(status)}".encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--case", type=int, nargs="+", default=[], help="replay these cases here")
    parser.add_argument("--range", type=int, nargs=2, metavar=("START", "STOP"),
                        help="replay cases START..STOP-1 in sequence, in this one process")
    parser.add_argument("--show", action="store_true", help="print the cases, do not run them")
    parser.add_argument("--list", action="store_true", help="print the table of targets")
    parser.add_argument("--fork-server", type=int, metavar="FD",
                        help="serve tests/test_fuzz.py over this socket")
    opts = parser.parse_args()
    if opts.fork_server is not None:
        fork_server(opts.seed, opts.fork_server)
        return
    if opts.list:
        for name, gen, weight in TARGETS:
            doc = (gen.__doc__ or "").strip().splitlines()
            print(f"{name:28s} weight {weight}  {doc[0] if doc else ''}")
        return
    print(f"backend: {kmixup.backend_info()}")
    for index in opts.case + (list(range(*opts.range)) if opts.range else []):
        if opts.show:
            print(json.dumps(describe_case(opts.seed, index), indent=1))
            continue
        print(f"case {index}: {describe_case(opts.seed, index)['desc']}", flush=True)
        result = run_case(opts.seed, index)
        print(f"  -> {'OK' if result['kind'] is None else 'FAIL: ' + result['kind']}")
        print(f"     {result['detail']}")


if __name__ == "__main__":
    main()
