"""In-place (kernel_mix_) and out= mixing: the same bits as kernel_mix on every backend,
whatever the cycle structure of perm, the layout or the way the batch is cut into tasks."""

import pytest
import torch

import kmixup
from kmixup import _ops
from kmixup import _torch_kernels as K
from kmixup import functional as F

BACKENDS = {"pure": (K.kernel_mix, K.kernel_mix_out, K.kernel_mix_inplace)}
if _ops.has_compiled_kernel("cpu"):
    ops = torch.ops.kmixup
    BACKENDS["compiled"] = (ops.kernel_mix, ops.kernel_mix_out, ops.kernel_mix_)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def perms(n, g):
    """Every cycle structure that matters: random, one cycle, all fixed points, 2-cycles."""
    return {
        "random": torch.randperm(n, generator=g),
        "roll": torch.roll(torch.arange(n), 1),
        "identity": torch.arange(n),
        "flip": torch.arange(n).flip(0),
    }


# [300, 1000] and [2000, 40] are cut into several tasks (about 64K elements each), so rows
# are copied aside at task starts as well as at cycle starts.
SHAPES = [(300, 1000), (2000, 40), (5, 3, 8, 8), (1, 4), (2, 3)]


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("warping", ["beta_cdf", "none"])
def test_in_place_and_out_match_kernel_mix_bit_for_bit(backend, dtype, shape, warping):
    fused, fused_out, fused_inplace = BACKENDS[backend]
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g).to(dtype)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    lam = torch.rand(shape[0], generator=g, dtype=torch.float64)
    lam[: shape[0] // 4] = 1.0  # exact copies among the mixed rows
    for name, perm in perms(shape[0], g).items():
        args = (perm, lam, x, 1.0, 0.25, warping)
        mixed, coeff = fused(x, *args)
        out = torch.empty_like(x)
        assert torch.equal(fused_out(x, *args, out), coeff)
        assert torch.equal(out, mixed), name
        inplace = x.clone()
        # feats is x itself: every distance must be taken before any row changes.
        coeff_in = fused_inplace(inplace, perm, lam, inplace, 1.0, 0.25, warping)
        assert torch.equal(coeff_in, coeff) and torch.equal(inplace, mixed), name
        assert inplace.stride() == x.stride()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_repeated_index_in_place_mixes_as_out_of_place(backend):
    fused, _, fused_inplace = BACKENDS[backend]
    x = torch.randn(6, 5)
    perm, lam = torch.tensor([1, 1, 0, 5, 2, 2]), torch.rand(6, dtype=torch.float64)
    mixed, _ = fused(x, perm, lam, x, 1.0, 0.25, "beta_cdf")
    inplace = x.clone()
    fused_inplace(inplace, perm, lam, x, 1.0, 0.25, "beta_cdf")
    assert torch.equal(inplace, mixed)


def test_functional_in_place_and_out():
    x, perm = torch.randn(8, 3, 4, 4), torch.randperm(8)
    mixed, coeff = F.kernel_mix(x, perm, 0.3, warping="inverse_beta_cdf")
    buffer = torch.empty_like(x)
    got, got_coeff = F.kernel_mix(x, perm, 0.3, warping="inverse_beta_cdf", out=buffer)
    assert got is buffer and torch.equal(got, mixed) and torch.equal(got_coeff, coeff)
    y = x.clone()
    got, got_coeff = F.kernel_mix_(y, perm, 0.3, warping="inverse_beta_cdf")
    assert got is y and torch.equal(y, mixed) and torch.equal(got_coeff, coeff)
    # A batch of one is left as it is, in place and into out.
    one = x[:1].clone()
    assert torch.equal(F.kernel_mix_(one, torch.tensor([0]), 0.3)[0], x[:1])
    assert torch.equal(F.kernel_mix(one, torch.tensor([0]), 0.3, out=buffer[:1])[0], x[:1])


def test_in_place_and_out_refuse_what_they_cannot_do():
    x, perm = torch.randn(4, 3, requires_grad=True), torch.randperm(4)
    with pytest.raises(ValueError, match="requires grad"):
        F.kernel_mix_(x, perm, 0.5)
    with pytest.raises(ValueError, match="autograd"):
        F.kernel_mix(x, perm, 0.5, out=torch.empty(4, 3))
    x = x.detach()
    with torch.no_grad():  # under no_grad a leaf that requires grad may be mixed in place
        F.kernel_mix_(torch.randn(4, 3, requires_grad=True), perm, 0.5)
    with pytest.raises(ValueError, match="out"):
        F.kernel_mix(x, perm, 0.5, out=torch.empty(4, 2))
    with pytest.raises(ValueError, match="out"):
        F.kernel_mix(x, perm, 0.5, out=torch.empty(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="out"):
        F.kernel_mix(x, perm, 0.5, out=torch.empty(3, 4).t())
    with pytest.raises(ValueError, match="overlap"):
        F.kernel_mix(x, perm, 0.5, out=x)
    with pytest.raises(ValueError, match="contiguous"):
        F.kernel_mix_(torch.randn(3, 4).t(), torch.randperm(4), 0.5)
    with pytest.raises(TypeError, match="out"):
        F.kernel_mix(x, perm, 0.5, out="buffer")


WRITES = {
    "kernel_mix_": lambda t, perm, lam: F.kernel_mix_(t, perm, lam),
    "out=": lambda t, perm, lam: F.kernel_mix(t.clone(), perm, lam, out=t),
    "op kernel_mix_": lambda t, perm, lam: torch.ops.kmixup.kernel_mix_(
        t, perm, lam, t.clone(), 1.0, 0.25, "beta_cdf"
    ),
    "op kernel_mix_out": lambda t, perm, lam: torch.ops.kmixup.kernel_mix_out(
        t.clone(), perm, lam, t.clone(), 1.0, 0.25, "none", t
    ),
    "KernelMixup(inplace=True)": lambda t, perm, lam: kmixup.KernelMixup(
        num_classes=3, inplace=True
    )(t, torch.zeros(len(t), dtype=torch.long)),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_tensor_mixed_in_place_is_seen_by_autograd(write):
    # The compiled kernels write through a data pointer: without a version bump, a graph
    # that saved the tensor (w * t saves t for w's gradient) backpropagated through the
    # mixed values with no error, where torch's own in-place ops raise.
    w, t = torch.randn(8, 3, requires_grad=True), torch.randn(8, 3)
    loss = (w * t).sum()
    version = t._version
    WRITES[write](t, torch.randperm(8), torch.rand(8))
    assert t._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


@pytest.mark.parametrize("needs_grad", ["x of kernel_mix_", "x of kernel_mix_out", "out"])
def test_the_raw_in_place_ops_refuse_tensors_that_need_grad(needs_grad):
    # The functional API refuses these by name; called directly, the ops wrote the values
    # and left the old grad_fn in place (a silently wrong gradient), where torch's own
    # out= ops raise.
    w, perm, lam = torch.randn(8, 3, requires_grad=True), torch.randperm(8), torch.rand(8)
    x, out = torch.randn(8, 3), torch.empty(8, 3)
    if needs_grad == "out":
        out = w * 2
    else:
        x = w * 2

    def write():
        if needs_grad == "x of kernel_mix_":
            return torch.ops.kmixup.kernel_mix_(x, perm, lam, x.detach(), 1.0, 0.25, "none")
        return torch.ops.kmixup.kernel_mix_out(x, perm, lam, x.detach(), 1.0, 0.25, "none", out)

    with pytest.raises(RuntimeError, match="requires grad"):
        write()
    with torch.no_grad():  # as for torch's in-place ops: allowed, autograd is off
        write()


def test_kernel_mixup_inplace_and_the_collate_mix_in_place():
    x, y = torch.randn(16, 3, 4, 4), torch.randint(0, 5, (16,))
    ref = kmixup.KernelMixup(num_classes=5, generator=torch.Generator().manual_seed(0))
    mixed, target = ref(x, y)
    mixer = kmixup.KernelMixup(
        num_classes=5, inplace=True, generator=torch.Generator().manual_seed(0)
    )
    batch = x.clone()
    got, got_target = mixer(batch, y)
    assert got is batch and torch.equal(got, mixed) and torch.equal(got_target, target)
    with pytest.raises(ValueError, match="requires grad"):
        mixer(x.clone().requires_grad_(), y)


def test_in_place_mixing_compiles():
    def step(x, perm, lam):
        return F.kernel_mix_(x, perm, lam)[1]

    x, perm, lam = torch.randn(8, 6), torch.randperm(8), torch.rand(8, dtype=torch.float64)
    eager = x.clone()
    coeff = step(eager, perm, lam)
    compiled = x.clone()
    got = torch.compile(step, backend="aot_eager", fullgraph=True)(compiled, perm, lam)
    assert torch.equal(got, coeff) and torch.equal(compiled, eager)
