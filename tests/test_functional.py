"""kmixup.functional against the numpy/scipy oracle, its properties, and its input checks."""

import math

import numpy as np
import oracle
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kmixup import _checks
from kmixup import functional as F

WARPINGS = ["beta_cdf", "inverse_beta_cdf", "none"]

# kmixup.special promises 1e-9 in float64 (scipy itself is no better for steep bumps), so
# coefficients are compared at that; everything upstream and downstream of the special
# functions at 1e-12.
COEFF_TOL = {torch.float64: 1e-9, torch.float32: 1e-5}
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def derangement(batch, seed=0):
    """A random single-cycle permutation: no sample is paired with itself."""
    idx = torch.randperm(batch, generator=gen(seed))
    perm = torch.empty_like(idx)
    perm[idx] = idx.roll(1)
    return perm


def close(got, ref, tol, scale=1.0):
    got = got.detach().double().numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * max(1.0, scale))


# --------------------------------------------------------------------------- oracle


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_feats, per_sample", [(False, True), (True, False)])
@pytest.mark.parametrize("tail", [(), (6,), (3, 8, 8)])
@pytest.mark.parametrize("batch", [2, 3, 17])
@pytest.mark.parametrize("warping", WARPINGS)
def test_kernel_mix_matches_oracle(warping, batch, tail, with_feats, per_sample, dtype):
    g = gen(batch + len(tail))
    x = torch.randn((batch, *tail), generator=g, dtype=dtype) * 3 + 1
    feats = torch.randn(batch, 5, generator=g, dtype=dtype) if with_feats else None
    perm = derangement(batch, seed=batch)
    if per_sample:
        lam = torch.rand(batch, generator=g, dtype=dtype)
        lam[0] = 0.0  # exact endpoints take the exact-copy branches
        lam[-1] = 1.0
    else:
        lam = torch.tensor(0.3, dtype=dtype)
    mixed, coeff = F.kernel_mix(x, perm, lam, feats=feats, warping=warping)
    assert mixed.dtype == dtype and coeff.dtype == dtype and coeff.shape == (batch,)

    ref_mixed, ref_coeff = oracle.kernel_mix(
        x.double().numpy(), perm.numpy(), lam.double().numpy(),
        feats=None if feats is None else feats.double().numpy(), warping=warping,
    )
    scale = float(x.abs().max())
    close(coeff, ref_coeff, COEFF_TOL[dtype])
    close(mixed, ref_mixed, COEFF_TOL[dtype] * 2, scale)
    # Steps 1-3 and step 5 alone, at full precision.
    ref_tau = oracle.tau(oracle.sq_dist((x if feats is None else feats).double().numpy(),
                                        perm.numpy()), 1.0, 0.25)
    tau = F.similarity_tau(F.pair_sq_dist(x if feats is None else feats, perm), 1.0, 0.25)
    np.testing.assert_allclose(tau.double().numpy(), ref_tau, rtol=TOL[dtype] * 10)
    close(mixed, oracle.interpolate(x.double().numpy(), perm.numpy(), coeff.double().numpy()),
          TOL[dtype], scale)


@pytest.mark.parametrize("tau_max, tau_std", [(1e-4, 0.5), (5.0, 1.0), (1.0, 0.5), (30.0, 0.2)])
@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_kernel_mix_matches_oracle_across_kernel_parameters(tau_max, tau_std, warping):
    g = gen(1)
    x = torch.randn(17, 4, generator=g, dtype=torch.float64)
    perm = derangement(17)
    lam = torch.rand(17, generator=g, dtype=torch.float64)
    mixed, coeff = F.kernel_mix(x, perm, lam, tau_max=tau_max, tau_std=tau_std, warping=warping)
    ref_mixed, ref_coeff = oracle.kernel_mix(
        x.numpy(), perm.numpy(), lam.numpy(), tau_max=tau_max, tau_std=tau_std, warping=warping
    )
    close(coeff, ref_coeff, 1e-9)
    close(mixed, ref_mixed, 2e-9, float(x.abs().max()))


