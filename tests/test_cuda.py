"""The CUDA kernels of torch.ops.kmixup: against the CPU ops, torch-eager references of the
interpolation (bit for bit), scipy; layouts, non-finite rows, opcheck, autograd,
torch.compile, no host syncs, CUDA graph capture. Runs only where a GPU and the compiled
CUDA kernels exist."""

import helpers
import numpy as np
import oracle
import pytest
import torch
from helpers import gen
from scipy import special as sp

import kmixup
from kmixup import _ops
from kmixup import functional as F

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and _ops.has_compiled_kernel("cuda")),
    reason="needs a CUDA device and kmixup's CUDA kernels",
)

ops = torch.ops.kmixup
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
WARPINGS = ["beta_cdf", "inverse_beta_cdf", "none"]
BITS = {torch.float64: torch.int64, torch.float32: torch.int32,
        torch.float16: torch.int16, torch.bfloat16: torch.int16}
CUDA = "cuda"


def batch(shape, dtype=torch.float32, seed=0, device=CUDA):
    return helpers.batch(shape, dtype, seed, device)


def acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def cpu(*tensors):
    return [t.cpu() for t in tensors]


def assert_identical(got, want):
    """Same dtype, shape, NaN positions and bits elsewhere. (NaN payloads are left out: a
    NaN made by GPU arithmetic is canonical, and torch's and CUDA's bfloat16 conversions
    write different ones.)"""
    assert got.dtype == want.dtype and got.shape == want.shape
    nan = torch.isnan(got)
    assert torch.equal(nan, torch.isnan(want))
    bits = BITS[got.dtype]
    got, want = (torch.where(nan, 0, t).contiguous().view(bits) for t in (got, want))
    assert torch.equal(got, want)


def mix_reference(x, perm, coeff):
    """Step 5 in torch eager ops, each rounding once, exact copies at coefficients 1 and 0:
    what the kernels must reproduce bit for bit."""
    acc = acc_dtype(x.dtype)
    xc = x.to(acc)
    xp = xc[perm]
    c = coeff.to(acc).reshape(-1, *([1] * (x.dim() - 1)))
    mixed = torch.where(c == 1, xc, torch.where(c == 0, xp, c * xc + (1 - c) * xp))
    return torch.where(c == 1, x, torch.where(c == 0, x[perm], mixed.to(x.dtype)))


def backward_reference(grad, perm, coeff):
    """grad_x[j] = c[j] grad[j] + (1 - c[q]) grad[q] with perm[q] = j; exact copies where
    the weights are (1, 0) or (0, 1)."""
    acc = acc_dtype(grad.dtype)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.shape[0], device=perm.device)
    shape = (-1, *([1] * (grad.dim() - 1)))
    c = coeff.to(acc)
    wa, wb = c.reshape(shape), (1 - c)[inv].reshape(shape)
    g, gq = grad.to(acc), grad.to(acc)[inv]
    mixed = (wa * g + wb * gq).to(grad.dtype)
    copy_a, copy_b = (wa == 1) & (wb == 0), (wa == 0) & (wb == 1)
    return torch.where(copy_a, grad, torch.where(copy_b, grad[inv], mixed))


def coeff_tol(dtype, feats_dtype=None):
    feats_dtype = feats_dtype or dtype
    return 1e-9 if dtype == feats_dtype == torch.float64 else 2e-5


# ----------------------------------------------------------------------------- CUDA vs CPU

