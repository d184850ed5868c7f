"""Regularised incomplete beta function and its inverse in plain torch ops.

Same algorithm as ``csrc/special.h`` (the compiled kernels); this module is the
pure-PyTorch fallback and is kept in step with it (the tests compare both to scipy
and to each other).

Everything is evaluated in float64 with a fixed amount of work per element and
``torch.where`` instead of data-dependent branching, so the functions never sync
with the device and trace cleanly under ``torch.compile``.

Regimes, for ``0 < a, b < inf`` and ``0 < x < 1``:

* ``min(a, b) < LARGE``: the continued fraction of Numerical Recipes' ``betacf``
  (modified Lentz) on the side of the mean where it converges fast, with a
  log-beta that stays exact when one parameter is huge.
* ``min(a, b) >= LARGE``: the density is a narrow, nearly Gaussian bump, where the
  continued fraction would need O(sqrt(a + b)) terms. It is integrated with
  Gauss-Legendre over a window of the bump. The log-density is written relative to
  the mean (``a*log1pmx(d/p) + b*log1pmx(-d/q)``) and the normalising constant with
  Stirling corrections, so nothing cancels even at ``a = 1e30``.

The inverse runs Newton's method on ``log I`` against ``log x`` from the
Abramowitz-Stegun 26.5.22 (``a, b > 1``) or power-law tail starting guess, always on
the lower half of the distribution (by the symmetry ``I_x(a, b) = 1 - I_{1-x}(b, a)``).

Limits follow the distribution: shape 0 is a point mass at that end (both 0: half
the mass at each end, so 0.5 inside (0, 1)); shape inf a point mass at the other end
(both inf: a step at 0.5). scipy returns NaN for the two symmetric limits.
"""

from __future__ import annotations

import math
import sys
from numbers import Real

import numpy as np
import torch

__all__ = ["betainc", "betaincinv", "betainc_torch", "betaincinv_torch"]

LARGE = 25.0  # min(a, b) from which the Gauss-Legendre path replaces the continued fraction
HUGE = 1e6  # max(a, b) from which, when min < LARGE, Beta is Gamma-like to O(min / max^2)
CF_TERMS = 100
GAMMA_TERMS = 60
WINDOW_SD = 16.0  # outside +-16 sd the density is below exp(-45) of its peak for min(a, b) >= 25
GL_NODES = 64
NEWTON_STEPS = 10

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_TINY = 1e-300
_LOG_TINY = math.log(sys.float_info.min)  # the inverse's lower bracket, as scipy's floor
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_GL_X, _GL_W = (torch.from_numpy(v) for v in np.polynomial.legendre.leggauss(GL_NODES))
# log1p(z) - z = z^2 * sum_k c_k z^(k-2); 18 terms reach double precision for |z| < 0.1.
_LOG1PMX_COEFFS = [(-1.0) ** (k + 1) / k for k in range(2, 20)]


def _prepare(**named: torch.Tensor | float) -> tuple[list[torch.Tensor], torch.dtype]:
    """Broadcast to float64 on one device; Python numbers keep their full precision."""
    for name, v in named.items():
        if isinstance(v, bool) or not isinstance(v, (torch.Tensor, Real)):
            raise TypeError(f"{name} must be a tensor or a real number, got {type(v).__name__}")
    tensors = {k: v for k, v in named.items() if isinstance(v, torch.Tensor)}
    for name, t in tensors.items():
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"{name} must be a float32, float64, float16 or bfloat16 tensor, got {t.dtype}"
            )
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        found = sorted(map(str, devices))
        raise ValueError(f"{', '.join(named)} must be on one device, got {found}")
    device = devices.pop() if devices else None
    dtypes = [t.dtype for t in tensors.values()]
    out_dtype = torch.float64 if torch.float64 in dtypes else torch.float32
    if not dtypes:
        out_dtype = torch.get_default_dtype()
    values = [torch.as_tensor(v, dtype=torch.float64, device=device) for v in named.values()]
    try:
        return list(torch.broadcast_tensors(*values)), out_dtype
    except RuntimeError:
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in zip(named, values))
        raise ValueError(f"{', '.join(named)} must broadcast together, got {shapes}") from None