@settings(max_examples=40, deadline=None, database=None)
@given(
    data=st.lists(st.floats(-100, 100), min_size=2, max_size=8),
    # Far tails (lam < 1e-30) are test_special's business: there scipy itself returns NaN
    # quantiles or is 2e-8 off in the CDF at subnormal lam.
    lam=st.one_of(st.just(0.0), st.floats(1e-30, 1)),
    tau_max=st.floats(1e-3, 10),
    tau_std=st.floats(0.2, 2),
    warping=st.sampled_from(WARPINGS),
    seed=st.integers(0, 100),
)
def test_coefficients_in_unit_interval_and_match_oracle(data, lam, tau_max, tau_std, warping,
                                                        seed):
    x = torch.tensor(data, dtype=torch.float64)
    perm = torch.randperm(len(data), generator=gen(seed))
    _, coeff = F.kernel_mix(x, perm, lam, tau_max=tau_max, tau_std=tau_std, warping=warping)
    assert torch.all((coeff >= 0) & (coeff <= 1))
    ref = oracle.coefficients(x.numpy(), perm.numpy(), lam, tau_max, tau_std, warping)
    err = np.abs(coeff.numpy() - ref)
    if warping == "inverse_beta_cdf":
        # With tiny shapes the quantile is ill-conditioned (the CDF is flat at 0.5 inside
        # (0, 1)): accept a coefficient whose CDF value is lam to 1e-9 relative (backward
        # error) when it is not within 1e-9 of the reference.
        t = oracle.tau(oracle.sq_dist(x.numpy(), perm.numpy()), tau_max, tau_std)
        back = oracle.beta_cdf_sym(t, coeff.numpy())
        err = np.where(np.abs(back - lam) <= 1e-9 * min(lam, 1 - lam) + 1e-15, 0.0, err)
    assert err.max() <= 1e-9, (err.max(), coeff, ref)


# --------------------------------------------------------------------------- pieces


def test_pair_sq_dist_values_and_dtypes():
    f = torch.tensor([[0.0, 1.0], [3.0, 5.0], [1.0, 1.0]])
    perm = torch.tensor([1, 2, 0])
    d = F.pair_sq_dist(f, perm)
    assert d.dtype == torch.float32
    assert d.tolist() == [25.0, 20.0, 1.0]
    assert F.pair_sq_dist(f.double(), perm).dtype == torch.float64
    assert F.pair_sq_dist(f.half(), perm).dtype == torch.float32
    assert F.pair_sq_dist(f.bfloat16(), perm.int()).tolist() == [25.0, 20.0, 1.0]
    # 1-D features (regression labels) are [B, 1].
    assert F.pair_sq_dist(torch.tensor([1.0, 4.0]), torch.tensor([1, 0])).tolist() == [9.0, 9.0]


def test_pair_sq_dist_accumulates_half_inputs_in_float32():
    f = torch.full((2, 4096), 0.5, dtype=torch.float16)
    f[1] = -0.5
    # 4096 in float16 is representable but a float16 running sum of 1.0s stalls at 2048.
    assert F.pair_sq_dist(f, torch.tensor([1, 0])).tolist() == [4096.0, 4096.0]


def test_similarity_tau_values():
    d = torch.tensor([1.0, 3.0, math.nan, math.inf], dtype=torch.float64)
    tau = F.similarity_tau(d, 2.0, 0.5)
    # Mean over the finite entries only: 2, so dn = [0.5, 1.5, inf, inf].
    expected = [2.0 * math.exp(-(dn - 1) / 0.5) for dn in (0.5, 1.5)] + [0.0, 0.0]
    np.testing.assert_allclose(tau.numpy(), expected, rtol=1e-15)
    assert F.similarity_tau(d.float(), 2.0, 0.5).dtype == torch.float32


