"""KernelMixup / Mixup transforms and the package surface."""

import math

import numpy as np
import oracle
import pytest
import torch
from scipy import stats

import kmixup
from kmixup import KernelMixup, Mixup, draws
from kmixup import functional as F


def gen(seed):
    return torch.Generator().manual_seed(seed)


def batch(seed=0, n=8):
    g = gen(seed)
    return torch.randn(n, 3, 4, 4, generator=g), torch.randint(0, 5, (n,), generator=g)


@pytest.mark.parametrize("cls", [KernelMixup, Mixup])
def test_same_generator_seed_same_output_different_seed_different(cls):
    x, y = batch()
    a = cls(num_classes=5, generator=gen(1))(x, y)
    b = cls(num_classes=5, generator=gen(1))(x, y)
    c = cls(num_classes=5, generator=gen(2))(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_default_generator_follows_manual_seed():
    x, y = batch()
    mixer = KernelMixup(num_classes=5)
    torch.manual_seed(123)
    a = mixer(x, y)
    torch.manual_seed(123)
    b = mixer(x, y)
    torch.manual_seed(124)
    c = mixer(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_successive_calls_draw_fresh_randomness():
    x, y = batch()
    mixer = KernelMixup(num_classes=5, generator=gen(3))
    mixer(x, y)
    perm, lam = mixer.last_perm, mixer.last_lam
    mixer(x, y)
    assert not torch.equal(lam, mixer.last_lam)
    assert sorted(perm.tolist()) == list(range(8))


@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf", "none"])
@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_output_is_kernel_mix_of_the_recorded_draw(mode, warping):
    x, y = batch(seed=4)
    mixer = KernelMixup(num_classes=5, mode=mode, warping=warping, tau_std=0.5,
                        label_smoothing=0.1, generator=gen(5))
    mixed_x, mixed_y = mixer(x, y)
    perm, lam, coeff = mixer.last_perm, mixer.last_lam, mixer.last_coeff
    assert perm.dtype == torch.int64 and sorted(perm.tolist()) == list(range(8))
    assert lam.shape == ((8,) if mode == "elem" else ())
    assert lam.dtype == torch.float64 and torch.all((lam >= 0) & (lam <= 1))
    ref_x, ref_coeff = F.kernel_mix(x, perm, lam, tau_std=0.5, warping=warping)
    assert torch.equal(coeff, ref_coeff) and torch.equal(mixed_x, ref_x)
    assert mixer.last_target_coeff is coeff
    ref_y = F.mix_targets(y, perm, coeff, num_classes=5, label_smoothing=0.1)
    assert torch.equal(mixed_y, ref_y)
    torch.testing.assert_close(mixed_y.sum(1), torch.ones(8))
    # The recorded draw mixes other tensors (e.g. hidden states) the same way.
    hidden = torch.randn(8, 6, generator=gen(6))
    torch.testing.assert_close(F.interpolate(hidden, perm, coeff),
                               coeff[:, None] * hidden + (1 - coeff[:, None]) * hidden[perm])


def test_mixup_is_plain_mixup():
    x, y = batch(seed=7)
    mixer = Mixup(num_classes=5, mode="batch", generator=gen(8))
    mixed_x, mixed_y = mixer(x, y)
    lam, perm = mixer.last_lam, mixer.last_perm
    assert torch.all(mixer.last_coeff == lam.float())
    torch.testing.assert_close(mixed_x, lam * x + (1 - lam) * x[perm])
    onehot = torch.nn.functional.one_hot(y, 5).float()
    torch.testing.assert_close(mixed_y, lam * onehot + (1 - lam) * onehot[perm])


def test_kernel_mixup_uses_feats_for_similarity():
    x, y = batch(seed=9)
    feats = torch.randn(8, 16, generator=gen(10))
    mixer = KernelMixup(num_classes=5, generator=gen(11))
    mixed_x, _ = mixer(x, y, feats=feats)
    ref, coeff = F.kernel_mix(x, mixer.last_perm, mixer.last_lam, feats=feats)
    assert torch.equal(mixed_x, ref) and torch.equal(mixer.last_coeff, coeff)


def test_soft_label_targets_use_input_coefficients():
    x, _ = batch(seed=12)
    soft = torch.softmax(torch.randn(8, 5, generator=gen(13)), dim=1)
    mixer = KernelMixup(num_classes=5, generator=gen(14))
    _, mixed = mixer(x, soft)
    torch.testing.assert_close(mixed, F.interpolate(soft, mixer.last_perm, mixer.last_coeff))
    torch.testing.assert_close(mixed.sum(1), torch.ones(8))


def test_regression_targets_use_label_space_coefficients():
    x = torch.randn(16, 4, generator=gen(15), dtype=torch.float64)
    target = torch.randn(16, generator=gen(16), dtype=torch.float64) * 10
    mixer = KernelMixup(tau_max=1.0, tau_std=0.5, target_tau_max=5.0, target_tau_std=1.0,
                        generator=gen(17))
    mixed_x, mixed_t = mixer(x, target)
    perm, lam = mixer.last_perm, mixer.last_lam
    assert mixed_t.dtype == torch.float64
    ref_k = oracle.coefficients(target.numpy(), perm.numpy(), lam.numpy(), 5.0, 1.0)
    np.testing.assert_allclose(mixer.last_target_coeff.numpy(), ref_k, atol=1e-9)
    np.testing.assert_allclose(
        mixed_t.numpy(), oracle.interpolate(target.numpy(), perm.numpy(), ref_k), atol=1e-8
    )
    ref_x = oracle.kernel_mix(x.numpy(), perm.numpy(), lam.numpy(), tau_std=0.5)[0]
    np.testing.assert_allclose(mixed_x.numpy(), ref_x, atol=1e-8)
    assert not torch.allclose(mixer.last_coeff, mixer.last_target_coeff)
    # target_tau_std defaults to tau_std; [B, k] targets work the same way.
    mixer = KernelMixup(tau_std=0.5, target_tau_max=5.0, generator=gen(17))
    mixer(x, target[:, None].repeat(1, 2))
    ref_k = oracle.coefficients(target.numpy(), perm.numpy(), lam.numpy(), 5.0, 0.5)
    np.testing.assert_allclose(mixer.last_target_coeff.numpy(), ref_k, atol=1e-9)


def test_regression_targets_without_target_tau_use_input_coefficients():
    x = torch.randn(6, 3, generator=gen(18))
    target = torch.randn(6, generator=gen(19))
    mixer = KernelMixup(generator=gen(20))
    _, mixed_t = mixer(x, target)
    assert mixer.last_target_coeff is mixer.last_coeff
    torch.testing.assert_close(mixed_t, F.interpolate(target, mixer.last_perm, mixer.last_coeff))


def test_non_finite_sample_does_not_poison_the_batch():
    x, y = batch(seed=21)
    x[3, 0, 1, 1] = math.nan
    mixer = KernelMixup(num_classes=5, generator=gen(22))
    mixed_x, mixed_y = mixer(x, y)
    rows = torch.arange(8) != 3
    assert torch.isfinite(mixed_x[rows]).all() and torch.isfinite(mixed_y).all()


@pytest.mark.parametrize("alpha", [0.2, 1.0, 2.0])
def test_lam_follows_beta_alpha_alpha(alpha):
    mixer = KernelMixup(alpha=alpha, generator=gen(23))
    perm, lam = mixer.sample(20000, torch.device("cpu"))
    assert perm.shape == (20000,) and lam.dtype == torch.float64
    assert stats.kstest(lam.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    _, lam_batch = KernelMixup(mode="batch").sample(5, "cpu")
    assert lam_batch.shape == () and lam_batch.dtype == torch.float64


def test_alpha_one_uniform_draw_matches_the_log_space_draw():
    # Beta(1, 1) is drawn as a uniform; just above 1 the general log-space path runs.
    cpu = torch.device("cpu")
    uniform = draws.beta(1.0, 20000, cpu, gen(26))
    log_space = draws.beta(math.nextafter(1.0, 2.0), 20000, cpu, gen(27))
    assert uniform.dtype == log_space.dtype == torch.float64
    assert ((uniform >= 0) & (uniform < 1)).all()
    assert stats.kstest(uniform.numpy(), stats.beta(1, 1).cdf).pvalue > 1e-3
    assert stats.ks_2samp(uniform.numpy(), log_space.numpy()).pvalue > 1e-3


def test_half_precision_inputs():
    x, y = batch(seed=24)
    mixed, target = KernelMixup(num_classes=5, generator=gen(25))(x.bfloat16(), y)
    assert mixed.dtype == torch.bfloat16 and target.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_autocast_keeps_input_dtype_and_layout_with_float32_coefficients(dtype):
    x = torch.randn(6, 3, 4, 4, generator=gen(26)).to(dtype, memory_format=torch.channels_last)
    y = torch.randint(5, (6,), generator=gen(27))
    mixer = KernelMixup(num_classes=5, generator=gen(28))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed, target = mixer(x, y)
    assert mixed.dtype == dtype and mixed.is_contiguous(memory_format=torch.channels_last)
    assert mixer.last_coeff.dtype == torch.float32 and target.dtype == torch.float32
    expected = oracle.kernel_mix(x.double().numpy(), mixer.last_perm.numpy(),
                                 mixer.last_lam.numpy())[0]
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(mixed.double(), torch.from_numpy(expected), rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "kwargs, err, name",
    [
        (dict(alpha=0.0), ValueError, "alpha"),
        (dict(alpha=-1.0), ValueError, "alpha"),
        (dict(alpha=math.inf), ValueError, "alpha"),
        (dict(tau_max=0.0), ValueError, "tau_max"),
        (dict(tau_std=-0.5), ValueError, "tau_std"),
        (dict(warping="cdf"), ValueError, "warping"),
        (dict(mode="pair"), ValueError, "mode"),
        (dict(label_smoothing=1.0), ValueError, "label_smoothing"),
        (dict(num_classes=0), ValueError, "num_classes"),
        (dict(target_tau_max=0.0), ValueError, "target_tau_max"),
        (dict(target_tau_max=1.0, num_classes=10), ValueError, "target_tau_max"),
        (dict(target_tau_std=-1.0), ValueError, "target_tau_std"),
        (dict(generator=0), TypeError, "generator"),
    ],
)
def test_bad_construction_raises(kwargs, err, name):
    with pytest.raises(err, match=rf"\b{name}\b"):
        KernelMixup(**kwargs)


def test_mixup_bad_construction_raises():
    with pytest.raises(ValueError, match="alpha"):
        Mixup(alpha=0)
    with pytest.raises(ValueError, match="mode"):
        Mixup(mode="x")


def test_bad_call_raises():
    x, y = batch()
    with pytest.raises(ValueError, match="num_classes"):
        KernelMixup()(x, y)  # class indices need num_classes
    with pytest.raises(ValueError, match="target"):
        KernelMixup(num_classes=5)(x, y[:4])
    with pytest.raises(ValueError, match="class indices"):
        KernelMixup(num_classes=3)(x, y + 3)
    with pytest.raises(TypeError, match="x"):
        KernelMixup(num_classes=5)(y, y)
    with pytest.raises(ValueError, match="feats"):
        KernelMixup(num_classes=5)(x, y, feats=torch.randn(3, 2))


def test_repr():
    assert "warping='beta_cdf'" in repr(KernelMixup(num_classes=3))
    assert repr(Mixup(num_classes=3)).startswith("Mixup(num_classes=3")


def test_package_surface():
    assert kmixup.__version__ == "0.1.0"
    assert kmixup.functional is F and hasattr(kmixup.special, "betainc")
    for name in kmixup.__all__:
        assert hasattr(kmixup, name), name
    assert {"HiddenMixup", "FeatureBank", "MixupCollate"} <= set(kmixup.__all__)