SHAPES = [(2, 1), (3, 1), (257, 1), (257, 3, 7, 5), (257, 3, 8, 8), (3, 10**6), (2, 10**6 + 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_pair_sq_dist_matches_cpu(dtype, shape):
    x, perm, _ = batch(shape, dtype, seed=shape[0])
    got = ops.pair_sq_dist(x, perm)
    want = ops.pair_sq_dist(*cpu(x, perm))
    assert got.dtype == want.dtype == acc_dtype(dtype) and got.device == x.device
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(got.cpu(), want, rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("warping", WARPINGS)
@pytest.mark.parametrize("shape", SHAPES)
def test_kernel_mix_matches_cpu(dtype, warping, shape):
    x, perm, lam = batch(shape, dtype, seed=len(shape) + shape[0])
    lam = lam.to(acc_dtype(dtype))
    mixed, coeff = ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, warping)
    mixed_cpu, coeff_cpu = ops.kernel_mix(*cpu(x, perm, lam, x), 1.0, 0.25, warping)
    assert coeff.dtype == coeff_cpu.dtype == acc_dtype(dtype)
    assert mixed.dtype == dtype and mixed.shape == x.shape and mixed.stride() == x.stride()
    if warping == "none":
        assert_identical(coeff, lam.to(coeff.dtype))
    torch.testing.assert_close(coeff.cpu(), coeff_cpu, rtol=0, atol=coeff_tol(dtype))
    assert bool(((coeff >= 0) & (coeff <= 1)).all())
    # Given the coefficients, the interpolation is exact.
    assert_identical(mixed, mix_reference(x, perm, coeff))


@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_kernel_mix_matches_oracle(warping):
    x, perm, lam = batch((64, 3, 5, 5), torch.float64, seed=3)
    _, coeff = ops.kernel_mix(x, perm, lam, x, 1.5, 0.4, warping)
    k = oracle.coefficients(x.cpu().numpy(), perm.cpu().numpy(), lam.cpu().numpy(), 1.5, 0.4,
                            warping=warping)
    np.testing.assert_allclose(coeff.cpu().numpy(), k, atol=1e-8)


def _layout(name, x, lam):
    """x and lam in one of the layouts the binding takes; feats is x unless said."""
    b = x.shape[0]
    feats = None
    if name == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif name == "channels_last_3d":
        x = x.reshape(b, 3, 2, 5, 4).contiguous(memory_format=torch.channels_last_3d)
    elif name == "sliced":
        x = x[:, :, ::2]
    elif name == "transposed":
        x = x.transpose(2, 3)
    elif name == "misaligned":  # data pointer 1 element past a 16-byte boundary: scalar path
        flat = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)
        flat[1:] = x.reshape(-1)
        x = flat[1:].view(x.shape)
    elif name == "scalar_lam":
        lam = lam[:1].expand(b)
    elif name == "other_feats":  # another dtype and row length, column-major rows
        feats = torch.randn(b, 11, generator=gen(5), dtype=torch.float64)
        feats = feats.t().contiguous().t().to(x.device)
    return x, lam, x if feats is None else feats


LAYOUTS = ["channels_last", "channels_last_3d", "sliced", "transposed", "misaligned",
           "scalar_lam", "other_feats"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_mix_layouts_and_lam_modes(layout, dtype):
    x, perm, lam = batch((9, 3, 8, 5), dtype, seed=7)
    x, lam, feats = _layout(layout, x, lam)
    got_mixed, got_coeff = ops.kernel_mix(x, perm, lam, feats, 1.5, 0.4, "beta_cdf")
    want_mixed, want_coeff = ops.kernel_mix(*cpu(x, perm, lam, feats), 1.5, 0.4, "beta_cdf")
    torch.testing.assert_close(got_coeff.cpu(), want_coeff, rtol=0,
                               atol=coeff_tol(dtype, feats.dtype))
    assert_identical(got_mixed, mix_reference(x, perm, got_coeff))
    formats = {"channels_last": torch.channels_last, "channels_last_3d": torch.channels_last_3d}
    fmt = formats.get(layout, torch.contiguous_format)
    for fn, reference in (("interpolate", mix_reference),
                          ("interpolate_backward", backward_reference)):
        got = getattr(ops, fn)(x, perm, lam)
        assert_identical(got, reference(x, perm, lam))
        torch.testing.assert_close(got.cpu(), getattr(ops, fn)(*cpu(x, perm, lam)))
        assert got.is_contiguous(memory_format=fmt)
    assert got_mixed.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_non_finite_rows_get_coefficient_one_and_exact_copies(dtype, warping):
    x, _, lam = batch((6, 4, 130), dtype, seed=21)
    perm = torch.tensor([1, 2, 3, 4, 5, 0], device=CUDA)
    x[2, 1, 3] = float("nan")
    x[4, 0, 0] = float("inf")
    mixed, coeff = ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, warping)
    bad = [1, 2, 3, 4]  # the pairs that contain sample 2 or 4
    assert torch.equal(coeff[bad].cpu(), torch.ones(4, dtype=coeff.dtype))
    assert_identical(mixed[bad], x[bad])
    assert torch.isfinite(mixed[[0, 5]].float()).all() and torch.isfinite(coeff).all()
    _, coeff_cpu = ops.kernel_mix(*cpu(x, perm, lam, x), 1.0, 0.25, warping)
    torch.testing.assert_close(coeff.cpu(), coeff_cpu, rtol=0, atol=coeff_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("coeff_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 1), (257, 3, 7, 5), (5, 10**6)])
def test_interpolate_and_backward_exact(dtype, coeff_dtype, shape):
    x, perm, lam = batch(shape, dtype, seed=31)
    coeff = lam.to(coeff_dtype)
    coeff[0] = 1.0
    coeff[1] = 0.0
    x[perm[0]] = float("nan")  # row 0 copies x[0]: its partner's NaN must not leak in
    for fn, reference in (("interpolate", mix_reference),
                          ("interpolate_backward", backward_reference)):
        got = getattr(ops, fn)(x, perm, coeff)
        assert_identical(got, reference(x, perm, coeff))
        want = getattr(ops, fn)(*cpu(x, perm, coeff))
        torch.testing.assert_close(got.cpu(), want, equal_nan=True)
    assert_identical(ops.interpolate(x, perm, coeff)[0], x[0])


def test_kernel_mix_is_deterministic():
    x, perm, lam = batch((64, 3, 64, 64), seed=41)
    first = ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, "inverse_beta_cdf")
    for _ in range(3):
        again = ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, "inverse_beta_cdf")
        assert_identical(again[0], first[0])
        assert_identical(again[1], first[1])
    d = ops.pair_sq_dist(x, perm)
    assert_identical(ops.pair_sq_dist(x, perm), d)


# ----------------------------------------------------------------------------- rows on blocks
# A row of at most 128 16-byte packs takes a power-of-two group of threads and a block several
# such rows; a long row is split over blocks. Loads are 16 bytes wide, or the widest of 8, 4,
# 2 bytes that the row length and the base addresses allow.

# (B, row). In float32 16-byte packs: 1 (partial and full; 256 rows a block), 17, 33, 64,
# 100, 128, and 129 (just past the multi-row limit: one row a block); the batches leave the
# last block partly empty. Other dtypes land elsewhere in the same range.
SHORT_ROWS = [(1000, 3), (1000, 4), (300, 68), (257, 132), (129, 256), (70, 400), (33, 512),
              (9, 516)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHORT_ROWS)
def test_short_rows_share_blocks(dtype, shape):
    x, perm, lam = batch(shape, dtype, seed=shape[1])
    lam = lam.to(acc_dtype(dtype))
    lam[:7] = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.5, 1.0, 0.0])  # exact copies among mixes
    d = ops.pair_sq_dist(x, perm)
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(d.cpu(), ops.pair_sq_dist(*cpu(x, perm)), rtol=rtol, atol=0)
    for warping in WARPINGS:
        mixed, coeff = ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, warping)
        _, coeff_cpu = ops.kernel_mix(*cpu(x, perm, lam, x), 1.0, 0.25, warping)
        torch.testing.assert_close(coeff.cpu(), coeff_cpu, rtol=0, atol=coeff_tol(dtype))
        assert_identical(mixed, mix_reference(x, perm, coeff))
    assert_identical(ops.interpolate(x, perm, lam), mix_reference(x, perm, lam))
    assert_identical(ops.interpolate_backward(x, perm, lam), backward_reference(x, perm, lam))
    again = ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, "beta_cdf")
    assert_identical(again[1], ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, "beta_cdf")[1])