def _stirling_correction(z: torch.Tensor) -> torch.Tensor:
    """lgamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2); accurate to 1e-16 for z >= 10."""
    r = 1.0 / (z * z)
    return (1.0 / 12 - r * (1.0 / 360 - r * (1.0 / 1260 - r * (1.0 / 1680 - r / 1188)))) / z


def _log1pmx(z: torch.Tensor) -> torch.Tensor:
    """log(1 + z) - z, without the cancellation of the direct formula for small |z|."""
    small = z.abs() < 0.1
    zs = torch.where(small, z, 0.0)
    acc = torch.full_like(z, _LOG1PMX_COEFFS[-1])
    for c in reversed(_LOG1PMX_COEFFS[:-1]):
        acc = c + zs * acc
    zd = torch.where(small, 0.0, z)
    return torch.where(small, zs * zs * acc, torch.log1p(zd) - zd)


def _log_beta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log B(a, b), without the cancellation of lgamma(big) - lgamma(big + small)."""
    small, big = torch.minimum(a, b), torch.maximum(a, b)
    big_ok = big >= 10.0
    bg = torch.where(big_ok, big, 10.0)
    s = bg + small
    stable = (
        torch.lgamma(small)
        - (bg - 0.5) * torch.log1p(small / bg)
        - small * torch.log(s)
        + small
        + _stirling_correction(bg)
        - _stirling_correction(s)
    )
    return torch.where(big_ok, stable, torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b))


def _betainc_cf(a, b, x, log_x, log_y):
    """Continued fraction, for min(a, b) < LARGE."""
    swap = x > (a + 1.0) / (a + b + 2.0)
    aa, bb = torch.where(swap, b, a), torch.where(swap, a, b)
    xx = torch.where(swap, 1.0 - x, x)
    lxx, lyy = torch.where(swap, log_y, log_x), torch.where(swap, log_x, log_y)

    def guard(v):
        return torch.where(v.abs() < _TINY, _TINY, v)

    qab, qap, qam = aa + bb, aa + 1.0, aa - 1.0
    c = torch.ones_like(xx)
    d = 1.0 / guard(1.0 - qab * xx / qap)
    h = d
    for m in range(1, CF_TERMS + 1):
        m2 = 2.0 * m
        for num in (
            m * (bb - m) * xx / ((qam + m2) * (aa + m2)),
            -(aa + m) * (qab + m) * xx / ((aa + m2) * (qap + m2)),
        ):
            d = 1.0 / guard(1.0 + num * d)
            c = guard(1.0 + num / c)
            h = h * d * c
    front = torch.exp(aa * lxx + bb * lyy - _log_beta(aa, bb) - torch.log(aa))
    value = front * h
    return torch.where(swap, 1.0 - value, value), torch.where(swap, value, 1.0 - value)


def _gamma_p_q(a, z):
    """Regularised incomplete gamma P(a, z), Q(a, z): series below z = a + 1, else Legendre's
    continued fraction, so each converges within GAMMA_TERMS for a < LARGE."""
    use_series = z < a + 1.0
    log_front = a * torch.log(z) - z - torch.lgamma(a)
    term = 1.0 / a
    total = term
    bb = z + 1.0 - a
    c = torch.full_like(z, 1.0 / _TINY)
    d = 1.0 / torch.where(bb.abs() < _TINY, _TINY, bb)
    h = d
    for n in range(1, GAMMA_TERMS + 1):
        term = term * z / (a + n)
        total = total + term
        an = -n * (n - a)
        bb = bb + 2.0
        d = an * d + bb
        d = 1.0 / torch.where(d.abs() < _TINY, _TINY, d)
        c = bb + an / c
        c = torch.where(c.abs() < _TINY, _TINY, c)
        h = h * d * c
    small_part = torch.exp(log_front) * torch.where(use_series, total, h)
    p = torch.where(use_series, small_part, 1.0 - small_part)
    return p, torch.where(use_series, 1.0 - small_part, small_part)


def _bump(a, b, delta):
    """(log of) the density at p + delta, p = a/(a+b), for min(a, b) >= LARGE."""
    s = a + b
    p, q = a / s, b / s
    log_norm = 0.5 * (torch.log(s * p * q) - _LOG_2PI) - (
        _stirling_correction(a) + _stirling_correction(b) - _stirling_correction(s)
    )
    t_1mt = ((p + delta) * (q - delta)).clamp_min(_TINY)
    return (
        log_norm
        + a * _log1pmx(delta / p)
        + b * _log1pmx(-delta / q)
        - torch.log(t_1mt)
    )


def _betainc_quad(a, b, x):
    """Gauss-Legendre over a window of the density, for min(a, b) >= LARGE."""
    s = a + b
    p, q = a / s, b / s
    sd = torch.sqrt(p * q / s)
    # x - p measured from the nearer end, where 1 - x is exact: keeps the error ~ min(p, q) ulp.
    d_x = torch.where(x <= 0.5, x - p, q - (1.0 - x))
    left = d_x <= 0
    lo = torch.where(left, torch.maximum(-p, -WINDOW_SD * sd), d_x)
    hi = torch.where(left, d_x, torch.minimum(q, WINDOW_SD * sd))
    hi = torch.maximum(hi, lo)  # x outside the window: an empty integral
    half, mid = 0.5 * (hi - lo), 0.5 * (hi + lo)
    nodes = _GL_X.to(x.device)
    weights = _GL_W.to(x.device)
    delta = mid.unsqueeze(-1) + half.unsqueeze(-1) * nodes
    dens = torch.exp(_bump(a.unsqueeze(-1), b.unsqueeze(-1), delta))
    mass = half * (dens * weights).sum(-1)
    return torch.where(left, mass, 1.0 - mass), torch.where(left, 1.0 - mass, mass)


def _betainc_interior(a, b, x):
    """(I_x(a, b), 1 - I_x(a, b)), each to full absolute precision, for 0 < a, b < inf and
    0 < x < 1."""
    log_x, log_y = torch.log(x), torch.log1p(-x)
    small, big = torch.minimum(a, b), torch.maximum(a, b)
    large = small >= LARGE
    gamma = ~large & (big >= HUGE)
    cf_lower, cf_upper = _betainc_cf(
        torch.where(large, 1.0, a), torch.where(large, 1.0, b), x, log_x, log_y
    )
    quad_lower, quad_upper = _betainc_quad(
        torch.where(large, a, LARGE), torch.where(large, b, LARGE), x
    )
    # With b huge, -log(1 - X) is Gamma(a) / (b + (a - 1) / 2) up to O(a / b^2) (DiDonato &
    # Morris' BGRAT leading term): I = P(a, z). Mirrored for a huge: I = Q(b, z).
    b_big = b >= a
    z = torch.where(b_big, -(b + 0.5 * (a - 1.0)) * log_y, -(a + 0.5 * (b - 1.0)) * log_x)
    p, q = _gamma_p_q(torch.where(gamma, small, 1.0), torch.where(gamma, z, 1.0))
    lower = torch.where(large, quad_lower, torch.where(gamma, torch.where(b_big, p, q), cf_lower))
    upper = torch.where(large, quad_upper, torch.where(gamma, torch.where(b_big, q, p), cf_upper))
    return lower.clamp(0.0, 1.0), upper.clamp(0.0, 1.0)


def _log_pdf(a, b, x):
    """log of the Beta(a, b) density at x, 0 < x < 1."""
    large = torch.minimum(a, b) >= LARGE
    al, bl = torch.where(large, a, LARGE), torch.where(large, b, LARGE)
    bump = _bump(al, bl, x - al / (al + bl))
    plain = (a - 1.0) * torch.log(x) + (b - 1.0) * torch.log1p(-x) - _log_beta(a, b)
    return torch.where(large, bump, plain)


def betainc(a, b, x) -> torch.Tensor:
    """Regularised incomplete beta function ``I_x(a, b)`` (the Beta(a, b) CDF at x).

    Elementwise with broadcasting, in scipy's argument order. Computed in float64;
    the result is float64 if any input is float64, else float32. Accurate to about
    1e-10 absolute for ``a, b`` in [1e-30, 1e30] (see the tests); exact at the
    limits: ``a`` or ``b`` equal to 0 or inf gives the limiting point masses, and
    ``a = b = 0`` gives 0.5 inside (0, 1), ``a = b = inf`` a step at 0.5 (scipy: NaN).
    NaN for NaN inputs, negative shapes and x outside [0, 1]. Served by the op
    ``torch.ops.kmixup.betainc`` (compiled where built, else :func:`betainc_torch`).

    Args:
        a: first shape parameter, >= 0.
        b: second shape parameter, >= 0.
        x: point in [0, 1].
    """
    (a, b, x), out_dtype = _prepare(a=a, b=b, x=x)
    return torch.ops.kmixup.betainc(a, b, x).to(out_dtype)


def betainc_torch(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:func:`betainc` in torch ops, on floating tensors of one shape; returns ``x``'s dtype."""
    dtype = x.dtype
    a, b, x = a.double(), b.double(), x.double()
    interior = (a > 0) & (b > 0) & (a < math.inf) & (b < math.inf) & (x > 0) & (x < 1)
    value, _ = _betainc_interior(
        torch.where(interior, a, 1.0), torch.where(interior, b, 1.0), torch.where(interior, x, 0.5)
    )
    value = torch.where((a == b) & (x == 0.5), 0.5, value)  # by symmetry, exactly
    return _with_limits(a, b, x, interior, value, inverse=False).to(dtype)