def test_similarity_tau_zero_mean_and_no_finite_entry():
    tau = F.similarity_tau(torch.zeros(4), 1.0, 0.25)
    np.testing.assert_allclose(tau.numpy(), np.full(4, math.exp(8.0)), rtol=1e-6)
    tau = F.similarity_tau(torch.tensor([math.nan, math.inf]), 1.0, 0.25)
    assert tau.tolist() == [0.0, 0.0]


def test_warp_tau_one_is_identity_for_beta_cdf():
    lam = torch.linspace(0, 1, 101, dtype=torch.float64)
    k = F.warp(lam, torch.ones(101, dtype=torch.float64), "beta_cdf")
    np.testing.assert_allclose(k.numpy(), lam.numpy(), atol=1e-14)


@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_warp_is_symmetric(warping):
    g = gen(3)
    lam = torch.rand(64, generator=g, dtype=torch.float64)
    tau = torch.exp(torch.empty(64, dtype=torch.float64).uniform_(-3, 3, generator=g))
    lhs = F.warp(1 - lam, tau, warping)
    rhs = 1 - F.warp(lam, tau, warping)
    np.testing.assert_allclose(lhs.numpy(), rhs.numpy(), atol=1e-10)
    # lam = 1/2 maps to 1/2 exactly, even where the warp is nearly flat (tiny or huge tau).
    tau = torch.tensor([1e-12, 1e-4, 1.0, 1e4, 1e12], dtype=torch.float64)
    assert F.warp(0.5, tau, warping).tolist() == [0.5] * 5


def test_warp_none_and_dtypes():
    tau = torch.rand(5)
    lam = torch.rand(5)
    assert torch.equal(F.warp(lam, tau, "none"), lam)
    assert F.warp(0.25, tau, "none").tolist() == [0.25] * 5
    assert F.warp(0.25, tau, "beta_cdf").dtype == torch.float32
    assert F.warp(lam.double(), tau, "beta_cdf").dtype == torch.float64
    assert F.warp(lam, tau.double(), "inverse_beta_cdf").dtype == torch.float64


@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_warp_limits(warping):
    lam = torch.tensor([0.0, 0.2, 0.5, 0.8, 1.0], dtype=torch.float64)
    far = F.warp(lam, torch.zeros(5, dtype=torch.float64), warping)
    assert far.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]  # no mixing
    near = F.warp(lam, torch.full((5,), math.inf, dtype=torch.float64), warping)
    assert near.tolist() == [0.0, 0.5, 0.5, 0.5, 1.0]  # half-half


@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_more_distant_pair_mixes_less(warping):
    # Pairs (0,1), (2,3), (4,5) at squared distances 0.01, 1 and 25; same lam for all.
    x = torch.tensor([0.0, 0.1, 0.0, 1.0, 0.0, 5.0], dtype=torch.float64)
    perm = torch.tensor([1, 0, 3, 2, 5, 4])
    for lam in (0.1, 0.3, 0.7, 0.95):
        _, k = F.kernel_mix(x, perm, lam, warping=warping)
        gap = (k - 0.5).abs()
        assert gap[0] < gap[2] < gap[4], (lam, k)
        assert gap[0] == gap[1] and gap[2] == gap[3]  # symmetric pairs, same distance


@settings(max_examples=25, deadline=None, database=None)
@given(
    near=st.floats(0, 10),
    extra=st.floats(1e-3, 10),
    lam=st.floats(0, 1),
    warping=st.sampled_from(["beta_cdf", "inverse_beta_cdf"]),
)
def test_distance_monotonicity_property(near, extra, lam, warping):
    x = torch.tensor([0.0, near, 0.0, near + extra], dtype=torch.float64)
    _, k = F.kernel_mix(x, torch.tensor([1, 0, 3, 2]), lam, warping=warping)
    assert abs(k[0] - 0.5) <= abs(k[2] - 0.5) + 1e-9


# --------------------------------------------------------------------------- interpolate


