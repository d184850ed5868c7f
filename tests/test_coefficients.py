"""The SK Mixup coefficient as the kernels compute it, against scipy and mpmath.

The kernels evaluate ``I(lam; 1/tau, 1/tau)`` and ``I^-1(lam; tau, tau)`` with the symmetric
special functions of csrc/special.h, in float32 for float32/float16/bfloat16 data and in
float64 for float64 data. Required: at most 2e-6 absolute (float32) and 1e-11 (float64) over
shapes 1e-30..1e30, and the limits exact. A batch of pairs whose distances are all equal
has dn = 1, so every pair gets tau = exp(log(tau_max)): each call evaluates one shape at
many lam.
"""

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import special as sp

from kmixup import _ops
from kmixup import _torch_kernels as K

ops = torch.ops.kmixup
needs_compiled = pytest.mark.skipif(not _ops.has_compiled_kernel("cpu"),
                                    reason="kmixup._C has no CPU kernel here")

SHAPES = [1e-30, 1e-20, 1e-10, 1e-5, 1e-3, 0.01, 0.1, 0.5, 1.0, 2.0, 2.99, 3.0, 3.01, 3.85, 5.0,
          7.99, 8.0, 8.01, 30.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e8, 1e12, 1e20, 1e30]
TOL = {torch.float32: 2e-6, torch.float64: 1e-11}
# Where scipy's symmetric betainc/betaincinv stop being accurate (Boost, near the median
# of a steep bump), an mpmath reference takes over.
SCIPY_MAX_SHAPE = 1e4


def _lams(shape, dtype):
    """lam in [0, 1], representable in dtype: a log-spaced tail, the bulk, and points
    within a few standard deviations of 1/2 for this shape, each mirrored about 1/2."""
    sd = 0.5 / math.sqrt(2 * shape + 1)
    half = [1e-300, 1e-30, 1.2e-16, 2e-12, 1e-10, 1e-5, 1e-3, 0.01, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4,
            0.45, 0.49, 0.499, 0.4999]
    half += [0.5 - k * sd for k in (0.1, 0.5, 1, 2, 4, 8) if 0.5 - k * sd > 0]
    lam = np.array([0.0, 0.5, 1.0] + half + [1 - v for v in half])
    return torch.tensor(lam).to(dtype).double().unique()


def _coefficients(shape, lam, dtype, warping, lam_dtype=None):
    """The kernel's coefficients at this shape (1/tau for beta_cdf, tau for the inverse),
    and the shape as the kernel formed it (from log tau = log(tau_max), in float64). lam is
    passed as lam_dtype (default: float64 for float64 data, else float32)."""
    n = len(lam)
    x = torch.zeros(2 * n, 1, dtype=dtype)
    x[1::2] = 1  # every pair (2i, 2i + 1) at squared distance 1: dn = 1
    perm = torch.arange(2 * n).view(n, 2).flip(1).reshape(-1)
    if lam_dtype is None:
        lam_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    lam2 = lam.repeat_interleave(2).to(lam_dtype)
    tau_max = 1.0 / shape if warping == "beta_cdf" else shape
    _, coeff = ops.kernel_mix(x, perm, lam2, x, tau_max, 0.25, warping)
    assert coeff.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    log_tau = math.log(tau_max)  # beta_cdf's shape 1 / tau is formed as exp(-log tau)
    return coeff[::2].double().numpy(), math.exp(-log_tau if warping == "beta_cdf" else log_tau)


def _mp_cdf(s, x):
    """I_x(s, s) as an mpf to ~30 digits: directly for moderate s, else as
    1/2 - I_t(1/2, s) / 2 with t = (1 - 2x)^2 (a series of about s t terms, computed with
    the ~s t / 2.3 extra digits that the difference cancels; beyond s t = 800 the tail is
    below e^-800)."""
    with mpmath.workdps(40):
        s, x = mpmath.mpf(s), mpmath.mpf(x)
        if x > 0.5:
            return 1 - _mp_cdf(s, 1 - x)
        if x == 0:
            return mpmath.mpf(0)
        if s < 1e3:
            return mpmath.betainc(s, s, 0, x, regularized=True)
        t = (1 - 2 * x) ** 2
        if s * t > 800:
            return mpmath.mpf(0)
        half = mpmath.mpf(1) / 2
        with mpmath.workdps(40 + int(s * t / 2)):  # the digits that 1/2 - I_t/2 cancels
            return +(half - mpmath.betainc(half, s, 0, t, regularized=True) / 2)


