"""Regularised incomplete beta function and its inverse in plain torch ops.

Same algorithm as ``csrc/special.h`` (the compiled kernels); this module is the
pure-PyTorch fallback and is kept in step with it (the tests compare both to scipy
and mpmath and to each other). Everything is evaluated in float64, in chunks of
elements so that the temporaries stay bounded whatever the input size.

On CPU tensors the work follows the data, as the scalar code does: each regime runs
only on the elements that need it, series and continued fractions stop once all
their elements have converged, and Newton drops the elements it has solved. On any
other device the same formulas run with a fixed amount of work per element and
``torch.where`` in place of branches, so the functions never read device memory on
the host and never synchronise a GPU.

Regimes, for ``0 < a, b < inf`` and ``0 < x < 1``:

* ``min(a, b) < LARGE`` and ``max(a, b) < HUGE``: the continued fraction of Numerical
  Recipes' ``betacf`` (modified Lentz) on the side of the mean where it converges
  fast. Below a shape of ``SMALL`` the fraction's value is ``1 - O(shape)``, and its
  complement is summed as a power series instead of taken as 1 minus it.
* ``min(a, b) < LARGE <= HUGE <= max(a, b)``: the Gamma limit (DiDonato & Morris'
  BGRAT leading term) with its first correction, which keeps the tails relatively
  accurate.
* ``min(a, b) >= LARGE``: the density is a narrow, nearly Gaussian bump, where the
  continued fraction would need O(sqrt(a + b)) terms. The tail beyond x is integrated
  outwards from x with Gauss-Legendre, over as far as the density stays within
  ``exp(-DECAY)`` of its value at x (at most ``WINDOW_SD`` standard deviations), so a
  tail far out keeps its relative accuracy. The log-density is written relative to
  the mean and the normalising constant with Stirling corrections, so nothing cancels
  even at ``a = 1e30``.

The inverse solves for whichever of x and 1 - x lies below 1/2, given the target as
the pair (y, 1 - y) of which the smaller is exact; it runs Newton's method on the log
of that tail against ``log x``, from the first term of either tail's continued
fraction (far out in a tail) or the Abramowitz-Stegun 26.5.22 normal approximation.

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
SMALL = 0.01  # shape below which a tail of 1 - O(shape) is summed as such
CF_TERMS = 100
GAMMA_TERMS = 60  # also bounds the series of the small-shape complements
WINDOW_SD = 16.0  # outside +-16 sd the density is below exp(-45) of its peak for min(a, b) >= 25
DECAY = 40.0  # e-folds of the density that a tail integral spans at most
GL_NODES = 32  # over at most WINDOW_SD sd or DECAY e-folds, as good as 64 nodes
GUESS_STEPS = 4
GUESS_TOL = 1e-3  # the first term of a tail's continued fraction is trusted below this
NEWTON_STEPS = 10
NEWTON_TOL = 1e-14  # a step this small relative to log x ends Newton
RESIDUAL_TOL = 1e-10  # so does a tail this close to its target (relative)
# Elements per chunk. The quadrature holds GL_NODES values per element, so CPU chunks stay
# small enough for the cache; elsewhere larger chunks amortise the kernel launches.
CPU_CHUNK = 16384
DEVICE_CHUNK = 1 << 16
CHECK_EVERY = 4  # terms between convergence checks of a loop on CPU

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_EPS = sys.float_info.epsilon
_TINY = 1e-300
_LOG_TINY = math.log(sys.float_info.min)  # the inverse's lower bracket, as scipy's floor
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_EULER_GAMMA = 0.57721566490153286061
_GL_X, _GL_W = (torch.from_numpy(v) for v in np.polynomial.legendre.leggauss(GL_NODES))
# log1p(z) - z = -z w + 2 w^3 sum_k w^(2k) / (2k + 3), w = z / (2 + z); 16 terms for |w| <= 1/3.
_ATANH_COEFFS = [1.0 / k for k in range(3, 35, 2)]
# log Gamma(1 + a) = -gamma a + sum_{k >= 2} (-1)^k zeta(k) a^k / k; 8 terms for a <= SMALL.
_LGAMMA1P_COEFFS = [
    0.82246703342411321824, -0.40068563438653142847, 0.27058080842778454788,
    -0.20738555102867398527, 0.16955717699740818995, -0.14404989676884611812,
    0.12550966952474304242, -0.11133426586956469049,
]
# Stirling's series of lgamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2): c_k / z^(2k - 1).
_STIRLING_COEFFS = [1 / 12, -1 / 360, 1 / 1260, -1 / 1680, 1 / 1188, -691 / 360360, 1 / 156]


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


def _adaptive(t: torch.Tensor) -> bool:
    """Whether the work may follow the data: reading it on the host syncs any other device."""
    return t.device.type == "cpu"


def _all(mask: torch.Tensor) -> bool:
    return mask.numel() == 0 or bool(mask.all())


def _override(mask, fn, args, standins, outs):
    """``outs`` with ``fn(*args)`` where ``mask``. On CPU fn runs on those elements only (and
    ``outs`` are written in place); elsewhere on all of them, with ``standins`` (safe values)
    for the arguments of the others."""
    if _adaptive(mask):
        idx = mask.nonzero().squeeze(1)
        if idx.numel():
            for out, value in zip(outs, fn(*(t[idx] for t in args))):
                out[idx] = value
        return outs
    values = fn(*(torch.where(mask, t, s) for t, s in zip(args, standins)))
    return tuple(torch.where(mask, v, out) for v, out in zip(values, outs))


def _log1m(x: torch.Tensor) -> torch.Tensor:
    """log(1 - x). torch's log1p(-x) returns 0 for the smallest subnormal x, where -x is the
    answer; below 1e-18, -x is exact to double precision anyway."""
    return torch.where(x < 1e-18, -x, torch.log1p(-x))


def _guard(v: torch.Tensor) -> torch.Tensor:
    """Lentz's method divides by these; a value that vanishes is nudged off zero."""
    return torch.where(v.abs() < _TINY, _TINY, v)