def _with_limits(a, b, t, interior, value, inverse: bool):
    """Fill in the entries outside the interior: t at 0 or 1, and the limiting point masses
    of shape 0 or inf (at 0 when a == 0 or b == inf, at 1 when b == 0 or a == inf, half at
    each end when a == b == 0, at 1/2 when a == b == inf); NaN where undefined."""
    half = torch.full_like(t, 0.5)
    step = torch.where(t < 0.5, 0.0, torch.where(t > 0.5, 1.0, half))
    # CDF and quantile of each limiting distribution.
    at_zero, at_one = (0.0, 1.0) if inverse else (1.0, 0.0)
    at_ends, at_half = (step, half) if inverse else (half, step)
    limit = torch.where((a == 0) | torch.isinf(b), at_zero, at_one)
    limit = torch.where(torch.isinf(a) & torch.isinf(b), at_half, limit)
    limit = torch.where((a == 0) & (b == 0), at_ends, limit)
    value = torch.where(interior, value, limit)
    value = torch.where(t == 0, 0.0, torch.where(t == 1, 1.0, value))
    invalid = (a < 0) | (b < 0) | (t < 0) | (t > 1) | a.isnan() | b.isnan() | t.isnan()
    return torch.where(invalid, math.nan, value)


def _betaincinv_lower(a, b, y):
    """x in (0, 1/2] with I_x(a, b) = y, for 0 < a, b < inf and 0 < y <= I_{1/2}(a, b)."""
    log_y = torch.log(y)
    # Abramowitz & Stegun 26.5.22, good when both shapes exceed 1.
    z = -torch.special.ndtri(y)
    lam = (z * z - 3.0) / 6.0
    ia, ib = 1.0 / (2.0 * a - 1.0), 1.0 / (2.0 * b - 1.0)
    h = 2.0 / (ia + ib)
    w = z * torch.sqrt((h + lam).clamp_min(0.0)) / h
    w = w - (ib - ia) * (lam + 5.0 / 6.0 - 2.0 / (3.0 * h))
    u_normal = torch.log(a) - torch.log(a + b * torch.exp(2.0 * w))
    # Lower tail x^a / (a B(a, b)), good when a shape is below 1.
    u_power = (log_y + torch.log(a) + _log_beta(a, b)) / a
    u = torch.where((a > 1) & (b > 1), u_normal, u_power)
    # Newton on the log of the nearer tail (I, or 1 - I for y > 1/2, which stays well
    # conditioned as y -> 1) against log x, safeguarded by bisection of the bracket it keeps.
    tail = y > 0.5
    log_target = torch.where(tail, torch.log1p(-y), log_y)
    sign = torch.where(tail, -1.0, 1.0)
    lo, hi = torch.full_like(y, _LOG_TINY), torch.full_like(y, -_LOG_2)
    u = torch.where(u.isnan(), hi, u).clamp(_LOG_TINY, -_LOG_2)
    for _ in range(NEWTON_STEPS):
        x = torch.exp(u)
        lower, upper = _betainc_interior(a, b, x)
        mass = torch.where(tail, upper, lower)
        log_mass = torch.log(mass.clamp_min(_TINY))
        miss = sign * (log_mass - log_target)  # increasing in u
        hi, lo = torch.where(miss > 0, u, hi), torch.where(miss > 0, lo, u)
        slope = torch.exp(u + _log_pdf(a, b, x) - log_mass)  # |d log(tail) / d log x|
        u_next = u - miss / slope
        u = torch.where((u_next >= lo) & (u_next <= hi), u_next, 0.5 * (lo + hi))
    return torch.exp(u)