def _cdf(s, x):
    """By symmetry from the nearer end, where 1 - x is exact (scipy's I(1 - 1e-16) is not)."""
    x = np.asarray(x, float)
    if s <= SCIPY_MAX_SHAPE:
        return np.where(x > 0.5, 1 - sp.betainc(s, s, 1 - x), sp.betainc(s, s, x))
    return np.array([float(_mp_cdf(s, v)) for v in np.atleast_1d(x)])


def _mp_quantile(s, y):
    """The quantile for 0 < y < 1/2 by bisection on the mpmath CDF: in log x between 1e-320
    and 1/2, or for a large shape (a near-normal bump, whose CDF is 0 to mpmath's eyes far
    out) in x within 60 standard deviations of 1/2."""
    if s < 1e3:
        lo, hi, to_x = math.log(1e-320), math.log(0.5), math.exp
    else:
        lo, hi, to_x = 0.5 - 30 / math.sqrt(2 * s + 1), 0.5, float
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _mp_cdf(s, to_x(mid)) < y:
            lo = mid
        else:
            hi = mid
    return to_x(0.5 * (lo + hi))


def _quantile(s, y):
    """By symmetry from the nearer end; scipy where it is accurate, else mpmath."""
    y = np.asarray(y, float)
    near = np.fmin(y, 1 - y)
    x = sp.betaincinv(s, s, near) if s <= SCIPY_MAX_SHAPE else np.full(near.shape, np.nan)
    for i in np.flatnonzero(np.isnan(x)):
        x[i] = near[i] if near[i] in (0.0, 0.5) else _mp_quantile(s, near[i])
    return np.where(y > 0.5, 1 - x, x)


def _quantile_error(s, y, got, dtype):
    """|x - x_ref|, and 0 where x is the exact quantile of a y' within 4 eps of y (relative,
    eps of the evaluation type) or y lies between I at x's neighbours in that type: where
    the quantile is ill-conditioned (tiny s near y = 1/2), that is all an answer can be."""
    np_dtype = np.float64 if dtype == torch.float64 else np.float32
    eps = np.finfo(np_dtype).eps
    back = np.abs(_cdf(s, got) - y)
    g = got.astype(np_dtype)
    below = _cdf(s, np.nextafter(g, np_dtype(0)).astype(float))
    above = _cdf(s, np.nextafter(g, np_dtype(1)).astype(float))
    exact = ((below <= y) & (y <= above)) | (back <= 4 * eps * np.fmin(y, 1 - y))
    err = np.zeros_like(got)
    err[~exact] = np.abs(got[~exact] - _quantile(s, y[~exact]))
    return err


@needs_compiled
@pytest.mark.parametrize("dtype, lam_dtype", [(torch.float32, torch.float32),
                                              (torch.float32, torch.float64),
                                              (torch.float64, torch.float64)])
@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
@pytest.mark.parametrize("shape", SHAPES)
def test_coefficient_accuracy_over_the_shape_range(shape, warping, dtype, lam_dtype):
    """float64 lam for float32 data too: its distance to 0, 1 and 1/2 reaches the float32
    evaluation with its relative precision (1 - 1e-16 is not 1, 1e-300 not 0)."""
    lam = _lams(shape, lam_dtype)
    got, s = _coefficients(shape, lam, dtype, warping, lam_dtype)
    y = lam.numpy()
    if warping == "beta_cdf":
        err = np.abs(got - _cdf(s, y))
    else:
        err = _quantile_error(s, y, got, dtype)
    assert err.max() <= TOL[dtype], (y[err.argmax()], got[err.argmax()], err.max())
    assert ((got >= 0) & (got <= 1)).all()  # also where the error is tiny (-1e-39 was)
    # The limits and the symmetry point are exact.
    for value in (0.0, 0.5, 1.0):
        assert got[y == value].tolist() == [value]