def _stirling_correction(z: torch.Tensor) -> torch.Tensor:
    """lgamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2); accurate to 1e-16 for z >= 10."""
    r = 1.0 / (z * z)
    return (1.0 / 12 - r * (1.0 / 360 - r * (1.0 / 1260 - r * (1.0 / 1680 - r / 1188)))) / z


def _log1pmx(z: torch.Tensor, one_plus_z: torch.Tensor) -> torch.Tensor:
    """log(1 + z) - z from z and 1 + z (formed by the caller without rounding z near -1); near 0,
    where the difference cancels, from 2 atanh(w), w = z / (2 + z)."""
    w = z / (2.0 + z)
    series = w.abs() <= 1.0 / 3
    ws = torch.where(series, w, 0.0)
    w2 = ws * ws
    acc = torch.full_like(z, _ATANH_COEFFS[-1])
    for c in reversed(_ATANH_COEFFS[:-1]):
        acc = c + w2 * acc
    direct = torch.log(torch.where(series, 1.0, one_plus_z)) - z
    return torch.where(series, 2.0 * ws * w2 * acc - z * ws, direct)


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


def _lgamma1p_small(a: torch.Tensor) -> torch.Tensor:
    """log Gamma(1 + a) for |a| <= SMALL, where 1 + a would round a away."""
    acc = torch.full_like(a, _LGAMMA1P_COEFFS[-1])
    for c in reversed(_LGAMMA1P_COEFFS[:-1]):
        acc = c + a * acc
    return a * (a * acc - _EULER_GAMMA)


