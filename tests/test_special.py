"""kmixup.special against scipy (and mpmath where scipy itself is inaccurate).

Every accuracy test runs three times: through the public functions (the ``torch.ops.kmixup``
ops, i.e. the compiled kernel where one is built), through the pure-PyTorch kernels as they
run on CPU (work following the data), and through their fixed-work form, the one that runs
on any other device.
"""

import functools
import math
import subprocess
import sys

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


@pytest.fixture(params=["ops", "torch", "torch-fixed"])
def fns(request, monkeypatch):
    """(betainc, betaincinv) of one implementation."""
    if request.param == "ops":
        return special.betainc, special.betaincinv
    if request.param == "torch-fixed":
        monkeypatch.setattr(special, "_adaptive", lambda t: False)
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


# ----------------------------------------------------------------------------- tails


def _mp_lower_tail(a, b, x):
    """I_x(a, b) to 40 significant digits where x lies below the mean: the hypergeometric form
    x^a (1 - x)^b / (a B(a, b)) 2F1(a + b, 1; a + 1; x), whose series converges geometrically
    there (mpmath's own betainc computes 1 - I to fewer digits than a tail of 1e-300 needs)."""
    with mpmath.workdps(40):
        a, b, x = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(x)
        log_front = a * mpmath.log(x) + b * mpmath.log1p(-x) - mpmath.log(a) - mpmath.log(
            mpmath.beta(a, b))
        return mpmath.exp(log_front) * mpmath.hyp2f1(a + b, 1, a + 1, x)


# (a, b) by regime: the continued fraction, with shapes below SMALL among them; the Gamma
# limit; the quadrature, out to ~38 sd; and the pair from the quadrature's window bug.
TAIL_SHAPES = [
    (0.3, 2.0), (2.5, 7.0), (24.9, 80.03), (1.0, 1e-10), (0.005, 50.0), (0.003, 0.2),
    (0.5, 1e8), (24.9, 1e6), (7.0, 1e12), (0.005, 1e9), (80.03, 29.7), (25.0, 1e3),
    (1e3, 1e3), (30.0, 1e5), (1e4, 1e4), (1e5, 1e5),
]
TAIL_LEVELS = [1e-300, 1e-200, 1e-100, 1e-40, 1e-15, 1e-6]


@functools.cache
def _tail_grid():
    """(a, b, x, I_x(a, b), condition) for x in the lower tail of each TAIL_SHAPES pair and of
    its mirror (placed with scipy, whose quantiles are only roughly right there); the
    condition number min(x, 1/2) f(x) / I ~ ulp(x) / eps f(x) / I is how much I moves,
    relatively, when x moves by one rounding."""
    rows = []
    for pair in TAIL_SHAPES:
        for a, b in (pair, pair[::-1]):
            for level in TAIL_LEVELS:
                x = float(sp.betaincinv(a, b, level))
                if not (0 < x < 1 and x * (a + b) < a):
                    continue
                with mpmath.workdps(40):
                    tail = _mp_lower_tail(a, b, x)
                    log_pdf = ((a - 1) * mpmath.log(x) + (b - 1) * mpmath.log1p(-mpmath.mpf(x))
                               - mpmath.log(mpmath.beta(a, b)))
                    cond = min(x, 0.5) * mpmath.exp(log_pdf) / tail
                if 1e-300 <= tail <= 1e-3:
                    rows.append((a, b, x, float(tail), float(cond)))
    return rows


def test_betainc_relative_accuracy_in_the_tails(fns):
    betainc, _ = fns
    a, b, x, tail, cond = (np.array(v) for v in zip(*_tail_grid()))
    assert len(a) > 120
    got = betainc(torch.tensor(a), torch.tensor(b), torch.tensor(x)).numpy()
    err = np.abs(got / tail - 1)
    tol = 1e-12 + 8 * np.finfo(float).eps * cond
    worst = np.argmax(err / tol)
    assert np.all(err <= tol), (a[worst], b[worst], x[worst], got[worst], tail[worst], err[worst])
    # The case that the quadrature's window flushed to 0: scipy gets 6.0286e-92 too.
    one = betainc(torch.tensor(80.03, dtype=torch.float64), 29.7, 0.03454).item()
    assert one == pytest.approx(float(_mp_lower_tail(80.03, 29.7, 0.03454)), rel=1e-12)


def _mp_betainc_at(a, b, x):
    with mpmath.workdps(40):
        return mpmath.betainc(a, b, 0, x, regularized=True)


