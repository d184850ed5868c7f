"""kmixup.mix_cross_entropy against cross-entropy on kmixup's own dense mixed targets."""

import pytest
import torch
import torch.nn.functional as TF
from helpers import gen

import kmixup
from kmixup import functional as F

REDUCTIONS = ["none", "mean", "sum"]


def problem(shape, classes, dtype=torch.float64, seed=0, ignore_index=None):
    """logits [B, C, *spatial], target [B, *spatial], perm, coeff (dtype [B])."""
    batch, *spatial = shape
    logits = torch.randn(batch, classes, *spatial, generator=gen(seed), dtype=dtype)
    target = torch.randint(0, classes, shape, generator=gen(seed + 1))
    if ignore_index is not None:
        target[torch.rand(shape, generator=gen(seed + 2)) < 0.3] = ignore_index
    perm = torch.randperm(batch, generator=gen(seed + 3))
    coeff = torch.rand(batch, generator=gen(seed + 4), dtype=dtype)
    return logits.requires_grad_(), target, perm, coeff


def dense_targets(target, perm, coeff, classes, label_smoothing, ignore_index=-100):
    """The dense path: smoothed one-hot maps [B, C, *spatial] (zero where ignored), mixed
    by kmixup's interpolate (class-index targets [B] by kmixup's own mix_targets)."""
    kept = target != ignore_index
    if target.dim() == 1 and bool(kept.all()):
        return F.mix_targets(target, perm, coeff, classes, label_smoothing)
    one_hot = TF.one_hot(torch.where(kept, target, 0), classes).to(coeff.dtype)
    smoothed = (one_hot * (1 - label_smoothing) + label_smoothing / classes) * kept[..., None]
    return F.interpolate(smoothed.movedim(-1, 1), perm, coeff)


def dense_loss(logits, dense, reduction, weight=None):
    """Soft-target cross-entropy, its mean over positions (torch's soft-target mean)."""
    return TF.cross_entropy(logits, dense.to(logits.dtype), weight=weight, reduction=reduction)


def value_and_grad(loss_fn, logits):
    loss = loss_fn(logits)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    return loss.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(16,), (4, 5, 3)], ids=["classes", "segmentation"])
def test_equals_cross_entropy_on_dense_mixed_targets(dtype, label_smoothing, reduction, shape):
    classes = 7
    logits, target, perm, coeff = problem(shape, classes, dtype)
    dense = dense_targets(target, perm, coeff, classes, label_smoothing)
    got = value_and_grad(lambda z: kmixup.mix_cross_entropy(
        z, target, perm, coeff, label_smoothing, reduction), logits)
    want = value_and_grad(lambda z: dense_loss(z, dense, reduction), logits)
    assert got[0].dtype == dtype and got[0].shape == want[0].shape
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_dense_targets_of_the_test_are_kmixups_for_class_indices():
    """The segmentation reference (one-hot maps mixed by interpolate) builds, for [B]
    targets, exactly what mix_targets builds: both paths above are kmixup's."""
    _, target, perm, coeff = problem((9,), 5)
    via_maps = dense_targets(target, perm, coeff, 5, 0.2, ignore_index=5)  # nothing ignored
    torch.testing.assert_close(via_maps, F.mix_targets(target, perm, coeff, 5, 0.2))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(12,), (3, 4, 4)], ids=["classes", "segmentation"])
def test_coefficient_one_is_torch_cross_entropy_with_weight_and_ignore_index(reduction, shape):
    logits, target, perm, _ = problem(shape, 6, ignore_index=255)
    weight = torch.rand(6, generator=gen(7), dtype=torch.float64) + 0.5
    kwargs = {"weight": weight, "ignore_index": 255, "reduction": reduction}
    ones = torch.ones(shape[0], dtype=torch.float64)
    got = value_and_grad(lambda z: kmixup.mix_cross_entropy(
        z, target, perm, ones, 0.1, **kwargs), logits)
    want = value_and_grad(lambda z: TF.cross_entropy(z, target, label_smoothing=0.1, **kwargs),
                          logits)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(12,), (3, 4, 4)], ids=["classes", "segmentation"])
