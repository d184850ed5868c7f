"""Smoke test of an install without the compiled extension, run from outside the tree:
`pure_smoke.py TESTS_DIR KMIXUP_DIR` (KMIXUP_DIR: where kmixup must be imported from).
The pure-PyTorch backend must serve every op, with the reason reported, and agree with
the numpy/scipy oracle."""

import sys
from pathlib import Path

import numpy as np
import torch

import kmixup
from kmixup import _ops
from kmixup import functional as F

sys.path.insert(0, sys.argv[1])
import oracle  # noqa: E402  (tests/oracle.py)

assert Path(kmixup.__file__).parent.resolve() == Path(sys.argv[2]).resolve(), kmixup.__file__
info = kmixup.backend_info()
assert info["cpu"] == "pure-pytorch (extension not built)", info
assert not _ops.has_compiled_kernel("cpu") and not _ops.has_compiled_kernel("cuda")
print(f"kmixup from {Path(kmixup.__file__).parent}: backend_info() = {info}")

g = torch.Generator().manual_seed(0)
x = torch.randn(32, 3, 5, 5, generator=g, dtype=torch.float64)
perm = torch.randperm(32, generator=g)
lam = torch.rand(32, generator=g, dtype=torch.float64)
xn, pn, ln = x.numpy(), perm.numpy(), lam.numpy()
np.testing.assert_allclose(F.pair_sq_dist(x, perm).numpy(), oracle.sq_dist(xn, pn), rtol=1e-12)
for warping in ("beta_cdf", "inverse_beta_cdf", "none"):
    mixed, coeff = F.kernel_mix(x, perm, lam, tau_max=1.5, tau_std=0.4, warping=warping)
    k = oracle.coefficients(xn, pn, ln, 1.5, 0.4, warping=warping)
    np.testing.assert_allclose(coeff.numpy(), k, atol=1e-9)
    np.testing.assert_allclose(mixed.numpy(), oracle.interpolate(xn, pn, k), atol=1e-9)
a = torch.exp(torch.empty(200, dtype=torch.float64).uniform_(-5, 5, generator=g))
t = torch.rand(200, generator=g, dtype=torch.float64)
np.testing.assert_allclose(kmixup.special.betainc(a, a, t).numpy(),
                           oracle.beta_cdf_sym(a.numpy(), t.numpy()), atol=1e-10)
np.testing.assert_allclose(kmixup.special.betaincinv(a, a, t).numpy(),
                           oracle.beta_quantile_sym(a.numpy(), t.numpy()), atol=1e-8)
x_mix, y_mix = kmixup.KernelMixup(num_classes=4)(x.float(), torch.arange(32) % 4)
assert x_mix.shape == x.shape and torch.allclose(y_mix.sum(1), torch.ones(32))
print("pure-PyTorch kernels agree with the oracle: pair_sq_dist, kernel_mix (3 warpings), "
      "betainc, betaincinv; KernelMixup runs")