def _offset(x, elems):
    """A copy of x whose data starts `elems` elements past a fresh (512-byte aligned) buffer."""
    flat = torch.empty(x.numel() + elems, dtype=x.dtype, device=x.device)
    flat[elems:] = x.reshape(-1)
    return flat[elems:].view(x.shape)


# (row length, base offset in elements): 16-byte rows one element off; rows of 8 or 4 bytes
# times an odd number (8- / 4-byte packs); offsets of 2 and 4 elements; odd rows (1 element).
MISALIGNED = [(64, 1), (64, 2), (64, 4), (6, 0), (10, 2), (12, 0), (12, 4), (7, 0), (7, 3),
              (1030, 0), (1030, 2), (3 * 10**5 + 2, 0), (3 * 10**5 + 2, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("row", "offset"), MISALIGNED)
def test_narrow_packs_for_misaligned_rows(dtype, row, offset):
    b = 37 if row < 10**4 else 3
    x, perm, lam = batch((b, row), dtype, seed=row + offset)
    lam = lam.to(acc_dtype(dtype))
    lam[:2] = torch.tensor([1.0, 0.0])
    xo = _offset(x, offset)
    assert_identical(xo, x)
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    want_d = ops.pair_sq_dist(*cpu(x, perm))
    torch.testing.assert_close(ops.pair_sq_dist(xo, perm).cpu(), want_d, rtol=rtol, atol=0)
    mixed, coeff = ops.kernel_mix(xo, perm, lam, xo, 1.0, 0.25, "beta_cdf")
    _, coeff_cpu = ops.kernel_mix(*cpu(x, perm, lam, x), 1.0, 0.25, "beta_cdf")
    torch.testing.assert_close(coeff.cpu(), coeff_cpu, rtol=0, atol=coeff_tol(dtype))
    assert_identical(mixed, mix_reference(x, perm, coeff))
    # Source aligned, destination not (and the reverse): the narrower of the two is used.
    out = _offset(torch.zeros_like(x), offset + 1)
    coeff_out = ops.kernel_mix_out(x, perm, lam, x, 1.0, 0.25, "none", out)
    assert_identical(coeff_out, lam)
    assert_identical(out, mix_reference(x, perm, lam))
    assert_identical(ops.interpolate(xo, perm, lam), mix_reference(x, perm, lam))
    assert_identical(ops.interpolate_backward(xo, perm, lam), backward_reference(x, perm, lam))


@pytest.mark.parametrize(("shape", "warping"), [((4096, 16), "inverse_beta_cdf"),
                                                ((2**22 + 3, 1), "beta_cdf")])
def test_large_batches_spread_the_coefficients(shape, warping):
    """The coefficient kernel: one pair a thread over many blocks (2^22 + 3 pairs need more
    than its 2^16-block grid, so its threads stride); the mean over millions of rows."""
    x, perm, lam = batch(shape, torch.float32, seed=13)
    lam = lam.float()
    x[5, 0] = float("inf")  # a non-finite pair: coefficient 1, left out of the mean
    mixed, coeff = ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, warping)
    _, coeff_cpu = ops.kernel_mix(*cpu(x, perm, lam, x), 1.0, 0.25, warping)
    torch.testing.assert_close(coeff.cpu(), coeff_cpu, rtol=0, atol=coeff_tol(torch.float32))
    assert_identical(mixed, mix_reference(x, perm, coeff))
    assert coeff[5].item() == 1.0


