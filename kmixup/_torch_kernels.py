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

from . import _checks as C
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
    # As csrc/special.h's similarity_log_tau: dn == 1 is tau_max exactly, also when tau_std**2
    # underflows to 0 (the step-kernel limit), and extremes of tau_max and of the exponent
    # cancel in the log instead of overflowing.
    excess = dn - 1.0
    exponent = excess / (2.0 * (tau_std * tau_std))
    # An infinitely far pair is tau = 0 whatever the width (inf / inf would be NaN).
    exponent = torch.where(excess.isinf(), excess, torch.where(excess == 0, 0.0, exponent))
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


# Rows are processed in chunks of about this many elements, so that the float32/float64
# temporaries of the arithmetic stay small next to the batch: the output is then the only
# batch-sized allocation (a fallback that needed several would run out of memory first).
CHUNK_ELEMENTS = 1 << 18

DATA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_data(t: Tensor, name: str) -> None:
    """The rows of every op: one of :data:`DATA_DTYPES`, with a batch dimension."""
    if t.dtype not in DATA_DTYPES:
        raise TypeError(
            f"kmixup: {name} must be float32, float64, float16 or bfloat16, got {t.dtype}"
        )
    if t.dim() == 0:
        raise RuntimeError(f"kmixup: {name} must have a batch dimension")


def check_perm(perm: Tensor, batch: int, ref: Tensor) -> None:
    """``perm`` int64 ``[B]`` on ``ref``'s device with every value in ``[0, B)``.

    The values become row addresses, so they are checked whatever the caller validated:
    on the CPU here, elsewhere by a device-side assertion (no host sync)."""
    if perm.dtype != torch.int64 or perm.shape != (batch,) or perm.device != ref.device:
        raise RuntimeError(
            f"kmixup: perm must be int64 of shape [{batch}] on {ref.device}, got "
            f"{perm.dtype} {list(perm.shape)} on {perm.device}"
        )
    in_range = ((perm >= 0) & (perm < batch)).all()
    if perm.device.type == "cpu":
        if not bool(in_range):
            raise IndexError(f"kmixup: perm values must lie in [0, {batch})")
    elif perm.device.type != "meta":
        torch._assert_async(in_range, "kmixup: perm values must lie in [0, B)")


def check_coefficients(c: Tensor, name: str, batch: int, ref: Tensor) -> None:
    if c.dtype not in (torch.float32, torch.float64) or c.shape != (batch,):
        raise RuntimeError(
            f"kmixup: {name} must be float32 or float64 of shape [{batch}], got {c.dtype} "
            f"{list(c.shape)}"
        )
    if c.device != ref.device:
        raise RuntimeError(f"kmixup: {name} must be on {ref.device}, got {c.device}")


def _check_elementwise(a: Tensor, b: Tensor, t: Tensor, t_name: str) -> None:
    for tensor, name in ((a, "a"), (b, "b"), (t, t_name)):
        if tensor.dtype not in (torch.float32, torch.float64):
            raise RuntimeError(f"kmixup: {name} must be float32 or float64, got {tensor.dtype}")
        if tensor.dtype != t.dtype or tensor.shape != t.shape or tensor.device != t.device:
            raise RuntimeError(
                f"kmixup: a, b and {t_name} must share shape and dtype (broadcast first) and "
                "device"
            )


