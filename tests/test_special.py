"""kmixup.special against scipy (and mpmath where scipy itself is inaccurate).

Every accuracy test runs twice: through the public functions (the ``torch.ops.kmixup``
ops, i.e. the compiled kernel where one is built) and through the pure-PyTorch kernels.
"""

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import special as sp

from kmixup import special


def _torch_kernel(kernel):
    def call(a, b, t):
        (a, b, t), out_dtype = special._prepare(a=a, b=b, t=t)
        return kernel(a, b, t).to(out_dtype)

    return call


@pytest.fixture(params=["ops", "torch"])
def fns(request):
    """(betainc, betaincinv) of one implementation."""
    if request.param == "ops":
        return special.betainc, special.betaincinv
    return _torch_kernel(special.betainc_torch), _torch_kernel(special.betaincinv_torch)


betainc, betaincinv = special.betainc, special.betaincinv

SHAPES = [1e-30, 1e-10, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 24.9, 25.0, 30.0, 100.0, 1e3, 1e5, 1e6,
          1e8, 1e12, 1e14]
SYMMETRIC_HUGE = [1e16, 1e20, 1e25, 1e30]
POINTS = [1e-300, 1e-30, 1e-10, 1e-5, 0.01, 0.1, 0.3, 0.49, 0.5, 0.51, 0.7, 0.9, 0.99,
          1 - 1e-5, 1 - 1e-10]


def _grid():
    """(a, b, x): every pair of SHAPES, a = b up to 1e30, and points within a few standard
    deviations of the mean, where large shapes make the function steep."""
    pairs = [(a, b) for a in SHAPES for b in SHAPES] + [(s, s) for s in SYMMETRIC_HUGE]
    rows = [(a, b, x) for a, b in pairs for x in POINTS]
    for a, b in pairs:
        mean, sd = a / (a + b), math.sqrt(a * b / (a + b) ** 3)
        near = (mean + k * sd for k in (-8, -2, -0.5, 0, 0.5, 2, 8))
        rows += [(a, b, x) for x in near if 0 < x < 1]
    return np.array(rows).T


def _mp_betainc(a, b, x):
    """High-precision I_x(a, b) by quadrature of the density around its mean."""
    with mpmath.workdps(60):
        a, b, x = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(x)
        log_beta = mpmath.loggamma(a) + mpmath.loggamma(b) - mpmath.loggamma(a + b)

        def density(t):
            return mpmath.exp((a - 1) * mpmath.log(t) + (b - 1) * mpmath.log1p(-t) - log_beta)

        mean = a / (a + b)
        sd = mpmath.sqrt(mean * (1 - mean) / (a + b))
        lo, hi = max(mpmath.mpf(0), mean - 40 * sd), min(mpmath.mpf(1), mean + 40 * sd)
        if x <= mean:
            return 0.0 if x <= lo else float(mpmath.quad(density, mpmath.linspace(lo, x, 8)))
        return 1.0 if x >= hi else float(1 - mpmath.quad(density, mpmath.linspace(x, hi, 8)))


def test_betainc_float64_matches_scipy_or_mpmath(fns):
    betainc, betaincinv = fns
    a, b, x = _grid()
    got = betainc(torch.tensor(a), torch.tensor(b), torch.tensor(x)).numpy()
    ref = sp.betainc(a, b, x)
    err = np.abs(got - ref)
    # scipy (Boost) loses accuracy near the mean of steep bumps (1e-9 at a, b = 25, 1e8; NaN
    # or 0.1 off beyond 1e15): judge the points where it disagrees by a 60-digit quadrature.
    for i in np.flatnonzero(~(err <= 1e-9)):
        err[i] = abs(got[i] - _mp_betainc(a[i], b[i], x[i]))
    assert err.max() <= 1e-9, err.max()


def test_betainc_float32_matches_scipy_at_rounded_inputs(fns):
    betainc, betaincinv = fns
    a, b, x = (v.astype(np.float32) for v in _grid())
    keep = (a + b < 1e12) & (x > 0) & (x < 1)  # float32 cannot resolve steeper bumps anyway
    a, b, x = a[keep], b[keep], x[keep]
    got = betainc(torch.tensor(a), torch.tensor(b), torch.tensor(x))
    assert got.dtype == torch.float32
    ref = sp.betainc(a.astype(np.float64), b.astype(np.float64), x.astype(np.float64))
    assert np.abs(got.numpy() - ref).max() <= 2e-6


def _inverse_error(a, b, y, got):
    """min(|x - x_ref|, |I(x) - y|), and 0 where y lies between I at x's neighbouring doubles
    (the answer is then the correctly rounded quantile, whatever the reference says)."""
    ref = sp.betaincinv(a, b, y)
    back = sp.betainc(a, b, got)
    below = sp.betainc(a, b, np.nextafter(got, 0))
    above = sp.betainc(a, b, np.nextafter(got, 1))
    err = np.fmin(np.abs(got - ref), np.abs(back - y))
    return np.where((below <= y) & (y <= above), 0.0, err)


