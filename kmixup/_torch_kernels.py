"""Pure-PyTorch kernels of the kmixup ops: the reference every compiled kernel is tested
against, and what serves a device that has no compiled kernel.

Each function implements one schema of ``csrc/kmixup.cpp`` on inputs that already meet
its contract (the public API in :mod:`kmixup.functional` validates first). Nothing here
reads tensor data on the host, so no device sync and clean ``torch.compile`` traces.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import special


def float_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """float64 if any input is float64, else float32 (half types are widened)."""
    return torch.float64 if torch.float64 in dtypes else torch.float32


def memory_format(x: Tensor) -> torch.memory_format:
    """The memory format outputs of ``x`` keep: channels_last(_3d) if ``x`` is in it."""
    if not x.is_contiguous():
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            return torch.channels_last
        if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
            return torch.channels_last_3d
    return torch.contiguous_format


def empty_like_rows(x: Tensor) -> Tensor:
    """An uninitialised output shaped, typed and laid out as the kernels return it."""
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format(x))


def finite_sum_count(sq_dist: Tensor) -> Tensor:
    """``[sum, count]`` (float64) of the finite distances: the statistics behind the batch
    mean, summed as they are over the ranks of a distributed batch."""
    d = sq_dist.double()
    finite = torch.isfinite(d)
    return torch.stack([torch.where(finite, d, 0.0).sum(), finite.sum().double()])


def tau64(
    sq_dist: Tensor, tau_max: float, tau_std: float, sum_count: Tensor | None = None
) -> Tensor:
    """Steps 2-3: batch-normalised distance to similarity, float64; non-finite d -> 0.

    The mean is over the finite entries of ``sq_dist``, or ``sum / count`` of the given
    ``sum_count`` (see :func:`finite_sum_count`)."""
    d = sq_dist.double()
    finite = torch.isfinite(d)
    d_fin = torch.where(finite, d, 0.0)
    total, count = finite_sum_count(d) if sum_count is None else sum_count.double()
    mean = total / count.clamp(min=1)
    positive = mean > 0
    dn = torch.where(positive, d_fin / torch.where(positive, mean, 1.0), 0.0)
    dn = torch.where(finite, dn, torch.inf)
    # As csrc/special.h's similarity_tau: dn == 1 is tau_max exactly, also when tau_std**2
    # underflows to 0 (the step-kernel limit), and extremes of tau_max and of the exponent
    # cancel in the log instead of overflowing.
    excess = dn - 1.0
    exponent = torch.where(excess == 0, 0.0, excess / (2.0 * (tau_std * tau_std)))
    return torch.exp(math.log(tau_max) - exponent)


def warp64(
    lam: Tensor, tau: Tensor, warping: str, betainc=special.betainc_torch,
    betaincinv=special.betaincinv_torch,
) -> Tensor:
    """Step 4 in float64: the warped coefficient of each pair (``lam`` and ``tau`` of one
    shape), with the given special functions (the public ops, or their torch kernels)."""
    lam, tau = lam.double(), tau.double()
    if warping == "beta_cdf":
        shape = 1.0 / tau  # tau = 0 -> inf (step at 0.5); tau = inf -> 0 (constant 0.5)
        return betainc(shape, shape, lam).double()
    if warping == "inverse_beta_cdf":
        return betaincinv(tau, tau, lam).double()
    return lam.clone()


def pair_sq_dist(f: Tensor, perm: Tensor) -> Tensor:
    acc = float_dtype(f.dtype)
    diff = f.to(acc) - f[perm].to(acc)
    return diff.reshape(f.shape[0], -1).pow(2).sum(1)


def kernel_mix(
    x: Tensor, perm: Tensor, lam: Tensor, feats: Tensor, tau_max: float, tau_std: float,
    warping: str,
) -> tuple[Tensor, Tensor]:
    dtype = float_dtype(x.dtype)
    if warping == "none":
        coeff = lam.to(dtype, copy=True)
    else:
        coeff = pair_coefficients(pair_sq_dist(feats, perm), lam, tau_max, tau_std, warping)
        coeff = coeff.to(dtype)
    return interpolate(x, perm, coeff), coeff


def pair_coefficients(
    sq_dist: Tensor, lam: Tensor, tau_max: float, tau_std: float, warping: str,
    sum_count: Tensor | None = None, betainc=special.betainc_torch,
    betaincinv=special.betaincinv_torch,
) -> Tensor:
    """Steps 2-4 in float64 for a warping other than ``"none"``; ``sum_count`` and the
    special functions as in :func:`tau64` and :func:`warp64`."""
    tau = tau64(sq_dist, tau_max, tau_std, sum_count)
    k = warp64(lam, tau, warping, betainc, betaincinv)
    # A pair with NaN/inf features has no meaningful similarity: leave it unmixed.
    return torch.where(torch.isfinite(sq_dist), k, 1.0)


def _mix(a: Tensor, wa: Tensor, b: Tensor, wb: Tensor, like: Tensor) -> Tensor:
    """wa * a + wb * b per row, with (1, 0) and (0, 1) exact copies (so a row that is not
    mixed never sees its partner's values, NaN included), in ``like``'s dtype and layout."""
    shape = (-1, *([1] * (a.dim() - 1)))
    wa, wb = wa.reshape(shape), wb.reshape(shape)
    mixed = wa * a + wb * b
    mixed = torch.where((wa == 1) & (wb == 0), a, torch.where((wa == 0) & (wb == 1), b, mixed))
    return mixed.to(like.dtype).contiguous(memory_format=memory_format(like))


def _compute_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def interpolate(x: Tensor, perm: Tensor, coeff: Tensor) -> Tensor:
    cdtype = _compute_dtype(x)
    xc, c = x.to(cdtype), coeff.to(cdtype)
    return _mix(xc, c, xc[perm], 1 - c, like=x)


def interpolate_backward(grad: Tensor, perm: Tensor, coeff: Tensor) -> Tensor:
    cdtype = _compute_dtype(grad)
    g, c = grad.to(cdtype), coeff.to(cdtype)
    # source[j] is the sample whose partner is j; gathering through it needs no atomics.
    batch_index = torch.arange(perm.shape[0], device=perm.device)
    source = torch.empty_like(perm).scatter_(0, perm, batch_index)
    return _mix(g, c, g[source], 1 - c[source], like=grad)
