"""Hostile and careless input: named errors or the right answer, on both backends.

Each test here is one class of defect that once crashed the process, returned a silently
wrong gradient or produced NaN from accepted settings. The raw kernels are tested through
both implementations side by side: ``torch.ops.kmixup`` (the compiled CPU kernels where
built) and :mod:`kmixup._torch_kernels` (the pure-PyTorch kernels). The random search over
the same classes is ``tests/test_fuzz.py``.
"""

import os
import subprocess
import sys

import numpy as np
import oracle
import pytest
import torch
from torch import nn

import kmixup
from kmixup import _ops
from kmixup import _torch_kernels as K
from kmixup import functional as F

BACKENDS = {"pure": K}
if _ops.has_compiled_kernel("cpu"):
    BACKENDS["compiled"] = torch.ops.kmixup
backends = pytest.mark.parametrize("kernels", list(BACKENDS.values()), ids=list(BACKENDS))
WARPINGS = ["beta_cdf", "inverse_beta_cdf", "none"]
BAD_PERMS = [[1, 2, 3, 1 << 40], [-1, 2, 3, 0], [0, 1, 2, 4], [0, 1, 2, -(1 << 62)]]


def data(shape=(4, 3), dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, torch.randperm(shape[0], generator=g), torch.rand(shape[0], generator=g).double()


# ----------------------------------------------------------------------------- perm values


@backends
@pytest.mark.parametrize("bad", BAD_PERMS)
def test_out_of_range_perm_is_an_index_error_in_every_kernel(kernels, bad):
    x, _, lam = data()
    perm = torch.tensor(bad)
    calls = {
        "interpolate": lambda: kernels.interpolate(x, perm, lam),
        "interpolate_backward": lambda: kernels.interpolate_backward(x, perm, lam),
        "pair_sq_dist": lambda: kernels.pair_sq_dist(x, perm),
    }
    for warping in WARPINGS:
        calls[warping] = lambda w=warping: kernels.kernel_mix(x, perm, lam, x, 1.0, 0.25, w)
    for name, call in calls.items():
        with pytest.raises(IndexError, match="perm"):
            call()
            pytest.fail(f"{name} accepted perm={bad}")


@pytest.mark.parametrize("validate", [False, None, True])
def test_out_of_range_perm_is_refused_whatever_validate_says(validate):
    x, _, _ = data()
    perm = torch.tensor([1, 2, 3, 1 << 40])
    error = (ValueError, IndexError)
    with pytest.raises(error, match="perm"):
        F.kernel_mix(x, perm, 0.5, validate=validate)
    with pytest.raises(error, match="perm"):
        F.interpolate(x, perm, torch.full((4,), 0.5), validate=validate)
    with pytest.raises(IndexError, match="perm"):
        F.pair_sq_dist(x, perm)


def test_no_python_call_crashes_on_a_wild_perm():
    # The exact call that once killed the process with SIGSEGV, in a child process.
    code = (
        "import torch, kmixup.functional as F\n"
        "try:\n"
        "    F.interpolate(torch.randn(4, 3), torch.tensor([1, 2, 3, 1 << 40]),\n"
        "                  torch.full((4,), .5), validate=False)\n"
        "except IndexError as err:\n"
        "    print('IndexError', err)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "perm" in run.stdout


# ----------------------------------------------------------------------------- non-permutation


@backends
def test_backward_refuses_a_perm_that_is_not_a_permutation(kernels):
    g, _, coeff = data()
    with pytest.raises(ValueError, match="permutation"):
        kernels.interpolate_backward(g, torch.tensor([0, 0, 1, 2]), coeff)


@backends
def test_forward_of_a_repeated_index_is_still_exact(kernels):
    x, _, coeff = data(dtype=torch.float64)
    perm = torch.tensor([0, 0, 1, 2])
    expected = oracle.interpolate(x.numpy(), perm.numpy(), coeff.numpy())
    np.testing.assert_allclose(kernels.interpolate(x, perm, coeff).numpy(), expected)


@pytest.mark.parametrize("validate", [False, True])
def test_gradient_through_a_non_permutation_is_never_silently_wrong(validate):
    x, _, _ = data(dtype=torch.float64)
    x.requires_grad_()
    perm = torch.tensor([0, 0, 1, 2])
    with pytest.raises(ValueError, match="permutation"):
        F.interpolate(x, perm, torch.full((4,), 0.3), validate=validate).sum().backward()
    with pytest.raises(ValueError, match="perm"):
        F.kernel_mix(x, perm, 0.3, validate=validate)[0].sum().backward()


# ----------------------------------------------------------------------------- settings


EXTREMES = [
    dict(tau_std=1e-200),
    dict(tau_std=1e-300),
    dict(tau_std=1e300),
    dict(tau_max=1e-300),
    dict(tau_max=1e300),
    dict(tau_max=1e-300, tau_std=1e-200),
    dict(tau_max=1e300, tau_std=1e-3),
    dict(tau_max=1e-4, tau_std=0.5),
    dict(tau_max=5.0, tau_std=1.0),
]


@backends
@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
@pytest.mark.parametrize("settings", EXTREMES, ids=str)
def test_accepted_settings_never_give_nan_and_follow_the_oracle(kernels, warping, settings):
    x, perm, lam = data((9, 5), torch.float64, seed=3)
    lam[0], lam[1] = 0.0, 1.0  # the ends of [0, 1] too
    args = dict(tau_max=1.0, tau_std=0.25) | settings
    mixed, coeff = kernels.kernel_mix(x, perm, lam, x, args["tau_max"], args["tau_std"], warping)
    assert torch.isfinite(mixed).all() and torch.isfinite(coeff).all()
    assert ((coeff >= 0) & (coeff <= 1)).all()
    expected = oracle.coefficients(x.numpy(), perm.numpy(), lam.numpy(), warping=warping, **args)
    np.testing.assert_allclose(coeff.numpy(), expected, atol=1e-9)


def test_a_vanishing_tau_std_is_a_step_kernel():
    sq_dist = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)  # mean 1: dn = d
    tau = F.similarity_tau(sq_dist, tau_max=2.0, tau_std=1e-200)
    assert tau.tolist() == [float("inf"), 2.0, 0.0]


@pytest.mark.parametrize("alpha", [1e-300, 1e-20, 1e20, 1e300])
def test_extreme_alpha_draws_stay_beta_distributed(alpha):
    mixer = kmixup.KernelMixup(alpha=alpha, generator=torch.Generator().manual_seed(0))
    _, lam = mixer.sample(4000, "cpu")
    assert torch.isfinite(lam).all() and ((lam >= 0) & (lam <= 1)).all()
    if alpha < 1:  # Beta(a, a) with a -> 0: a fair coin between 0 and 1
        assert ((lam == 0) | (lam == 1)).all()
        assert 0.45 < lam.mean().item() < 0.55
    else:  # a -> inf: a point mass at 1/2
        assert torch.allclose(lam, torch.full_like(lam, 0.5), atol=1e-6)


# ----------------------------------------------------------------------------- overflow


@backends
@pytest.mark.parametrize("position", [0, 17, 37, 38])  # in the SIMD body and the tail
def test_an_overflowing_float32_square_follows_one_rule_everywhere(kernels, position):
    x, perm, lam = data((6, 39), seed=4)
    x[2, position] = 1e20  # finite in float32, its square is not
    sq_dist = kernels.pair_sq_dist(x, perm)
    _, coeff = kernels.kernel_mix(x, perm, lam, x, 1.0, 0.25, "beta_cdf")
    touched = (torch.arange(6) == 2) | (perm == 2)
    assert torch.isinf(sq_dist[touched]).all() and torch.isfinite(sq_dist[~touched]).all()
    assert (coeff[touched] == 1).all()
    # The other pairs are normalised by the mean of the finite distances only.
    expected = oracle.coefficients(
        x.double().numpy(), perm.numpy(), lam.numpy(), dist_dtype=np.float32
    )
    np.testing.assert_allclose(coeff.numpy(), expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- values


def test_warp_and_similarity_tau_check_values():
    tau = torch.tensor([0.5, 1.0, 2.0])
    with pytest.raises(ValueError, match="lam"):
        F.warp(1.5, tau, "beta_cdf")
    with pytest.raises(ValueError, match="lam"):
        F.warp(torch.tensor([0.1, 1.2, 0.5]), tau, "inverse_beta_cdf")
    with pytest.raises(ValueError, match="tau"):
        F.warp(0.3, -tau, "beta_cdf")
    with pytest.raises(ValueError, match="tau"):
        F.warp(0.3, torch.tensor([0.5, float("nan"), 1.0]), "beta_cdf")
    with pytest.raises(ValueError, match="sq_dist"):
        F.similarity_tau(torch.tensor([1.0, -2.0]), 1.0, 0.25)
    # inf tau and non-finite distances are defined limits, not errors.
    assert torch.isfinite(F.warp(0.3, torch.tensor([float("inf"), 0.0]), "beta_cdf")).all()
    assert F.similarity_tau(torch.tensor([1.0, float("nan")]), 1.0, 0.25)[1] == 0


BAD_WIDTHS = [
    ("tau_std", 1.0, 0.0), ("tau_std", 1.0, -1.0), ("tau_std", 1.0, float("nan")),
    ("tau_std", 1.0, float("inf")), ("tau_max", 0.0, 0.25), ("tau_max", -1.0, 0.25),
    ("tau_max", float("nan"), 0.25), ("tau_max", float("inf"), 0.25),
]


@backends
def test_the_raw_ops_refuse_widths_and_lam_that_would_write_nan(kernels):
    """Called directly, without the functional checks: a width that would make every
    coefficient NaN, and (CPU) a lam outside [0, 1], are ValueErrors naming them, from the
    out-of-place, out= and in-place ops alike, and an in-place call leaves x untouched."""
    x, perm, lam = data()
    inplace = kernels.kernel_mix_ if kernels is not K else K.kernel_mix_inplace
    out = torch.empty_like(x)
    for name, tau_max, tau_std in BAD_WIDTHS:
        for warping in WARPINGS:
            with pytest.raises(ValueError, match=name):
                kernels.kernel_mix(x, perm, lam, x, tau_max, tau_std, warping)
            with pytest.raises(ValueError, match=name):
                kernels.kernel_mix_out(x, perm, lam, x, tau_max, tau_std, warping, out)
    for bad in (1.5, -0.1, float("nan")):
        bad_lam = lam.clone()
        bad_lam[2] = bad
        for warping in WARPINGS:
            with pytest.raises(ValueError, match="lam"):
                kernels.kernel_mix(x, perm, bad_lam, x, 1.0, 0.25, warping)
            x_in = x.clone()
            with pytest.raises(ValueError, match="lam"):
                inplace(x_in, perm, bad_lam, x_in, 1.0, 0.25, warping)
            assert torch.equal(x_in, x)


# ----------------------------------------------------------------------------- dtypes


@backends
@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_is_one_named_error_on_every_backend(kernels, dtype):
    x, perm, lam = data()
    x8 = x.to(dtype)
    with pytest.raises(TypeError, match=r"\bx\b"):
        kernels.kernel_mix(x8, perm, lam, x, 1.0, 0.25, "beta_cdf")
    with pytest.raises(TypeError, match=r"\bfeats\b"):
        kernels.kernel_mix(x, perm, lam, x8, 1.0, 0.25, "beta_cdf")
    with pytest.raises(TypeError, match=r"\bf\b"):
        kernels.pair_sq_dist(x8, perm)
    with pytest.raises(TypeError, match=r"\bx\b"):
        F.kernel_mix(x8, perm, 0.5)
    with pytest.raises(TypeError, match=r"\bx\b"):
        kmixup.KernelMixup(num_classes=3)(x8, torch.zeros(4, dtype=torch.long))


# ----------------------------------------------------------------------------- named errors


def test_every_entry_point_names_the_bad_argument():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    mixer = kmixup.KernelMixup(num_classes=2)
    with pytest.raises(TypeError, match="layers"):
        kmixup.HiddenMixup(model, 0, mixer)
    with pytest.raises(TypeError, match="process_group"):
        F.kernel_mix(torch.randn(4, 3), torch.randperm(4), 0.5, process_group="world")
    with pytest.raises(TypeError, match="process_group"):
        kmixup.KernelMixup(global_mean=True, process_group="world")
    with pytest.raises(TypeError, match="mixer"):
        kmixup.MixupCollate("mixup")
    with pytest.raises(TypeError, match="num_samples"):
        kmixup.FeatureBank(5.0, 3)
    # numpy integers are integers wherever an int is taken.
    bank = kmixup.FeatureBank(num_samples=np.int64(5), dim=np.int32(3))
    assert bank.feats.shape == (5, 3)
    assert kmixup.KernelMixup(num_classes=np.int64(3)).num_classes == 3


# ----------------------------------------------------------------------------- small batches


@pytest.mark.parametrize("cls", [kmixup.KernelMixup, kmixup.Mixup])
@pytest.mark.parametrize("n", [0, 1])
def test_a_batch_of_one_or_none_passes_through_unmixed(cls, n):
    x = torch.randn(n, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    y = torch.full((n,), 2, dtype=torch.long)
    mixed, target = cls(num_classes=3, label_smoothing=0.3)(x, y)
    assert torch.equal(mixed, x) and mixed.is_contiguous(memory_format=torch.channels_last)
    smoothed = torch.tensor([0.1, 0.1, 0.8]).expand(n, 3)
    assert torch.allclose(target, smoothed)


def test_a_regression_batch_of_one_and_the_functional_op_pass_through():
    x, y = torch.randn(1, 5, requires_grad=True), torch.randn(1)
    mixer = kmixup.KernelMixup(target_tau_max=1.0)
    mixed, target = mixer(x, y, feats=y)
    assert torch.equal(mixed, x) and torch.equal(target, y)
    assert mixer.last_coeff.tolist() == [1.0] == mixer.last_target_coeff.tolist()
    mixed.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    out, coeff = F.kernel_mix(x, torch.tensor([0]), 0.3, warping="inverse_beta_cdf")
    assert torch.equal(out, x) and coeff.tolist() == [1.0]


def test_mixup_collate_and_hidden_mixup_take_a_last_batch_of_one():
    collate = kmixup.MixupCollate(kmixup.KernelMixup(num_classes=3))
    mixed, target = collate([(torch.ones(2), 1)])
    assert torch.equal(mixed, torch.ones(1, 2)) and target.tolist() == [[0.0, 1.0, 0.0]]
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    hidden = kmixup.HiddenMixup(model, "1", kmixup.KernelMixup(num_classes=2))
    x = torch.randn(1, 3)
    out, target = hidden(x, torch.tensor([1]))
    assert torch.equal(out, model(x)) and target.tolist() == [[0.0, 1.0]]


@pytest.mark.parametrize("n", [3, 5, 7])
def test_odd_batches_mix(n):
    x, y = torch.randn(n, 4), torch.arange(n) % 3
    mixed, target = kmixup.KernelMixup(num_classes=3)(x, y)
    assert mixed.shape == x.shape and torch.allclose(target.sum(1), torch.ones(n))


# ----------------------------------------------------------------------------- pure memory


PEAK_SCRIPT = """
import resource, sys, torch
from kmixup import _torch_kernels as K
dtype = getattr(torch, sys.argv[1])
x = torch.randn(96, 3, 224, 224, dtype=dtype)
perm, lam = torch.randperm(96), torch.rand(96, dtype=torch.float64)
K.kernel_mix(x[:2], perm[:2] % 2, lam[:2], x[:2], 1.0, 0.25, "beta_cdf")  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = K.kernel_mix(x, perm, lam, x, 1.0, 0.25, "beta_cdf")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024 / (x.numel() * x.element_size()))
"""


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_pure_kernel_mix_peak_memory_is_at_most_twice_the_input(dtype):
    # Peak resident memory of a fresh process, so the allocator's reuse cannot hide it.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, dtype], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr
    assert float(run.stdout) <= 2.0