def test_betaincinv_float64(fns):
    betainc, betaincinv = fns
    pairs = [(a, b) for a in SHAPES for b in SHAPES if a + b < 1e12] + [
        (s, s) for s in SHAPES + SYMMETRIC_HUGE
    ]
    a, b, y = np.array([(a, b, y) for a, b in pairs for y in POINTS]).T
    got = betaincinv(torch.tensor(a), torch.tensor(b), torch.tensor(y)).numpy()
    err = _inverse_error(a, b, y, got)
    assert err.max() <= 1e-9, (err.max(), a[err.argmax()], b[err.argmax()], y[err.argmax()])


def test_betaincinv_float32(fns):
    betainc, betaincinv = fns
    pairs = [(a, b) for a in SHAPES for b in SHAPES if a + b < 1e8]
    a, b, y = (v.astype(np.float32) for v in np.array(
        [(a, b, y) for a, b in pairs for y in POINTS if 1e-30 < y < 1 - 1e-5]).T)
    got = betaincinv(torch.tensor(a), torch.tensor(b), torch.tensor(y))
    assert got.dtype == torch.float32
    a64, b64, y64 = (v.astype(np.float64) for v in (a, b, y))
    err = _inverse_error(a64, b64, y64, got.numpy().astype(np.float64))
    # float32 rounding of the answer moves I by up to density * ulp; judge relative to that.
    assert np.all(err <= 2e-6 + 1e-6 * np.abs(got.numpy())), err.max()


def test_roundtrip_symmetric_warp_range(fns):
    betainc, betaincinv = fns
    # The shapes SK Mixup produces: 1/tau and tau for tau from exp(-72) to exp(8).
    shape = torch.exp(torch.linspace(-80, 80, 81, dtype=torch.float64))
    lam = torch.rand(81, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x = betaincinv(shape, shape, lam)
    assert torch.all((x >= 0) & (x <= 1))
    assert _inverse_error(shape.numpy(), shape.numpy(), lam.numpy(), x.numpy()).max() <= 1e-9


INF = math.inf


@pytest.mark.parametrize(
    "a, b, x, expected",
    [
        (0.0, 0.0, 0.3, 0.5), (0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 1.0, 1.0),
        (INF, INF, 0.3, 0.0), (INF, INF, 0.5, 0.5), (INF, INF, 0.7, 1.0),
        (0.0, 2.0, 0.3, 1.0), (2.0, 0.0, 0.3, 0.0), (INF, 2.0, 0.999, 0.0), (2.0, INF, 1e-300, 1.0),
        (2.0, 3.0, 0.0, 0.0), (2.0, 3.0, 1.0, 1.0), (1.0, 1.0, 0.5, 0.5),
        (2.0, 3.0, -0.1, math.nan), (2.0, 3.0, 1.1, math.nan), (-1.0, 2.0, 0.5, math.nan),
        (math.nan, 2.0, 0.5, math.nan),
    ],
)
def test_betainc_limits(fns, a, b, x, expected):
    betainc, _ = fns
    got = betainc(torch.tensor(a, dtype=torch.float64), b, x).item()
    assert got == pytest.approx(expected, abs=1e-15, nan_ok=True)


@pytest.mark.parametrize(
    "a, b, y, expected",
    [
        (0.0, 0.0, 0.3, 0.0), (0.0, 0.0, 0.5, 0.5), (0.0, 0.0, 0.7, 1.0),
        (INF, INF, 0.3, 0.5), (INF, INF, 0.99, 0.5), (INF, 2.0, 0.3, 1.0), (2.0, INF, 0.3, 0.0),
        (2.0, 3.0, 0.0, 0.0), (2.0, 3.0, 1.0, 1.0), (1.0, 1.0, 0.25, 0.25),
        (2.0, 3.0, 1.5, math.nan), (2.0, -3.0, 0.5, math.nan),
    ],
)
def test_betaincinv_limits(fns, a, b, y, expected):
    _, betaincinv = fns
    got = betaincinv(torch.tensor(a, dtype=torch.float64), b, y).item()
    assert got == pytest.approx(expected, abs=1e-15, nan_ok=True)


def test_broadcasting_and_dtypes():
    a = torch.tensor([[0.5], [2.0]])
    x = torch.tensor([0.1, 0.5, 0.9])
    out = betainc(a, 3.0, x)
    assert out.shape == (2, 3) and out.dtype == torch.float32
    assert betainc(a.double(), 3.0, x).dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), sp.betainc(a.numpy(), 3.0, x.numpy()), atol=2e-6)


def test_bad_inputs():
    with pytest.raises(TypeError, match="x must be a float32"):
        betainc(1.0, 1.0, torch.tensor([1, 0]))
    with pytest.raises(TypeError, match="y must be a float32"):
        betaincinv(1.0, 1.0, torch.tensor([1, 0]))
    with pytest.raises(ValueError, match=r"a \[2\], b \[3\], x \[2\]"):
        betainc(torch.ones(2), torch.ones(3), torch.ones(2))