def _lgamma_shift(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """lgamma(b + a) - lgamma(b) for 0 < a <= SMALL, to a small relative error: b shifted up to
    >= 10, then Stirling's series differenced term by term."""
    total = torch.zeros_like(b)
    for _ in range(10):
        low = b < 10.0
        total = total - torch.where(low, torch.log1p(a / b), 0.0)
        b = torch.where(low, b + 1.0, b)
    step = torch.log1p(a / b)
    corr = torch.zeros_like(b)
    power = 1.0 / b
    for k, c in enumerate(_STIRLING_COEFFS):
        corr = corr + c * power * torch.expm1(-(2 * k + 1) * step)
        power = power / (b * b)
    return total + (b - 0.5) * step + a * torch.log(b + a) - a + corr


def _betainc_small_complement(a, b, x, log_x):
    """1 - I_x(a, b) for 0 < a < SMALL and x left of (a + 1) / (a + b + 2), from the power
    series I = x^a / (a B(a, b)) (1 + a S), every term of the exponent O(a)."""
    power = torch.ones_like(x)
    total = torch.zeros_like(x)
    done = torch.zeros_like(x, dtype=torch.bool)
    for n in range(1, GAMMA_TERMS + 1):
        power = power * ((n - b) * x / n)
        term = power / (a + n)
        new = total + term
        total = torch.where(done, total, new)
        done = done | (term.abs() <= _EPS * new.abs())
        if _adaptive(x) and n % CHECK_EVERY == 0 and _all(done):
            break
    log_a_beta = _lgamma1p_small(a) - _lgamma_shift(b, a)
    return -torch.expm1(a * log_x - log_a_beta + torch.log1p(a * total))


def _betainc_cf(a, b, x, log_x, log_y):
    """(I, 1 - I) by the continued fraction, for min(a, b) < LARGE."""
    swap = x > (a + 1.0) / (a + b + 2.0)
    a, b = torch.where(swap, b, a), torch.where(swap, a, b)
    x = torch.where(swap, 1.0 - x, x)
    log_x, log_y = torch.where(swap, log_y, log_x), torch.where(swap, log_x, log_y)
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = torch.ones_like(x)
    d = 1.0 / _guard(1.0 - qab * x / qap)
    h = d
    done = torch.zeros_like(x, dtype=torch.bool)
    for m in range(1, CF_TERMS + 1):
        m2 = 2.0 * m
        num = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 / _guard(1.0 + num * d)
        c = _guard(1.0 + num / c)
        even = d * c
        num = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 / _guard(1.0 + num * d)
        c = _guard(1.0 + num / c)
        odd = d * c
        h = torch.where(done, h, h * even * odd)
        done = done | (((even - 1.0).abs() <= _EPS) & ((odd - 1.0).abs() <= _EPS))
        if _adaptive(x) and m % CHECK_EVERY == 0 and _all(done):
            break
    value = torch.exp(a * log_x + b * log_y - _log_beta(a, b) - torch.log(a)) * h
    (rest,) = _override(
        a < SMALL, lambda *t: (_betainc_small_complement(*t),), (a, b, x, log_x),
        (SMALL / 2, 1.0, 0.5, -_LOG_2), (1.0 - value,),
    )
    return torch.where(swap, rest, value), torch.where(swap, value, rest)


def _gamma_series(a, z, front):
    """(P, Q) by the series, for z < a + 1."""
    term = 1.0 / a
    total = term
    done = torch.zeros_like(z, dtype=torch.bool)
    for n in range(1, GAMMA_TERMS + 1):
        term = term * z / (a + n)
        new = total + term
        total = torch.where(done, total, new)
        done = done | (term.abs() <= _EPS * new.abs())
        if _adaptive(z) and n % CHECK_EVERY == 0 and _all(done):
            break
    p = front * total

    def small_complement(a, z):
        # P = z^a / Gamma(1 + a) (1 + a T), T = sum_{n >= 1} (-z)^n / (n! (a + n)).
        power = torch.ones_like(z)
        total = torch.zeros_like(z)
        done = torch.zeros_like(z, dtype=torch.bool)
        for n in range(1, GAMMA_TERMS + 1):
            power = power * (-z / n)
            total = torch.where(done, total, total + power / (a + n))
            done = done | (power.abs() <= _EPS * total.abs())
            if _adaptive(z) and n % CHECK_EVERY == 0 and _all(done):
                break
        return (-torch.expm1(a * torch.log(z) - _lgamma1p_small(a) + torch.log1p(a * total)),)

    (q,) = _override(a < SMALL, small_complement, (a, z), (SMALL / 2, 0.5), (1.0 - p,))
    return p, q


def _gamma_fraction(a, z, front):
    """(P, Q) by Legendre's continued fraction, for z >= a + 1."""
    bb = z + 1.0 - a
    c = torch.full_like(z, 1.0 / _TINY)
    d = 1.0 / _guard(bb)
    h = d
    done = torch.zeros_like(z, dtype=torch.bool)
    for n in range(1, GAMMA_TERMS + 1):
        an = -n * (n - a)
        bb = bb + 2.0
        d = 1.0 / _guard(an * d + bb)
        c = _guard(bb + an / c)
        delta = d * c
        h = torch.where(done, h, h * delta)
        done = done | ((delta - 1.0).abs() <= _EPS)
        if _adaptive(z) and n % CHECK_EVERY == 0 and _all(done):
            break
    q = front * h
    return 1.0 - q, q


def _betainc_gamma(a, b, log_y):
    """(I, 1 - I) for a < LARGE <= HUGE <= b from the Gamma limit in z = -t log(1 - x),
    t = b + (a - 1) / 2, corrected by the density's factor sinhc(z / 2t)^(a - 1) ~ 1 + k z^2
    over its normaliser (see special.h)."""
    t = b + 0.5 * (a - 1.0)
    z = -t * log_y
    front = torch.exp(a * torch.log(z) - z - torch.lgamma(a))
    empty = torch.empty_like(z)
    series = z < a + 1.0
    p, q = _override(series, _gamma_series, (a, z, front), (1.0, 0.5, 0.5), (empty, empty.clone()))
    p, q = _override(~series, _gamma_fraction, (a, z, front), (1.0, 2.0, 0.5), (p, q))
    k = (a - 1.0) / (24.0 * t * t)
    shift = k * front * (a + 1.0 + z) / (1.0 + k * a * (a + 1.0))
    return p - shift, q + shift


def _bump(a, b):
    """(s, p, q, log_norm) of the Beta(a, b) density as a bump about its mean p = a / s."""
    s = a + b
    p, q = a / s, b / s
    log_norm = 0.5 * (torch.log(s * p * q) - _LOG_2PI) - (
        _stirling_correction(a) + _stirling_correction(b) - _stirling_correction(s)
    )
    return s, p, q, log_norm


def _delta_at(p, q, x):
    """x - p, measured from the nearer end, where 1 - x is exact: keeps the error ~ min(p, q)
    ulp."""
    return torch.where(x <= 0.5, x - p, q - (1.0 - x))


def _bump_log_density(a, b, p, q, log_norm, delta, t, t1):
    """log of the density at t = p + delta, given also t and 1 - t, each formed without
    cancellation."""
    t, t1 = t.clamp_min(_TINY), t1.clamp_min(_TINY)
    return (
        log_norm
        + a * _log1pmx(delta / p, t / p)
        + b * _log1pmx(-delta / q, t1 / q)
        - torch.log(t)
        - torch.log(t1)
    )


def _betainc_quad(a, b, x):
    """(I, 1 - I) by Gauss-Legendre over the tail beyond x, for min(a, b) >= LARGE: outwards
    from x over the end of the support, WINDOW_SD sd or DECAY e-folds of the density at x,
    whichever is nearest (the density is log-concave)."""
    s, p, q, log_norm = _bump(a, b)
    sd = torch.sqrt(p * q / s)
    d_x, x1 = _delta_at(p, q, x), 1.0 - x
    left = d_x <= 0
    slope = (((p - q) - (s - 2.0) * d_x) / ((p + d_x) * (q - d_x))).abs()
    length = torch.minimum(torch.where(left, x, x1), WINDOW_SD * sd)
    length = torch.where(slope * length > DECAY, DECAY / slope, length)
    sign = torch.where(left, -1.0, 1.0).unsqueeze(-1)
    half = 0.5 * length
    e = sign * (half.unsqueeze(-1) * (1.0 + _GL_X.to(x.device)))  # nodes, from x into the tail
    dens = torch.exp(_bump_log_density(
        *(v.unsqueeze(-1) for v in (a, b, p, q, log_norm)),
        d_x.unsqueeze(-1) + e, x.unsqueeze(-1) + e, x1.unsqueeze(-1) - e,
    ))
    mass = half * (dens * _GL_W.to(x.device)).sum(-1)
    return torch.where(left, mass, 1.0 - mass), torch.where(left, 1.0 - mass, mass)


def _betainc_interior(a, b, x):
    """(I_x(a, b), 1 - I_x(a, b)) for 0 < a, b < inf and 0 < x < 1: the smaller to full
    relative precision where it is computed directly, the larger to full absolute precision."""
    small, big = torch.minimum(a, b), torch.maximum(a, b)
    large = small >= LARGE
    gamma = ~large & (big >= HUGE)
    empty = torch.empty_like(x)
    outs = (empty, empty.clone())

    def cf(a, b, x):
        return _betainc_cf(a, b, x, torch.log(x), _log1m(x))

    def gamma_limit(a, b, x):
        # I = P(a, z) with b huge; mirrored, I = Q(b, z) with a huge.
        b_big = b >= a
        p, q = _betainc_gamma(
            torch.where(b_big, a, b), torch.where(b_big, b, a),
            torch.where(b_big, _log1m(x), torch.log(x)),
        )
        return torch.where(b_big, p, q), torch.where(b_big, q, p)

    outs = _override(large, _betainc_quad, (a, b, x), (LARGE, LARGE, 0.5), outs)
    outs = _override(~large & ~gamma, cf, (a, b, x), (1.0, 1.0, 0.5), outs)
    outs = _override(gamma, gamma_limit, (a, b, x), (1.0, HUGE, 0.5), outs)
    return tuple(v.clamp(0.0, 1.0) for v in outs)


def _log_pdf(a, b, x):
    """log of the Beta(a, b) density at x, 0 < x < 1."""

    def bump(a, b, x):
        s, p, q, log_norm = _bump(a, b)
        return (_bump_log_density(a, b, p, q, log_norm, _delta_at(p, q, x), x, 1.0 - x),)

    large = torch.minimum(a, b) >= LARGE
    plain = (a - 1.0) * torch.log(x) + (b - 1.0) * _log1m(x) - _log_beta(a, b)
    (out,) = _override(large, bump, (a, b, x), (LARGE, LARGE, 0.5), (plain,))
    return out


def betainc(a, b, x) -> torch.Tensor:
    """Regularised incomplete beta function ``I_x(a, b)`` (the Beta(a, b) CDF at x).

    Elementwise with broadcasting, in scipy's argument order. Computed in float64;
    the result is float64 if any input is float64, else float32. Accurate to about
    1e-10 absolute for ``a, b`` in [1e-30, 1e30] and relatively accurate in the
    tails (see the README); exact at the limits: ``a`` or ``b`` equal to 0 or inf
    gives the limiting point masses, and ``a = b = 0`` gives 0.5 inside (0, 1),
    ``a = b = inf`` a step at 0.5 (scipy: NaN). NaN for NaN inputs, negative shapes
    and x outside [0, 1]. Served by the op ``torch.ops.kmixup.betainc`` (compiled
    where built, else :func:`betainc_torch`).

    Args:
        a: first shape parameter, >= 0.
        b: second shape parameter, >= 0.
        x: point in [0, 1].
    """
    (a, b, x), out_dtype = _prepare(a=a, b=b, x=x)
    return torch.ops.kmixup.betainc(a, b, x).to(out_dtype)


def _chunked(fn, a, b, t):
    """fn on float64 chunks of the flattened inputs, into a result of t's dtype and shape."""
    out = torch.empty_like(t, memory_format=torch.contiguous_format)
    a, b, t, flat = a.reshape(-1), b.reshape(-1), t.reshape(-1), out.view(-1)
    step = CPU_CHUNK if _adaptive(t) else DEVICE_CHUNK
    for i in range(0, t.numel(), step):
        chunk = (v[i:i + step].double() for v in (a, b, t))
        flat[i:i + step] = fn(*chunk)
    return out


@torch.no_grad()
def betainc_torch(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:func:`betainc` in torch ops, on floating tensors of one shape; returns ``x``'s dtype."""
    return _chunked(_betainc_flat, a, b, x)


def _betainc_flat(a, b, x):
    interior = (a > 0) & (b > 0) & (a < math.inf) & (b < math.inf) & (x > 0) & (x < 1)
    # a == b at x = 1/2 is 1/2 by symmetry, exactly (the quadrature is not exact).
    work = interior & ~((a == b) & (x == 0.5))
    (value,) = _override(
        work, lambda *t: _betainc_interior(*t)[:1], (a, b, x), (1.0, 1.0, 0.5),
        (torch.full_like(x, 0.5),),
    )
    return _with_limits(a, b, x, interior, value, inverse=False)


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


def _cf_next_term(a, b, x):
    """The continued fraction of I_x(a, b) as 1 / (1 - d1 / (1 + d2 / ...)): its second term
    relative to its first, d1 d2 / (1 - d1)^2; inf beyond the side where it converges."""
    d1 = (a + b) * x / (a + 1.0)
    d2 = (b - 1.0).abs() * x / ((a + 1.0) * (a + 2.0))
    return torch.where(d1 < 1.0, d1 * d2 / ((1.0 - d1) * (1.0 - d1)), math.inf)


def _guess(a, b, t_lower, t_upper, upper_tail):
    """Starting log x for the inverse (see special.h's betaincinv_lower): the first term of
    either tail's continued fraction, solved for x by iterating on its dominant factor, where
    it has settled and its next term is small; else, with both shapes above 1, Abramowitz &
    Stegun 26.5.22."""
    log_beta_ab = _log_beta(a, b)
    c = (a + 1.0) / (a + b + 2.0)
    x_max = c.clamp_max(0.5)
    log_lower, log_upper = torch.log(t_lower), torch.log(t_upper)
    x_lower, x_upper = x_max, x_max
    moved_lower = moved_upper = None
    for _ in range(GUESS_STEPS):
        u = (log_lower - torch.log1p(a) + torch.log(a) + log_beta_ab - b * torch.log1p(-x_lower)
             + torch.log(a + 1.0 - (a + b) * x_lower)) / a
        u = torch.minimum(u, torch.log(x_max)).clamp_min(_LOG_TINY)
        moved_lower = a * (u - torch.log(x_lower)).abs()
        x_lower = torch.exp(u)
        v = (log_upper - torch.log1p(b) + torch.log(b) + log_beta_ab - a * torch.log(x_upper)
             + torch.log(1.0 - a + (a + b) * x_upper)) / b
        v = torch.minimum(v, torch.log1p(-c)).clamp_min(-_LOG_2)  # log(1 - x), x in [c, 1/2]
        moved_upper = b * (v - torch.log1p(-x_upper)).abs()
        x_upper = -torch.expm1(v)
    err_lower = torch.where(moved_lower <= 1.0, _cf_next_term(a, b, x_lower), math.inf)
    err_upper = torch.where(moved_upper <= 1.0, _cf_next_term(b, a, 1.0 - x_upper), math.inf)
    u = torch.log(torch.where(err_upper < err_lower, x_upper, x_lower))
    # Nearer the bulk, Abramowitz & Stegun 26.5.22, good when both shapes exceed 1.
    z = torch.where(upper_tail, torch.special.ndtri(t_upper), -torch.special.ndtri(t_lower))
    lam = (z * z - 3.0) / 6.0
    ia, ib = 1.0 / (2.0 * a - 1.0), 1.0 / (2.0 * b - 1.0)
    h = 2.0 / (ia + ib)
    w = z * torch.sqrt((h + lam).clamp_min(0.0)) / h
    w = w - (ib - ia) * (lam + 5.0 / 6.0 - 2.0 / (3.0 * h))
    u_normal = torch.log(a) - torch.log(a + b * torch.exp(2.0 * w))
    normal = (a > 1.0) & (b > 1.0) & ~(torch.minimum(err_lower, err_upper) <= GUESS_TOL)
    u = torch.where(normal, u_normal, u)
    return torch.where(u.isnan(), -_LOG_2, u).clamp(_LOG_TINY, -_LOG_2)


def _newton_step(a, b, u, lo, hi, log_target, upper_tail):
    """One safeguarded Newton step on the log of the target tail against u = log x: the new
    (u, lo, hi) and whether it ends the iteration (converged, or the root lies beyond the
    bracket: x below DBL_MIN, or y within rounding of I_{1/2})."""
    x = torch.exp(u)
    lower, upper = _betainc_interior(a, b, x)
    log_mass = torch.log(torch.where(upper_tail, upper, lower))  # -inf where it underflows
    miss = torch.where(upper_tail, log_target - log_mass, log_mass - log_target)  # rises with u
    beyond = ((miss > 0) & (u <= _LOG_TINY)) | ((miss < 0) & (u >= -_LOG_2))
    hi_new, lo_new = torch.where(miss > 0, u, hi), torch.where(miss > 0, lo, u)
    slope = torch.exp(u + _log_pdf(a, b, x) - log_mass)  # |d log(tail) / d log x|
    nxt = u - miss / slope
    inside = (nxt >= lo_new) & (nxt <= hi_new)
    # Bisection in log(-log x): the bracket starts out spanning orders of magnitude.
    u_new = torch.where(inside, nxt, -torch.sqrt(lo_new * hi_new))
    done = beyond | (inside & (((nxt - u).abs() <= NEWTON_TOL * nxt.abs())
                               | (miss.abs() <= RESIDUAL_TOL)))
    return (torch.where(beyond, u, u_new), torch.where(beyond, lo, lo_new),
            torch.where(beyond, hi, hi_new), done)


def _betaincinv_lower(a, b, t_lower, t_upper):
    """x in (0, 1/2] with (I_x(a, b), 1 - I_x(a, b)) = (t_lower, t_upper), for 0 < a, b < inf
    and 0 < t_lower <= I_{1/2}(a, b); of the pair the smaller is exact and the other is 1
    minus it: Newton works on the smaller."""
    upper_tail = t_upper < t_lower
    log_target = torch.log(torch.where(upper_tail, t_upper, t_lower))
    u = _guess(a, b, t_lower, t_upper, upper_tail)
    lo, hi = torch.full_like(u, _LOG_TINY), torch.full_like(u, -_LOG_2)
    if not _adaptive(u):
        done = torch.zeros_like(u, dtype=torch.bool)
        for _ in range(NEWTON_STEPS):
            u_new, lo_new, hi_new, finished = _newton_step(a, b, u, lo, hi, log_target, upper_tail)
            u, lo, hi = (torch.where(done, old, new) for old, new in
                         ((u, u_new), (lo, lo_new), (hi, hi_new)))
            done = done | finished
        return torch.exp(u)
    # On CPU, only the elements not yet solved take the next step.
    result = u.clone()
    idx = torch.arange(u.numel(), device=u.device)
    state = (a, b, u, lo, hi, log_target, upper_tail)
    for _ in range(NEWTON_STEPS):
        a, b, u, lo, hi, log_target, upper_tail = state
        u, lo, hi, finished = _newton_step(a, b, u, lo, hi, log_target, upper_tail)
        result[idx] = u
        keep = ~finished
        if not bool(keep.any()):
            break
        idx = idx[keep]
        state = tuple(t[keep] for t in (a, b, u, lo, hi, log_target, upper_tail))
    return torch.exp(result)


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


@torch.no_grad()
def betaincinv_torch(a: torch.Tensor, b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`betaincinv` in torch ops, on floating tensors of one shape; returns ``y``'s
    dtype."""
    return _chunked(_betaincinv_flat, a, b, y)


def _betaincinv_flat(a, b, y):
    interior = (a > 0) & (b > 0) & (a < math.inf) & (b < math.inf) & (y > 0) & (y < 1)
    # The median of a symmetric Beta is 1/2 exactly: Newton cannot resolve it when the density
    # is flat.
    work = interior & ~((a == b) & (y == 0.5))

    def solve(a, b, y):
        # Solve for whichever of x and 1 - x is below 1/2, so that it is resolved to full
        # precision, with I_{1-x}(b, a) = 1 - y and 1 - I = y exactly. I_{1/2} is 1/2 by
        # symmetry for a == b.
        (half,) = _override(
            a != b, lambda *t: _betainc_interior(*t)[:1], (a, b, torch.full_like(y, 0.5)),
            (1.0, 2.0, 0.5), (torch.full_like(y, 0.5),),
        )
        upper = y > half
        x = _betaincinv_lower(
            torch.where(upper, b, a), torch.where(upper, a, b),
            torch.where(upper, 1.0 - y, y), torch.where(upper, y, 1.0 - y),
        )
        return (torch.where(upper, 1.0 - x, x),)

    (value,) = _override(work, solve, (a, b, y), (1.0, 1.0, 0.25), (torch.full_like(y, 0.5),))
    return _with_limits(a, b, y, interior, value, inverse=True)