def test_interpolate_exact_endpoints_do_not_leak_nan():
    x = torch.tensor([[1.0, 2.0], [math.nan, 4.0], [5.0, 6.0]])
    perm = torch.tensor([1, 2, 0])
    out = F.interpolate(x, perm, torch.tensor([1.0, 0.5, 0.0]))
    assert out[0].tolist() == [1.0, 2.0]  # coeff 1: x[0], untouched by the NaN in x[1]
    assert out[2].tolist() == [1.0, 2.0]  # coeff 0: exactly x[perm[2]] = x[0]
    assert torch.isnan(out[1, 0])


def test_interpolate_gradcheck():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    perm = torch.tensor([2, 0, 3, 1])
    coeff = torch.tensor([0.2, 1.0, 0.0, 0.7], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: F.interpolate(t, perm, coeff), (x,))


def test_kernel_mix_gradient_reaches_x_only():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    feats = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    perm = derangement(5)
    lam = torch.rand(5, dtype=torch.float64, generator=gen(2))
    mixed, coeff = F.kernel_mix(x, perm, lam, feats=feats)
    mixed.sum().backward()
    assert feats.grad is None and not coeff.requires_grad
    # d(sum)/dx[j] = k_j + sum over i with perm[i] = j of (1 - k_i), coefficients constant.
    expected = coeff.clone()
    expected.index_add_(0, perm, 1 - coeff)
    np.testing.assert_allclose(x.grad.numpy(), expected[:, None].expand(5, 3).numpy(),
                               atol=1e-15)
    # Similarity on x itself: still no gradient through the coefficients.
    x.grad = None
    mixed, coeff = F.kernel_mix(x, perm, lam)
    mixed.sum().backward()
    expected = coeff.clone().index_add_(0, perm, 1 - coeff)
    np.testing.assert_allclose(x.grad[:, 0].numpy(), expected.numpy(), atol=1e-15)


