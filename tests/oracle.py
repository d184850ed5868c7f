"""Independent numpy/scipy implementation of the algorithm of docs/design.md (steps 1-5).

Deliberately shares no code with ``kmixup``: everything is float64 numpy, the special
functions come from scipy, and their limits (shape 0 or inf, where scipy returns NaN)
are written out by hand from their definitions.
"""

from __future__ import annotations

import numpy as np
from scipy import special as sp


def beta_cdf_sym(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """I(x; a, a) including the limits a = 0 (0.5 inside (0, 1)) and a = inf (step)."""
    a, x = np.broadcast_arrays(np.asarray(a, float), np.asarray(x, float))
    ok = np.isfinite(a) & (a > 0)
    out = sp.betainc(np.where(ok, a, 1.0), np.where(ok, a, 1.0), x)
    interior = (x > 0) & (x < 1)
    out = np.where(a == 0, np.where(interior, 0.5, x), out)
    step = np.where(x < 0.5, 0.0, np.where(x > 0.5, 1.0, 0.5))
    return np.where(np.isinf(a), step, out)


def beta_quantile_sym(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """I^-1(y; a, a) including the limits a = 0 (step) and a = inf (0.5 inside (0, 1))."""
    a, y = np.broadcast_arrays(np.asarray(a, float), np.asarray(y, float))
    ok = np.isfinite(a) & (a > 0)
    out = sp.betaincinv(np.where(ok, a, 1.0), np.where(ok, a, 1.0), y)
    step = np.where(y < 0.5, 0.0, np.where(y > 0.5, 1.0, 0.5))
    out = np.where(a == 0, step, out)
    interior = (y > 0) & (y < 1)
    return np.where(np.isinf(a), np.where(interior, 0.5, y), out)


def sq_dist(f: np.ndarray, perm: np.ndarray) -> np.ndarray:
    f = np.asarray(f, float).reshape(len(perm), -1)
    with np.errstate(invalid="ignore", over="ignore"):
        return ((f - f[perm]) ** 2).sum(axis=1)


def finite_mean(d: np.ndarray) -> float:
    finite = np.isfinite(d)
    return d[finite].mean() if finite.any() else 0.0


def tau(d: np.ndarray, tau_max: float, tau_std: float, mean: float | None = None) -> np.ndarray:
    """``mean``: the normaliser, default the finite mean of ``d`` (the batch mean)."""
    finite = np.isfinite(d)
    mean = finite_mean(d) if mean is None else mean
    dn = np.full(d.shape, np.inf)
    dn[finite] = d[finite] / mean if mean > 0 else 0.0
    # dn == 1 gives tau_max also when tau_std**2 underflows to 0 (the step-kernel limit).
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        exponent = np.where(
            np.isinf(dn) | (dn == 1.0), dn - 1.0, (dn - 1.0) / (2.0 * tau_std * tau_std)
        )
        return np.exp(np.log(tau_max) - exponent)


def coefficients(
    f, perm, lam, tau_max=1.0, tau_std=0.25, warping="beta_cdf", mean=None, dist_dtype=None
):
    """``dist_dtype``: the type the distances are rounded to (np.float32 for float32,
    float16 and bfloat16 features), so that one beyond its range is inf."""
    lam = np.broadcast_to(np.asarray(lam, float), (len(perm),))
    if warping == "none":
        return lam.copy()
    d = sq_dist(f, perm)
    if dist_dtype is not None:
        with np.errstate(over="ignore"):
            d = d.astype(dist_dtype).astype(float)
    t = tau(d, tau_max, tau_std, mean)
    with np.errstate(divide="ignore"):
        if warping == "beta_cdf":
            k = beta_cdf_sym(1.0 / t, lam)
        else:
            k = beta_quantile_sym(t, lam)
    return np.where(np.isfinite(d), k, 1.0)


def interpolate(x, perm, k):
    x = np.asarray(x, float)
    k = np.asarray(k, float).reshape((-1,) + (1,) * (x.ndim - 1))
    xp = x[perm]
    with np.errstate(invalid="ignore"):
        mixed = k * x + (1.0 - k) * xp
    return np.where(k == 1, x, np.where(k == 0, xp, mixed))


def kernel_mix(x, perm, lam, feats=None, tau_max=1.0, tau_std=0.25, warping="beta_cdf"):
    """Return (mixed, coeff) as float64 numpy arrays."""
    k = coefficients(x if feats is None else feats, perm, lam, tau_max, tau_std, warping)
    return interpolate(x, perm, k), k