# The regimes of csrc/special.h's symmetric path change at these shapes: log(s B(s, s)) from
# its Taylor series below 1/32, above it shifted to the asymptotic series below 8 (float:
# lgamma), which is also where the double CDF leaves its power series for the Gamma
# expansion (3 in float).
REGIME_EDGES = [1 / 32, 3.0, 8.0]


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_coefficient_accuracy_densely_across_the_series_regimes(warping, dtype):
    """Shapes on a log grid over the power-series regimes and at each regime edge (and an ulp
    either side), each at lam dense over [0, 1] as well as _lams' points."""
    grid = np.geomspace(1e-4, 12.0, 25).tolist()
    edges = [e * (1 + k * 1e-12) for e in REGIME_EDGES for k in (-1, 0, 1)]
    for shape in grid + edges:
        lam = torch.cat([_lams(shape, torch.float64),
                         torch.linspace(0, 1, 101, dtype=torch.float64)]).unique()
        got, s = _coefficients(shape, lam, dtype, warping, torch.float64)
        y = lam.numpy()
        if warping == "beta_cdf":
            err = np.abs(got - _cdf(s, y))
        else:
            err = _quantile_error(s, y, got, dtype)
        assert err.max() <= TOL[dtype], (shape, y[err.argmax()], got[err.argmax()], err.max())


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
@pytest.mark.parametrize("shape", [1e-30, 0.3, 1.0, 7.0, 300.0, 1e30])
def test_compiled_coefficient_matches_pure(shape, warping, dtype):
    """The pure path evaluates the coefficient in float64 with the general betainc and
    betaincinv, the compiled float32 path in float32: they agree to the float32 path's
    accuracy (2e-6), the float64 paths to 1e-11."""
    lam = _lams(shape, dtype)
    n = len(lam)
    x = torch.randn(2 * n, 3, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    x = x.to(dtype)
    perm = torch.randperm(2 * n, generator=torch.Generator().manual_seed(1))
    lam2 = torch.cat([lam, lam.flip(0)]).to(torch.float64 if dtype == torch.float64
                                           else torch.float32)
    got = ops.kernel_mix(x, perm, lam2, x, shape, 0.5, warping)[1]
    ref = K.kernel_mix(x, perm, lam2, x, shape, 0.5, warping)[1]
    torch.testing.assert_close(got, ref, rtol=0, atol=TOL[dtype])


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_data_use_the_float32_path(dtype):
    lam = _lams(2.0, torch.float32)
    for warping in ("beta_cdf", "inverse_beta_cdf"):
        got = _coefficients(2.0, lam, dtype, warping)[0]
        want = _coefficients(2.0, lam, torch.float32, warping)[0]
        np.testing.assert_array_equal(got, want)


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tau_limits_are_exact(dtype):
    """A vanishing kernel width sends tau to inf (dn < 1) or 0 (dn > 1): beta_cdf's shape
    1/tau is then 0 (0.5 inside (0, 1)) or inf (a step at 1/2); the inverse's shape tau is
    inf (its quantile 0.5 inside) or 0 (a step), the same coefficients (docs/design.md,
    "Defined behaviour at the edges")."""
    lam = torch.tensor([0.0, 1e-30, 0.2, 0.5, 0.7, 1.0], dtype=torch.float64)
    n = len(lam)
    x = torch.zeros(4 * n, 1, dtype=dtype)
    x[1:2 * n:2] = 1  # first half of the pairs: squared distance 1 (dn = 1/2)
    x[2 * n + 1::2] = 3 ** 0.5  # second half: 3 (dn = 3/2)
    perm = torch.arange(4 * n).view(2 * n, 2).flip(1).reshape(-1)
    lam4 = lam.repeat_interleave(2).repeat(2).to(x.dtype if dtype == torch.float64
                                                 else torch.float32)
    inside = (lam > 0) & (lam < 1)
    step = torch.where(lam < 0.5, 0.0, torch.where(lam > 0.5, 1.0, 0.5)).double()
    half = torch.where(inside, 0.5, lam)
    for warping in ("beta_cdf", "inverse_beta_cdf"):
        coeff = ops.kernel_mix(x, perm, lam4, x, 1.0, 1e-200, warping)[1].double()
        assert coeff[:2 * n:2].tolist() == half.tolist()  # tau = inf
        assert coeff[2 * n::2].tolist() == step.tolist()  # tau = 0