def test_channels_last_preserved():
    x = torch.randn(4, 3, 5, 5, generator=gen(4)).to(memory_format=torch.channels_last)
    perm = derangement(4)
    lam = torch.rand(4, generator=gen(5))
    mixed, coeff = F.kernel_mix(x, perm, lam)
    assert mixed.is_contiguous(memory_format=torch.channels_last)
    ref, ref_coeff = F.kernel_mix(x.contiguous(), perm, lam)
    # Distances are summed in memory order, so the two layouts may differ in the last bit.
    torch.testing.assert_close(coeff, ref_coeff, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(mixed, ref, rtol=0, atol=1e-6)
    out = F.interpolate(x, perm, coeff)
    assert out.is_contiguous(memory_format=torch.channels_last)
    x5 = torch.randn(2, 3, 2, 2, 2).to(memory_format=torch.channels_last_3d)
    out = F.interpolate(x5, torch.tensor([1, 0]), torch.tensor([0.3, 0.6]))
    assert out.is_contiguous(memory_format=torch.channels_last_3d)
    assert F.interpolate(x.contiguous(), perm, coeff).is_contiguous()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    x = torch.randn(6, 8, generator=gen(6))
    perm = derangement(6)
    lam = torch.rand(6, generator=gen(7))
    mixed, coeff = F.kernel_mix(x.to(dtype), perm, lam)
    assert mixed.dtype == dtype and coeff.dtype == torch.float32
    ref = F.interpolate(x.to(dtype).float(), perm, coeff).to(dtype)
    assert torch.equal(mixed, ref)  # computed in float32, rounded once


# --------------------------------------------------------------------------- non-finite


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_non_finite_sample_is_left_unmixed(bad, warping):
    x = torch.randn(7, 4, generator=gen(8), dtype=torch.float64)
    x[2, 1] = bad
    perm = derangement(7)
    lam = torch.rand(7, generator=gen(9), dtype=torch.float64)
    mixed, coeff = F.kernel_mix(x, perm, lam, warping=warping)
    touched = (torch.arange(7) == 2) | (perm == 2)
    assert torch.all(coeff[touched] == 1)
    assert torch.equal(mixed[touched & (torch.arange(7) != 2)], x[touched & (torch.arange(7) != 2)])
    assert torch.isfinite(mixed[torch.arange(7) != 2]).all()
    # The other pairs are normalised by the mean of the finite distances only.
    d = F.pair_sq_dist(x, perm)
    mean = d[~touched].mean()
    dn = d[~touched] / mean
    tau = torch.exp(-(dn - 1) / (2 * 0.25**2))
    expected = F.warp(lam[~touched], tau, warping)
    np.testing.assert_allclose(coeff[~touched].numpy(), expected.numpy(), atol=1e-12)
    ref_mixed, ref_coeff = oracle.kernel_mix(x.numpy(), perm.numpy(), lam.numpy(),
                                             warping=warping)
    close(coeff, ref_coeff, 1e-9)
    np.testing.assert_allclose(mixed.numpy(), ref_mixed, atol=1e-9)


def test_non_finite_feats_and_all_bad_batch():
    x = torch.randn(4, 3, generator=gen(10))
    feats = torch.full((4, 2), math.nan)
    mixed, coeff = F.kernel_mix(x, derangement(4), 0.3, feats=feats)
    assert coeff.tolist() == [1.0] * 4 and torch.equal(mixed, x)


def test_identical_samples_give_zero_normalised_distance():
    x = torch.ones(5, 3)
    perm = derangement(5)
    lam = torch.rand(5, generator=gen(11))
    for warping in ("beta_cdf", "inverse_beta_cdf"):
        mixed, coeff = F.kernel_mix(x, perm, lam, warping=warping)
        assert torch.isfinite(coeff).all()
        torch.testing.assert_close(mixed, x)
        tau = torch.full((5,), math.exp(8.0), dtype=torch.float64)  # dn = 0
        np.testing.assert_allclose(coeff.numpy(), F.warp(lam, tau, warping).numpy(), atol=1e-6)


# --------------------------------------------------------------------------- targets


def test_mix_targets_class_indices_with_label_smoothing():
    y = torch.tensor([0, 2, 1])
    perm = torch.tensor([1, 2, 0])
    coeff = torch.tensor([0.75, 1.0, 0.5])
    out = F.mix_targets(y, perm, coeff, num_classes=4, label_smoothing=0.2)
    assert out.dtype == torch.float32 and out.shape == (3, 4)
    off, on = 0.05, 0.85
    row0 = 0.75 * torch.tensor([on, off, off, off]) + 0.25 * torch.tensor([off, off, on, off])
    torch.testing.assert_close(out[0], row0)
    torch.testing.assert_close(out[1], torch.tensor([off, off, on, off]))
    torch.testing.assert_close(out.sum(1), torch.ones(3))
    assert F.mix_targets(y, perm, coeff.double(), num_classes=4).dtype == torch.float64
    assert F.mix_targets(y.int(), perm, coeff, num_classes=3).sum(1).allclose(torch.ones(3))


@settings(max_examples=30, deadline=None, database=None)
@given(
    labels=st.lists(st.integers(0, 9), min_size=2, max_size=12),
    ls=st.floats(0, 0.99),
    seed=st.integers(0, 100),
)
def test_mixed_soft_targets_sum_to_one(labels, ls, seed):
    y = torch.tensor(labels)
    perm = torch.randperm(len(labels), generator=gen(seed))
    coeff = torch.rand(len(labels), generator=gen(seed))
    out = F.mix_targets(y, perm, coeff, num_classes=10, label_smoothing=ls)
    torch.testing.assert_close(out.sum(1), torch.ones(len(labels)))
    assert torch.all(out >= 0)


def test_mix_targets_float_targets():
    perm = torch.tensor([1, 0])
    coeff = torch.tensor([0.25, 1.0])
    reg = torch.tensor([1.0, 3.0])
    assert F.mix_targets(reg, perm, coeff).tolist() == [2.5, 3.0]
    soft = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    out = F.mix_targets(soft, perm, coeff, num_classes=2)
    assert out.dtype == torch.float64 and out[0].tolist() == [0.25, 0.75]
    multi = torch.randn(2, 3)
    torch.testing.assert_close(F.mix_targets(multi, perm, coeff),
                               F.interpolate(multi, perm, coeff))


# --------------------------------------------------------------------------- validation

X = torch.randn(4, 3)
PERM = torch.tensor([1, 2, 3, 0])
META = torch.device("meta")  # a second device that exists without an accelerator


@pytest.mark.parametrize(
    "kwargs, err, name",
    [
        (dict(x=torch.ones(4, 3, dtype=torch.int64)), TypeError, "x"),
        (dict(x=[[1.0]] * 4), TypeError, "x"),
        (dict(x=torch.randn(4, 3).to(torch.float8_e4m3fn)), TypeError, "x"),
        (dict(feats=torch.randn(4, 3).to(torch.float8_e5m2)), TypeError, "feats"),
        (dict(perm=torch.tensor([1, 2, 3, 1 << 40]), validate=False), IndexError, "perm"),
        (dict(perm=torch.tensor([-1, 2, 3, 0]), validate=False), IndexError, "perm"),
        (dict(lam=1.5, validate=False), ValueError, "lam"),  # a Python float: no sync to check
        (dict(process_group="world"), TypeError, "process_group"),
        (dict(x=torch.tensor(1.0)), ValueError, "x"),
        (dict(perm=PERM.float()), TypeError, "perm"),
        (dict(perm=PERM.short()), TypeError, "perm"),
        (dict(perm=torch.tensor([1, 0, 2])), ValueError, "perm"),
        (dict(perm=PERM[None]), ValueError, "perm"),
        (dict(perm=PERM.to(META)), ValueError, "perm"),
        (dict(lam=torch.tensor(1)), TypeError, "lam"),
        (dict(lam="0.5"), TypeError, "lam"),
        (dict(lam=torch.rand(5)), ValueError, "lam"),
        (dict(lam=torch.rand(4, 1)), ValueError, "lam"),
        (dict(lam=torch.rand(4, device=META)), ValueError, "lam"),
        (dict(feats=torch.ones(4, 2, dtype=torch.int32)), TypeError, "feats"),
        (dict(feats=torch.randn(3, 2)), ValueError, "feats"),
        (dict(feats=torch.randn(4, 2, device=META)), ValueError, "feats"),
        (dict(tau_max=0.0), ValueError, "tau_max"),
        (dict(tau_max=-1.0), ValueError, "tau_max"),
        (dict(tau_max=math.inf), ValueError, "tau_max"),
        (dict(tau_max=math.nan), ValueError, "tau_max"),
        (dict(tau_max="1"), TypeError, "tau_max"),
        (dict(tau_std=0), ValueError, "tau_std"),
        (dict(tau_std=math.inf), ValueError, "tau_std"),
        (dict(warping="beta"), ValueError, "warping"),
        (dict(perm=torch.tensor([0, 0, 1, 2]), validate=True), ValueError, "perm"),
        (dict(perm=torch.tensor([0, 1, 2, 4]), validate=True), ValueError, "perm"),
        (dict(perm=torch.tensor([0, 0, 1, 2])), ValueError, "perm"),  # None: CPU validates
        (dict(lam=1.5, validate=True), ValueError, "lam"),
        (dict(lam=torch.tensor([0.5, -0.1, 0.2, 0.3])), ValueError, "lam"),
        (dict(lam=math.nan), ValueError, "lam"),
    ],
)
def test_kernel_mix_rejects_bad_input(kwargs, err, name):
    args = dict(x=X, perm=PERM, lam=0.5) | kwargs
    x, perm, lam = args.pop("x"), args.pop("perm"), args.pop("lam")
    with pytest.raises(err, match=rf"\b{name}\b"):
        F.kernel_mix(x, perm, lam, **args)


def test_validate_false_skips_value_checks():
    # Not a permutation, but only metadata is checked. (A lam outside [0, 1] is still
    # refused on the CPU: the kernels read lam there anyway, and it would write NaN rows.)
    F.kernel_mix(X, torch.tensor([0, 0, 1, 2]), torch.tensor(0.5), validate=False)
    with pytest.raises(ValueError, match="lam"):
        F.kernel_mix(X, PERM, torch.tensor(1.5), validate=False)
    F.mix_targets(torch.tensor([0, 9, 1, 2]), PERM, torch.rand(4), num_classes=10,
                  validate=False)


def test_validate_none_skips_value_checks_while_compiling(monkeypatch):
    assert _checks.should_validate(None, X)
    assert not _checks.should_validate(None, X.to(META))
    assert not _checks.should_validate(True, X.to(META))  # a meta tensor has no values
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not _checks.should_validate(None, X)
    F.kernel_mix(X, torch.tensor([0, 0, 1, 2]), 0.5)  # no error: value checks skipped


@pytest.mark.parametrize(
    "kwargs, err, name",
    [
        (dict(num_classes=None), ValueError, "num_classes"),
        (dict(num_classes=0), ValueError, "num_classes"),
        (dict(num_classes=2.5), TypeError, "num_classes"),
        (dict(y=torch.tensor([0, 1, 2, 4])), ValueError, "y"),
        (dict(y=torch.tensor([0, -1, 2, 3])), ValueError, "y"),
        (dict(y=torch.tensor([0, 1, 2, 4]), validate=True), ValueError, "y"),
        (dict(y=torch.zeros(4, 1, dtype=torch.int64)), ValueError, "y"),
        (dict(y=torch.ones(4, dtype=torch.bool)), TypeError, "y"),
        (dict(y=torch.zeros(3, dtype=torch.int64)), ValueError, "perm"),
        (dict(y=torch.zeros(4, 3)), ValueError, "y"),  # soft labels, 3 != num_classes
        (dict(y=torch.zeros(4)), ValueError, "y"),
        (dict(y=5), TypeError, "y"),
        (dict(coeff=torch.ones(4, dtype=torch.int64)), TypeError, "coeff"),
        (dict(coeff=torch.ones(3)), ValueError, "coeff"),
        (dict(coeff=torch.full((4,), 2.0)), ValueError, "coeff"),
        (dict(label_smoothing=1.0), ValueError, "label_smoothing"),
        (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
        (dict(label_smoothing=None), TypeError, "label_smoothing"),
        (dict(perm=torch.tensor([0, 0, 1, 2])), ValueError, "perm"),
    ],
)
def test_mix_targets_rejects_bad_input(kwargs, err, name):
    args = dict(y=torch.tensor([0, 1, 2, 3]), perm=PERM, coeff=torch.rand(4), num_classes=4)
    args |= kwargs
    with pytest.raises(err, match=rf"\b{name}\b"):
        F.mix_targets(args.pop("y"), args.pop("perm"), args.pop("coeff"), **args)


def test_piece_functions_reject_bad_input():
    with pytest.raises(TypeError, match="f"):
        F.pair_sq_dist(torch.ones(3, dtype=torch.int64), torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match="perm"):
        F.pair_sq_dist(torch.ones(3), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="sq_dist"):
        F.similarity_tau(torch.ones(3, 2), 1.0, 0.25)
    with pytest.raises(TypeError, match="sq_dist"):
        F.similarity_tau(torch.ones(3, dtype=torch.int64), 1.0, 0.25)
    with pytest.raises(ValueError, match="tau_std"):
        F.similarity_tau(torch.ones(3), 1.0, -0.25)
    with pytest.raises(ValueError, match="tau"):
        F.warp(0.5, torch.ones(3, 2), "beta_cdf")
    with pytest.raises(ValueError, match="warping"):
        F.warp(0.5, torch.ones(3), "cdf")
    with pytest.raises(ValueError, match="lam"):
        F.warp(torch.rand(2), torch.ones(3), "none")
    with pytest.raises(ValueError, match="coeff"):
        F.interpolate(X, PERM, torch.rand(3))
    with pytest.raises(ValueError, match="perm"):
        F.interpolate(X, PERM.to(META), torch.rand(4))