def betainc(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    _check_elementwise(a, b, x, "x")
    return special.betainc_torch(a, b, x)


def betaincinv(a: Tensor, b: Tensor, y: Tensor) -> Tensor:
    _check_elementwise(a, b, y, "y")
    return special.betaincinv_torch(a, b, y)


def row_chunks(x: Tensor) -> list[slice]:
    """Slices of the batch dimension of about :data:`CHUNK_ELEMENTS` elements each."""
    batch = x.shape[0]
    row = x[0].numel() if batch else 0
    rows = max(1, CHUNK_ELEMENTS // max(1, row))
    return [slice(start, min(batch, start + rows)) for start in range(0, batch, rows)]


def pair_sq_dist(f: Tensor, perm: Tensor) -> Tensor:
    check_data(f, "f")
    check_perm(perm, f.shape[0], f)
    acc = float_dtype(f.dtype)
    out = torch.empty(f.shape[0], dtype=acc, device=f.device)
    for rows in row_chunks(f):
        diff = f[rows].to(acc) - f[perm[rows]].to(acc)
        out[rows] = diff.reshape(diff.shape[0], -1).pow(2).sum(1)
    return out


def kernel_mix(
    x: Tensor, perm: Tensor, lam: Tensor, feats: Tensor, tau_max: float, tau_std: float,
    warping: str,
) -> tuple[Tensor, Tensor]:
    coeff = _coefficients(x, perm, lam, feats, tau_max, tau_std, warping)
    return _mix_rows(x, perm, coeff, adjoint=False), coeff


def _coefficients(x, perm, lam, feats, tau_max, tau_std, warping) -> Tensor:
    check_data(x, "x")
    check_perm(perm, x.shape[0], x)
    check_coefficients(lam, "lam", x.shape[0], x)
    check_data(feats, "feats")
    if feats.shape[0] != x.shape[0] or feats.device != x.device:
        raise RuntimeError(f"kmixup: feats must have x's batch size {x.shape[0]} and device")
    if warping not in ("beta_cdf", "inverse_beta_cdf", "none"):
        raise RuntimeError(f"kmixup: unknown warping {warping!r}")
    # As csrc/checks.h: the widths always (host numbers), lam's values where they are on
    # the host (elsewhere reading them would synchronise: validate=True checks them).
    C.check_positive(tau_max, "tau_max")
    C.check_positive(tau_std, "tau_std")
    if lam.device.type == "cpu":
        C.check_unit_interval_values(lam, "lam")
    dtype = float_dtype(x.dtype)
    if warping == "none":
        return lam.to(dtype, copy=True)
    return pair_coefficients(pair_sq_dist(feats, perm), lam, tau_max, tau_std, warping).to(dtype)


def kernel_mix_out(
    x: Tensor, perm: Tensor, lam: Tensor, feats: Tensor, tau_max: float, tau_std: float,
    warping: str, out: Tensor,
) -> Tensor:
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise RuntimeError(f"kmixup: out must have x's shape {list(x.shape)}, dtype and device")
    shared = x.numel() and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    if out is x or shared:
        raise RuntimeError("kmixup: out must not overlap x; mix in place with kernel_mix_")
    coeff = _coefficients(x, perm, lam, feats, tau_max, tau_std, warping)
    _mix_rows(x, perm, coeff, adjoint=False, out=out)
    return coeff


def kernel_mix_inplace(
    x: Tensor, perm: Tensor, lam: Tensor, feats: Tensor, tau_max: float, tau_std: float,
    warping: str,
) -> Tensor:
    # Chunks of rows read their partners anywhere in the batch: mix into a copy first.
    mixed, coeff = kernel_mix(x, perm, lam, feats, tau_max, tau_std, warping)
    x.copy_(mixed)
    return coeff


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


def _compute_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def _mix_rows(
    x: Tensor, other: Tensor, coeff: Tensor, adjoint: bool, out: Tensor | None = None
) -> Tensor:
    """``out[i] = c[i] * x[i] + (1 - c[m]) * x[j]``, ``j = other[i]``, ``m = j`` for the
    adjoint (``other`` the inverse permutation) else ``i``; chunk by chunk of rows, in
    ``x``'s dtype and layout (or into ``out``, which must not overlap ``x``). (1, 0) and
    (0, 1) are exact copies, so a row that is not mixed never sees its partner's values,
    NaN included."""
    out = empty_like_rows(x) if out is None else out
    cdtype = _compute_dtype(x)
    c = coeff.to(cdtype)
    view = (-1, *([1] * (x.dim() - 1)))
    for rows in row_chunks(x):
        j = other[rows]
        wa = c[rows].reshape(view)
        wb = (1 - (c[j] if adjoint else c[rows])).reshape(view)
        a, b = x[rows].to(cdtype), x[j].to(cdtype)
        mixed = torch.where(
            (wa == 1) & (wb == 0), a, torch.where((wa == 0) & (wb == 1), b, wa * a + wb * b)
        )
        out[rows] = mixed
    return out


def interpolate(x: Tensor, perm: Tensor, coeff: Tensor) -> Tensor:
    check_data(x, "x")
    check_perm(perm, x.shape[0], x)
    check_coefficients(coeff, "coeff", x.shape[0], x)
    return _mix_rows(x, perm, coeff, adjoint=False)


def interpolate_backward(grad: Tensor, perm: Tensor, coeff: Tensor) -> Tensor:
    check_data(grad, "grad")
    batch = grad.shape[0]
    check_perm(perm, batch, grad)
    check_coefficients(coeff, "coeff", batch, grad)
    # The adjoint gathers through source[j], the sample whose partner is j: that exists (and
    # is unique) only for a permutation, so anything else is refused, not given a wrong
    # gradient.
    hits = torch.zeros(batch, dtype=torch.int32, device=perm.device).index_add_(
        0, perm, torch.ones_like(perm, dtype=torch.int32)
    )
    is_permutation = (hits == 1).all()
    message = "kmixup: perm must be a permutation for the gradient of interpolate/kernel_mix"
    if perm.device.type == "cpu":
        if not bool(is_permutation):
            raise ValueError(message)
    elif perm.device.type != "meta":
        torch._assert_async(is_permutation, message)
    batch_index = torch.arange(batch, device=perm.device)
    source = torch.empty_like(perm).scatter_(0, perm, batch_index)
    return _mix_rows(grad, source, coeff, adjoint=True)