def test_betaincinv_tiny_tail_with_the_quantile_above_half(fns):
    _, betaincinv = fns
    # Asymmetric shapes whose tiny lower tail ends above 1/2, where the quantile is solved as
    # 1 minus that of Beta(b, a) at 1 - y (which used to round y away).
    a, b, y = (v.ravel() for v in np.meshgrid(
        np.geomspace(3, 1e13, 9), [0.1, 0.37, 1.0, 2.5, 7.0, 30.0],
        [1e-300, 1e-100, 1e-30, 1e-10, 1e-4], indexing="ij"))
    x = betaincinv(torch.tensor(a), torch.tensor(b), torch.tensor(y)).numpy()
    assert np.count_nonzero(x > 0.5) > 150
    for a_, b_, y_, x_ in zip(a, b, y, x):
        # x is right when I(x) = y to 1e-10, or y lies between I at its neighbouring doubles.
        if abs(_mp_betainc_at(a_, b_, x_) / y_ - 1) <= 1e-10:
            continue
        below = _mp_betainc_at(a_, b_, np.nextafter(x_, 0))
        above = _mp_betainc_at(a_, b_, np.nextafter(x_, 1))
        assert below <= y_ <= above, (a_, b_, y_, x_)
    got = betaincinv(torch.tensor(100.0, dtype=torch.float64), 1.0, 1e-20).item()
    assert got == pytest.approx(1e-20 ** 0.01, rel=1e-15)


@pytest.mark.parametrize("a", [1e-10, 0.005, 1.0, 3.0, 1e6])
def test_betaincinv_tiny_tails_against_closed_forms(fns, a):
    _, betaincinv = fns
    # I_x(a, 1) = x^a and I_x(1, a) = 1 - (1 - x)^a, with the other shape as small or large.
    y = torch.tensor([1e-300, 1e-100, 1e-20, 1e-10, 1e-3, 0.3], dtype=torch.float64)
    lower = betaincinv(torch.full_like(y, a), 1.0, y)
    want = torch.exp(torch.log(y) / a).clamp_min(sys.float_info.min)  # the inverse's floor
    torch.testing.assert_close(lower, want, rtol=1e-13, atol=0)
    upper = betaincinv(torch.full_like(y, 1.0), a, y)
    torch.testing.assert_close(upper, -torch.expm1(torch.log1p(-y) / a), rtol=1e-13, atol=0)


# ----------------------------------------------------------------------------- pure path


def _random_inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-30, 30, generator=g))
    b = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-30, 30, generator=g))
    t = torch.rand(n, dtype=torch.float64, generator=g)
    a[:8] = torch.tensor([0.0, math.inf, 2.0, 2.0, 1e30, 3.0, 3.0, math.nan])
    t[8:12] = torch.tensor([0.0, 1.0, 0.5, 1e-300])
    b[12:16] = a[12:16]
    return a, b, t


def test_fixed_work_form_matches_the_cpu_form(monkeypatch):
    a, b, t = _random_inputs(600, seed=3)
    adaptive = special.betainc_torch(a, b, t), special.betaincinv_torch(a, b, t)
    monkeypatch.setattr(special, "_adaptive", lambda t: False)
    fixed = special.betainc_torch(a, b, t), special.betaincinv_torch(a, b, t)
    for got, want in zip(fixed, adaptive):
        torch.testing.assert_close(got, want, rtol=1e-14, atol=1e-300, equal_nan=True)


def test_pure_kernels_never_read_data_off_the_cpu(monkeypatch):
    # Reading a meta tensor's data raises, as a GPU tensor's would synchronise the device.
    # Every loop runs twice: their count does not change which code runs.
    for name in ("CF_TERMS", "GAMMA_TERMS", "NEWTON_STEPS"):
        monkeypatch.setattr(special, name, 2)
    a, b, t = (v.to("meta") for v in _random_inputs(100, seed=4))
    assert special.betainc_torch(a, b, t).shape == (100,)
    assert special.betaincinv_torch(a, b, t).shape == (100,)


def test_chunks_do_not_change_results(monkeypatch):
    a, b, t = (v.reshape(10, 30) for v in _random_inputs(300, seed=5))
    whole = special.betainc_torch(a, b, t), special.betaincinv_torch(a, b, t)
    monkeypatch.setattr(special, "CPU_CHUNK", 7)
    chunked = special.betainc_torch(a, b, t), special.betaincinv_torch(a, b, t)
    for got, want in zip(chunked, whole):
        assert torch.equal(got.isnan(), want.isnan())
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


_PEAK_SCRIPT = """
import resource, sys, torch
from kmixup import special
n = int(sys.argv[1])
a, b, y = (torch.rand(n, dtype=torch.float64) * 100 for _ in range(3))
y /= 100
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
special.betainc_torch(a, b, y)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_pure_kernels_use_bounded_memory():
    """The temporaries are those of one chunk: the peak grows by the output alone (8 bytes an
    element), not by the ~5 KB an element that evaluating every element at once took."""
    def extra_peak_kib(n):
        out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(n)], capture_output=True,
                             text=True, check=True)
        return int(out.stdout)

    small, large = extra_peak_kib(50_000), extra_peak_kib(400_000)
    assert (large - small) * 1024 <= 32 * 350_000, (small, large)


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
