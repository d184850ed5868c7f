"""Regression settings of KernelMixup, and the picture of how tau_max acts (docs/)."""

import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import gen

import kmixup

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_target_tau_std_without_target_tau_max_is_an_error():
    with pytest.raises(ValueError, match="target_tau_std needs target_tau_max"):
        kmixup.KernelMixup(target_tau_std=0.5)
    assert kmixup.KernelMixup(target_tau_max=2.0, target_tau_std=0.5).target_tau_std == 0.5


def test_repr_shows_the_regression_settings():
    text = repr(kmixup.KernelMixup(tau_std=0.5, target_tau_max=5.0))
    assert "target_tau_max=5.0" in text and "target_tau_std=0.5" in text  # default: tau_std
    assert "target_tau_max=None, target_tau_std=None" in repr(kmixup.KernelMixup())


def regression_batch():
    x = torch.randn(32, 4, generator=gen(20), dtype=torch.float64)
    y = torch.randn(32, generator=gen(21), dtype=torch.float64)
    return x, y


def test_with_feats_y_equal_kernels_leave_the_target_coefficients_as_the_inputs():
    x, y = regression_batch()
    mixer = kmixup.KernelMixup(tau_max=0.5, tau_std=0.5, target_tau_max=0.5, target_tau_std=0.5)
    mixer(x, y, feats=y)
    torch.testing.assert_close(mixer.last_target_coeff, mixer.last_coeff, rtol=0, atol=0)


def test_target_settings_matter_when_they_differ_or_the_input_similarity_is_not_y():
    x, y = regression_batch()
    other_kernel = kmixup.KernelMixup(tau_max=0.5, tau_std=0.5, target_tau_max=5.0)
    other_kernel(x, y, feats=y)
    input_space = kmixup.KernelMixup(tau_max=0.5, tau_std=0.5, target_tau_max=0.5)
    input_space(x, y)
    for mixer in (other_kernel, input_space):
        assert not torch.allclose(mixer.last_target_coeff, mixer.last_coeff)


def load_make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kernel_picture_shows_small_tau_max_switching_mixing_off_under_both_warps(tmp_path):
    figures = load_make_figures()
    assert figures.main(["--out", str(tmp_path)]).stat().st_size > 0
    assert (DOCS / "kernel_warps.png").exists()  # committed, shown in the README
    dn = torch.linspace(0, 3, 31, dtype=torch.float64)
    curves = figures.kernel_curves(dn)
    lam = figures.LAM
    for warping in figures.WARPINGS:
        assert curves[(warping, 1e-4, 0.5)].max() < 1e-12  # no mixing anywhere
        assert curves[(warping, 1.0, 0.25)][10].item() == pytest.approx(lam)  # dn = 1, tau = 1
        assert bool((curves[(warping, 5.0, 1.0)] > lam).all())  # tau > 1: towards 0.5
        for k in curves.values():
            assert bool((k.diff() <= 1e-15).all())  # farther pairs never mix more