def betaincinv(a, b, y) -> torch.Tensor:
    """Inverse of :func:`betainc` in x: the Beta(a, b) quantile of y.

    Elementwise with broadcasting, scipy's argument order, float64 inside, same
    dtype rule and limits as :func:`betainc` (``a = b = 0``: 0 below 1/2, 1/2 at
    1/2, 1 above; ``a = b = inf``: 1/2 inside (0, 1)). Served by the op
    ``torch.ops.kmixup.betaincinv`` (compiled where built, else :func:`betaincinv_torch`).

    Args:
        a: first shape parameter, >= 0.
        b: second shape parameter, >= 0.
        y: probability in [0, 1].
    """
    (a, b, y), out_dtype = _prepare(a=a, b=b, y=y)
    return torch.ops.kmixup.betaincinv(a, b, y).to(out_dtype)


def betaincinv_torch(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`betaincinv` in torch ops, on floating tensors of one shape; returns ``y``'s
    dtype."""
    dtype = y.dtype
    a, b, y = a.double(), b.double(), y.double()
    interior = (a > 0) & (b > 0) & (a < math.inf) & (b < math.inf) & (y > 0) & (y < 1)
    a_in, b_in = torch.where(interior, a, 1.0), torch.where(interior, b, 1.0)
    y_in = torch.where(interior, y, 0.5)
    # Solve for whichever of x and 1 - x is below 1/2, so that it is resolved to full precision.
    upper = y_in > _betainc_interior(a_in, b_in, torch.full_like(y_in, 0.5))[0]
    x = _betaincinv_lower(
        torch.where(upper, b_in, a_in), torch.where(upper, a_in, b_in),
        torch.where(upper, 1.0 - y_in, y_in),
    )
    value = torch.where(upper, 1.0 - x, x)
    # The median of a symmetric Beta, exactly: Newton cannot resolve it when the density is flat.
    value = torch.where((a_in == b_in) & (y_in == 0.5), 0.5, value)
    return _with_limits(a, b, y, interior, value, inverse=True).to(dtype)