def test_weight_and_ignored_positions_against_the_dense_path(label_smoothing, shape):
    """Per position and summed: the dense soft-target loss with ignored one-hot rows set to
    zero; the mean divides by the total target weight (torch's class-index convention)."""
    logits, target, perm, coeff = problem(shape, 6, ignore_index=-100)
    weight = torch.rand(6, generator=gen(8), dtype=torch.float64) + 0.5
    dense = dense_targets(target, perm, coeff, 6, label_smoothing)

    def mixed(reduction):
        return lambda z: kmixup.mix_cross_entropy(
            z, target, perm, coeff, label_smoothing, reduction, weight=weight)

    for reduction in ("none", "sum"):
        got = value_and_grad(mixed(reduction), logits)
        want = value_and_grad(lambda z: dense_loss(z, dense, reduction, weight), logits)  # noqa: B023
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
    # The target weight of a position: dense targets without smoothing, times weight.
    mass = (dense_targets(target, perm, coeff, 6, 0.0) * weight.view(-1, *[1] * (len(shape) - 1))
            ).sum()
    got = value_and_grad(mixed("mean"), logits)
    want = value_and_grad(lambda z: dense_loss(z, dense, "sum", weight) / mass, logits)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_gradcheck_float64():
    logits, target, perm, coeff = problem((5, 3), 4)
    weight = torch.rand(4, generator=gen(9), dtype=torch.float64)
    target[0, 1] = -100

    def loss(z):
        return kmixup.mix_cross_entropy(z, target, perm, coeff, 0.2, "none", weight=weight)

    assert torch.autograd.gradcheck(loss, (logits,))
    assert torch.autograd.gradgradcheck(loss, (logits,))


def test_autocast_bfloat16_on_the_cpu_matches_float32_dense_loss():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 10)
    x = torch.randn(16, 8)
    _, target, perm, coeff = problem((16,), 10, torch.float32)
    dense = dense_targets(target, perm, coeff, 10, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        loss = kmixup.mix_cross_entropy(logits, target, perm, coeff, 0.1)
        reference = dense_loss(logits.float(), dense, "mean")
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference)
    loss.backward()
    assert model.weight.grad is not None and torch.isfinite(model.weight.grad).all()


def test_torch_compile_fullgraph_equals_eager_forward_and_backward():
    logits, target, perm, coeff = problem((4, 3, 3), 5, torch.float32)
    target[1, 0, 0] = -100

    def loss(z, target, perm, coeff):
        return kmixup.mix_cross_entropy(z, target, perm, coeff, label_smoothing=0.1)

    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True)
    got = value_and_grad(lambda z: compiled(z, target, perm, coeff), logits)
    want = value_and_grad(lambda z: loss(z, target, perm, coeff), logits)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_with_the_mixers_draw():
    """The documented path: the mixer's last_perm and last_coeff."""
    mixer = kmixup.KernelMixup(num_classes=4, label_smoothing=0.1)
    x = torch.randn(10, 6, generator=gen(10))
    y = torch.randint(0, 4, (10,), generator=gen(11))
    _, y_mix = mixer(x, y)
    logits = torch.randn(10, 4, generator=gen(12))
    got = kmixup.mix_cross_entropy(logits, y, mixer.last_perm, mixer.last_coeff, 0.1)
    torch.testing.assert_close(got, dense_loss(logits, y_mix, "mean"))


def test_batch_coefficient_and_empty_batch():
    logits, target, perm, coeff = problem((6,), 3)
    one = coeff[0]  # a 0-d coefficient: the same for the whole batch
    dense = dense_targets(target, perm, one.expand(6), 3, 0.0)
    torch.testing.assert_close(kmixup.mix_cross_entropy(logits, target, perm, one),
                               dense_loss(logits, dense, "mean"))
    empty = kmixup.mix_cross_entropy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long),
                                     torch.zeros(0, dtype=torch.long), torch.zeros(0), 0.0,
                                     "none")
    assert empty.shape == (0,)


def test_bad_input_names_the_argument():
    logits, target, perm, coeff = problem((4,), 3)
    call = kmixup.mix_cross_entropy
    cases = [
        (TypeError, "logits", lambda: call(logits.long(), target, perm, coeff)),
        (ValueError, "logits", lambda: call(logits[0], target, perm, coeff)),
        (TypeError, "target", lambda: call(logits, target.float(), perm, coeff)),
        (ValueError, "target", lambda: call(logits, target[:3], perm, coeff)),
        (TypeError, "perm", lambda: call(logits, target, perm.float(), coeff)),
        (ValueError, "perm", lambda: call(logits, target, perm[:3], coeff)),
        (TypeError, "coeff", lambda: call(logits, target, perm, coeff.long())),
        (ValueError, "coeff", lambda: call(logits, target, perm, coeff[:2])),
        (ValueError, "label_smoothing", lambda: call(logits, target, perm, coeff, 1.0)),
        (ValueError, "reduction", lambda: call(logits, target, perm, coeff, 0.0, "avg")),
        (ValueError, "weight", lambda: call(logits, target, perm, coeff, weight=coeff)),
        # torch's class-index cross_entropy refuses it too; the backward would drop it.
        (ValueError, "weight", lambda: call(
            logits, target, perm, coeff, weight=torch.ones(3, requires_grad=True))),
        (TypeError, "ignore_index", lambda: call(logits, target, perm, coeff, ignore_index=1.5)),
        (IndexError, "perm", lambda: call(logits, target, torch.tensor([0, 1, 2, 4]), coeff)),
        (IndexError, "target", lambda: call(logits, target + 3, perm, coeff)),
        (ValueError, "coeff", lambda: call(logits, target, perm, coeff + 1)),
    ]
    for error, name, fn in cases:
        with pytest.raises(error, match=name):
            fn()