def test_contract_errors_name_the_argument():
    x, perm, lam = batch((4, 3), seed=2)
    with pytest.raises(RuntimeError, match="perm must be int64"):
        ops.kernel_mix(x, perm.int(), lam, x, 1.0, 0.25, "beta_cdf")
    with pytest.raises(RuntimeError, match="lam"):
        ops.kernel_mix(x, perm, lam.cpu(), x, 1.0, 0.25, "beta_cdf")
    with pytest.raises(RuntimeError, match="feats"):
        ops.kernel_mix(x, perm, lam, x[:3], 1.0, 0.25, "beta_cdf")
    with pytest.raises(RuntimeError, match="warping"):
        ops.kernel_mix(x, perm, lam, x, 1.0, 0.25, "cubic")
    with pytest.raises(RuntimeError, match="coeff"):
        ops.interpolate(x, perm, lam.half())
    with pytest.raises(RuntimeError, match="f must be"):
        ops.pair_sq_dist(x.int(), perm)
    with pytest.raises(RuntimeError, match="shape and dtype"):
        ops.betainc(lam, lam.float(), lam)


# ----------------------------------------------------------------------------- special


def _special_inputs(dtype, n=4000, seed=7):
    g = gen(seed)
    a = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-12, 12, generator=g))
    b = torch.exp(torch.empty(n, dtype=torch.float64).uniform_(-12, 12, generator=g))
    t = torch.rand(n, dtype=torch.float64, generator=g)
    return [v.to(dtype) for v in (a, b, t)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_special_matches_cpu_and_scipy(dtype):
    a, b, t = _special_inputs(dtype)
    got = ops.betainc(a.to(CUDA), b.to(CUDA), t.to(CUDA))
    assert got.dtype == dtype and got.device.type == CUDA
    tol = 1e-11 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(got.cpu(), ops.betainc(a, b, t), rtol=0, atol=tol)
    want = sp.betainc(a.double().numpy(), b.double().numpy(), t.double().numpy())
    ok = np.isfinite(want)
    np.testing.assert_allclose(got.cpu().double().numpy()[ok], want[ok], rtol=0,
                               atol=1e-10 if dtype == torch.float64 else 1e-6)

    inv = ops.betaincinv(a.to(CUDA), b.to(CUDA), t.to(CUDA)).cpu()
    inv_cpu = ops.betaincinv(a, b, t)
    # Where the CDF is flat to double precision the quantile is ill-posed: compare in CDF.
    close = (inv - inv_cpu).abs() <= (1e-9 if dtype == torch.float64 else 1e-5)
    back = (ops.betainc(a, b, inv).double() - t.double()).abs() <= 1e-6
    assert bool((close | back).all())
    want_inv = sp.betaincinv(a.double().numpy(), b.double().numpy(), t.double().numpy())
    cdf_of_scipy = sp.betainc(a.double().numpy(), b.double().numpy(), want_inv)
    # Both quantiles must give back t (scipy's own only where it is accurate).
    trusted = np.isfinite(want_inv) & (np.abs(cdf_of_scipy - t.double().numpy()) < 1e-9)
    inv_np = inv.double().numpy()
    near = np.abs(inv_np - want_inv) <= 1e-6
    round_trip = np.abs(sp.betainc(a.double().numpy(), b.double().numpy(), inv_np)
                        - t.double().numpy()) <= 1e-6
    assert np.all((near | round_trip)[trusted])


def test_special_limits_on_cuda():
    inf = float("inf")
    a = torch.tensor([0.0, inf, 0.0, inf, 2.0], dtype=torch.float64)
    t = torch.tensor([0.3, 0.3, 0.7, 0.7, 0.5], dtype=torch.float64)
    got = ops.betainc(a.to(CUDA), a.to(CUDA), t.to(CUDA)).cpu()
    torch.testing.assert_close(got, ops.betainc(a, a, t), rtol=0, atol=1e-14)
    torch.testing.assert_close(got, torch.from_numpy(oracle.beta_cdf_sym(a.numpy(), t.numpy())))
    inv = ops.betaincinv(a.to(CUDA), a.to(CUDA), t.to(CUDA)).cpu()
    torch.testing.assert_close(
        inv, torch.from_numpy(oracle.beta_quantile_sym(a.numpy(), t.numpy())), atol=1e-12,
        rtol=0)


# ----------------------------------------------------------------------------- autograd
# opcheck and gradcheck on CUDA: tests/test_ops.py, parametrized over the devices.


def test_interpolate_grads_match_cpu():
    x, perm, lam = batch((4, 6), torch.float64, seed=5)
    lam[0], lam[1] = 1.0, 0.0
    x.requires_grad_()
    g = torch.randn(4, 6, dtype=torch.float64, generator=gen(6)).to(CUDA)
    (grad,) = torch.autograd.grad(F.interpolate(x, perm, lam), x, g)
    x_cpu = x.detach().cpu().requires_grad_()
    (grad_cpu,) = torch.autograd.grad(F.interpolate(x_cpu, perm.cpu(), lam.cpu()), x_cpu,
                                      g.cpu())
    torch.testing.assert_close(grad.cpu(), grad_cpu)


# ----------------------------------------------------------------------------- torch.compile


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_torch_compile_fullgraph_equals_eager(mode):
    x, perm, lam = batch((8, 3, 4, 4), seed=6)

    def mix(x, perm, lam):
        return F.kernel_mix(x, perm, lam, warping="inverse_beta_cdf", validate=False)

    torch._dynamo.reset()
    compiled = torch.compile(mix, fullgraph=True, mode=mode)
    want = mix(x, perm, lam)
    for _ in range(3):  # reduce-overhead: warm-up, record, replay
        got = [t.clone() for t in compiled(x, perm, lam)]
        for g, w in zip(got, want):
            assert_identical(g, w)


# ----------------------------------------------------------------------------- no host sync


def test_public_api_never_synchronises_the_host():
    x, perm, lam = batch((16, 3, 8, 8), seed=8)
    lam0 = lam[0].clone()  # a 0-d coefficient for the whole batch
    feats = torch.randn(16, 5, device=CUDA)
    y = torch.randint(0, 10, (16,), device=CUDA)
    y_reg = torch.randn(16, device=CUDA)
    mixers = [
        (kmixup.KernelMixup(num_classes=10), y),
        (kmixup.KernelMixup(num_classes=10, mode="batch", warping="inverse_beta_cdf"), y),
        (kmixup.KernelMixup(target_tau_max=1e-4, target_tau_std=0.5), y_reg),
        (kmixup.Mixup(num_classes=10), y),
    ]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for warping in WARPINGS:
            F.kernel_mix(x, perm, lam, warping=warping, validate=False)
            F.kernel_mix(x, perm, lam0, feats=feats, warping=warping, validate=False)
        F.kernel_mix(x.half(), perm, lam.float(), validate=False)
        F.interpolate(x, perm, lam)
        F.pair_sq_dist(x, perm)
        for mixer, target in mixers:
            mixer(x, target)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()


def test_training_loop_integration_never_synchronises_the_host():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 10),
    ).to(CUDA, memory_format=torch.channels_last)
    x = torch.randn(16, 3, 8, 8, device=CUDA).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,), device=CUDA)
    index = torch.randperm(32)[:16]  # dataset indices stay on the host, as a DataLoader yields
    bank = kmixup.FeatureBank(32, 10, device=CUDA, dtype=torch.bfloat16)
    bank.update(index, torch.randn(16, 10, device=CUDA))
    mixer = kmixup.KernelMixup(num_classes=10, dominant_anchor=True)
    hidden = kmixup.HiddenMixup(model, "1", mixer)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, mixed_y = hidden(x, y)
            x_mix, _ = mixer(x, y, feats=bank.lookup(index))
            bank.update(index, model(x_mix))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert out.dtype == torch.bfloat16 and mixed_y.dtype == torch.float32
    assert mixer.last_coeff.dtype == torch.float32 and (mixer.last_coeff >= 0.5).all()
    assert x_mix.is_contiguous(memory_format=torch.channels_last)


def test_python_float_lam_never_synchronises_the_host():
    x, perm, _ = batch((16, 3, 8, 8), seed=9)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        F.kernel_mix(x, perm, 0.3, validate=False)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ----------------------------------------------------------------------------- CUDA graphs


@pytest.mark.parametrize("warping", WARPINGS)
@pytest.mark.parametrize("shape", [(128, 3, 32, 32), (4, 10**6 + 4)])
def test_cuda_graph_capture_replays_like_eager(warping, shape):
    x, perm, lam = batch(shape, seed=10)
    lam = lam.float()
    static = [x.clone(), perm.clone(), lam.clone()]

    def step():
        return ops.kernel_mix(static[0], static[1], static[2], static[0], 1.0, 0.25, warping)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up off the capture stream, as torch recommends
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    for seed in (11, 12):
        x2, perm2, lam2 = batch(shape, seed=seed)
        for dst, src in zip(static, (x2, perm2, lam2.float())):
            dst.copy_(src)
        graph.replay()
        want = ops.kernel_mix(x2, perm2, lam2.float(), x2, 1.0, 0.25, warping)
        torch.cuda.synchronize()
        assert_identical(out[0], want[0])
        assert_identical(out[1], want[1])
