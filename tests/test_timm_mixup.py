"""TimmMixup (timm's Mixup/CutMix arguments), its draws, the uint8 collate, and the
(target, perm, coeff) output of every mixer. No timm needed: timm's box sampling is
written out below in numpy, from timm/data/mixup.py, as the reference."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import kmixup
from kmixup import TimmMixup, draws
from kmixup import functional as F

NUM_CLASSES = 7


def gen(seed):
    return torch.Generator().manual_seed(seed)


def images(n, seed=0, size=(12, 10)):
    g = gen(seed)
    return torch.randn(n, 3, *size, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)


def smoothed_one_hot(y, label_smoothing, num_classes=NUM_CLASSES):
    off = label_smoothing / num_classes
    return torch.full((len(y), num_classes), off).scatter_(1, y[:, None], 1 - label_smoothing + off)


def dense_from_triple(target, perm, coeff, label_smoothing, num_classes=NUM_CLASSES):
    """What a loss on (target, perm, coeff) stands for: the dense mixed soft targets."""
    t = smoothed_one_hot(target, label_smoothing, num_classes) if target.dim() == 1 else target
    c = coeff.to(t.dtype)[:, None]
    return c * t + (1 - c) * t[perm]


# ----------------------------------------------------------------------------- timm's boxes


def timm_rand_bbox(img_shape, lam, rng):
    """timm's rand_bbox (margin 0), per lam, with numpy's generator ``rng``."""
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape
    cut_h, cut_w = (img_h * ratio).astype(int), (img_w * ratio).astype(int)
    cy, cx = rng.integers(0, img_h, size=len(lam)), rng.integers(0, img_w, size=len(lam))
    yl, yh = np.clip(cy - cut_h // 2, 0, img_h), np.clip(cy + (cut_h + 1) // 2, 0, img_h)
    xl, xh = np.clip(cx - cut_w // 2, 0, img_w), np.clip(cx + (cut_w + 1) // 2, 0, img_w)
    return yl, yh, xl, xh


def timm_rand_bbox_minmax(img_shape, minmax, n, rng):
    img_h, img_w = img_shape
    cut_h = rng.integers(int(img_h * minmax[0]), int(img_h * minmax[1]), size=n)
    cut_w = rng.integers(int(img_w * minmax[0]), int(img_w * minmax[1]), size=n)
    yl, xl = rng.integers(0, img_h - cut_h + 1, size=n), rng.integers(0, img_w - cut_w + 1, size=n)
    return yl, yl + cut_h, xl, xl + cut_w


@pytest.mark.parametrize("size", [(32, 32), (13, 7)])
def test_boxes_follow_timm_rand_bbox(size):
    n = 20000
    lam = draws.beta(1.0, n, torch.device("cpu"), gen(0))
    box, coeff = draws.boxes(lam, *size, generator=gen(1))
    top, bottom, left, right = box.T
    h, w = size
    assert box.dtype == torch.int64 and box.shape == (n, 4)
    assert torch.all((0 <= top) & (top <= bottom) & (bottom <= h))
    assert torch.all((0 <= left) & (left <= right) & (right <= w))
    # The box's own area ratio, corrected for the clipping.
    area = ((bottom - top) * (right - left)).double()
    torch.testing.assert_close(coeff, 1 - area / (h * w), rtol=0, atol=0)
    # Unclipped boxes have timm's side int(side * sqrt(1 - lam)).
    cut_h = (h * (1 - lam).sqrt()).floor().long()
    unclipped = (top > 0) & (bottom < h)
    assert torch.equal((bottom - top)[unclipped], cut_h[unclipped])
    # Same distribution of boxes as timm's for the same lam.
    rng = np.random.default_rng(2)
    yl, yh, xl, xh = timm_rand_bbox(size, lam.numpy(), rng)
    timm_coeff = 1 - (yh - yl) * (xh - xl) / (h * w)
    assert stats.ks_2samp(coeff.numpy(), timm_coeff).pvalue > 1e-3
    assert stats.ks_2samp(top.numpy(), yl).pvalue > 1e-3
    assert stats.ks_2samp(right.numpy(), xh).pvalue > 1e-3
    # Without the correction the coefficient is lam itself.
    assert draws.boxes(lam, *size, correct_lam=False, generator=gen(1))[1] is lam


def test_minmax_boxes_follow_timm_and_fit_the_image():
    n, size, minmax = 20000, (40, 30), (0.2, 0.8)
    lam = torch.full((n,), 0.5, dtype=torch.float64)
    box, coeff = draws.boxes(lam, *size, minmax, correct_lam=False, generator=gen(3))
    top, bottom, left, right = box.T
    heights, widths = bottom - top, right - left
    assert heights.min() == 8 and heights.max() == 31  # [int(40 * .2), int(40 * .8))
    assert widths.min() == 6 and widths.max() == 23
    assert torch.all((top >= 0) & (bottom <= 40) & (left >= 0) & (right <= 30))
    torch.testing.assert_close(coeff, 1 - (heights * widths).double() / 1200, rtol=0, atol=0)
    yl, yh, xl, xh = timm_rand_bbox_minmax(size, minmax, n, np.random.default_rng(4))
    assert stats.ks_2samp(coeff.numpy(), 1 - (yh - yl) * (xh - xl) / 1200).pvalue > 1e-3
    assert stats.ks_2samp(top.numpy(), yl).pvalue > 1e-3
    with pytest.raises(ValueError, match="cutmix_minmax"):
        draws.boxes(lam[:2], 4, 4, (0.3, 0.45))  # int(1.2) == int(1.8): no size to draw


@pytest.mark.parametrize("batch", [3, 6, 8])
def test_mutual_pairs_are_random_matchings(batch):
    counts = torch.zeros(batch, batch)
    for seed in range(2000):
        perm = draws.pairs(batch, True, torch.device("cpu"), gen(seed))
        assert torch.equal(perm[perm], torch.arange(batch))  # i <-> perm[i]
        assert (perm == torch.arange(batch)).sum() == batch % 2
        counts[torch.arange(batch), perm] += 1
    # Every partner of sample 0 (itself included in an odd batch) is equally likely.
    partners = counts[0] if batch % 2 else counts[0, 1:]
    assert stats.chisquare(partners.numpy()).pvalue > 1e-3
    perm = draws.pairs(batch, False, torch.device("cpu"), gen(0))
    assert sorted(perm.tolist()) == list(range(batch))


# ----------------------------------------------------------------------------- TimmMixup


def check_rows(x, mixed, perm, coeff, cutmix, box):
    """Each row is a mixup row (coeff * x[i] + (1 - coeff) * x[perm[i]]), or a CutMix row
    (x[i] with box[i] from x[perm[i]], coeff the share left to x[i])."""
    h, w = x.shape[-2:]
    for i in range(len(x)):
        if cutmix[i]:
            top, bottom, left, right = box[i].tolist()
            expected = x[i].clone()
            expected[:, top:bottom, left:right] = x[perm[i], :, top:bottom, left:right]
            assert torch.equal(mixed[i], expected)
            area = (bottom - top) * (right - left)
            assert coeff[i].item() == pytest.approx(1 - area / (h * w), abs=1e-7)
        else:
            c = coeff[i].item()
            torch.testing.assert_close(mixed[i], c * x[i] + (1 - c) * x[perm[i]])


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("batch", [0, 1, 2, 5, 8])
def test_every_mode_and_batch_size_mixes_inputs_and_targets_alike(mode, batch):
    x, y = images(batch, seed=batch)
    mixer = TimmMixup(mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, num_classes=NUM_CLASSES,
                      label_smoothing=0.1, warping="none", generator=gen(5))
    for _ in range(10):
        mixed, target = mixer(x, y)
        perm, coeff, lam = mixer.last_perm, mixer.last_coeff, mixer.last_lam
        cutmix, box = mixer.last_cutmix, mixer.last_box
        assert mixed.shape == x.shape and mixed.dtype == x.dtype
        assert target.shape == (batch, NUM_CLASSES) and target.dtype == torch.float32
        torch.testing.assert_close(target.sum(1), torch.ones(batch))
        torch.testing.assert_close(target, dense_from_triple(y, perm, coeff, 0.1))
        torch.testing.assert_close(coeff.double(), lam, atol=1e-7, rtol=0)  # no warping
        check_rows(x, mixed, perm, coeff, cutmix, box)
        alone = perm == torch.arange(batch)
        assert int(alone.sum()) == batch % 2 or batch < 2
        assert torch.all(coeff[alone] == 1) and torch.equal(mixed[alone], x[alone])
        if mode == "batch" and batch > 1:
            paired = ~alone
            assert len(set(lam[paired].tolist())) == 1 == len(set(cutmix[paired].tolist()))
            assert (box[paired] == box[paired][0]).all()
        if mode == "pair":
            partnered = ~alone
            assert torch.equal(lam[partnered], lam[perm][partnered])
            assert torch.equal(box[partnered], box[perm][partnered])


def test_switch_prob_and_prob_set_the_shares_of_cutmix_and_of_unmixed_samples():
    x, y = images(64, seed=6)
    mixer = TimmMixup(mixup_alpha=1.0, cutmix_alpha=1.0, prob=0.6, switch_prob=0.3,
                      mode="elem", num_classes=NUM_CLASSES, generator=gen(7))
    cutmix, unmixed = [], []
    for _ in range(100):
        mixer(x, y)
        cutmix.append(mixer.last_cutmix)
        unmixed.append((mixer.last_lam == 1) & ~mixer.last_cutmix)  # not an empty box
    cutmix, unmixed = torch.cat(cutmix).double(), torch.cat(unmixed).double()
    n = len(cutmix)
    assert abs(unmixed.mean() - 0.4) < 5 * math.sqrt(0.24 / n)
    assert abs(cutmix.mean() - 0.6 * 0.3) < 5 * math.sqrt(0.18 * 0.82 / n)


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_coefficients_follow_their_beta_and_boxes_their_area(mode):
    x, y = images(16, seed=8, size=(16, 16))
    mixer = TimmMixup(mixup_alpha=0.4, cutmix_alpha=2.0, mode=mode, num_classes=NUM_CLASSES,
                      warping="none", generator=gen(9))
    mixup, cutmix_coeff = [], []
    for _ in range(600 if mode == "batch" else 150):
        mixer(x, y)
        first = slice(None) if mode == "elem" else slice(0, 1)  # one value per batch
        lam, cm = mixer.last_lam[first], mixer.last_cutmix[first]
        mixup.append(lam[~cm])
        cutmix_coeff.append(lam[cm])
    mixup, cutmix_coeff = torch.cat(mixup).numpy(), torch.cat(cutmix_coeff).numpy()
    assert stats.kstest(mixup, stats.beta(0.4, 0.4).cdf).pvalue > 1e-3
    # The CutMix coefficients are timm's box areas for Beta(2, 2) draws.
    lam = np.random.default_rng(10).beta(2.0, 2.0, size=20000)
    yl, yh, xl, xh = timm_rand_bbox((16, 16), lam, np.random.default_rng(11))
    assert stats.ks_2samp(cutmix_coeff, 1 - (yh - yl) * (xh - xl) / 256).pvalue > 1e-3


def test_sk_warps_the_mixup_branch_only():
    x, y = images(12, seed=12)
    mixer = TimmMixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=NUM_CLASSES,
                      tau_std=0.5, generator=gen(13))
    mixed, _ = mixer(x, y)
    perm, lam, cutmix = mixer.last_perm, mixer.last_lam, mixer.last_cutmix
    assert cutmix.any() and not cutmix.all()
    _, sk = F.kernel_mix(x, perm, torch.where(cutmix, 1.0, lam), tau_std=0.5)
    torch.testing.assert_close(mixer.last_coeff[~cutmix], sk[~cutmix])
    torch.testing.assert_close(mixer.last_coeff[cutmix].double(), lam[cutmix])
    assert not torch.allclose(sk[~cutmix].double(), lam[~cutmix])
    check_rows(x, mixed, perm, mixer.last_coeff, cutmix, mixer.last_box)


def test_sk_gives_both_members_of_a_pair_the_same_coefficient():
    x, y = images(9, seed=28)
    mixer = TimmMixup(mode="pair", num_classes=NUM_CLASSES, generator=gen(29))
    mixer(x, y)
    perm, coeff = mixer.last_perm, mixer.last_coeff
    assert torch.equal(coeff, coeff[perm]) and (coeff < 1).sum() == 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_on_cuda_mixes_as_on_the_cpu_and_never_synchronises(mode):
    x, y = images(9, seed=30)
    mixer = TimmMixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.9, mode=mode,
                      num_classes=NUM_CLASSES, generator=torch.Generator("cuda").manual_seed(31))
    torchvision_style = kmixup.TorchvisionMixup(num_classes=NUM_CLASSES)
    x_cuda, y_cuda = x.cuda(), y.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        mixed, target = mixer(x_cuda, y_cuda)
        torchvision_style(x_cuda, y_cuda)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    perm, coeff = mixer.last_perm.cpu(), mixer.last_coeff.cpu()
    check_rows(x, mixed.cpu(), perm, coeff, mixer.last_cutmix.cpu(), mixer.last_box.cpu())
    torch.testing.assert_close(target.cpu(), dense_from_triple(y, perm, coeff, 0.1))


def test_cutmix_only_minmax_and_uncorrected_lam():
    x, y = images(6, seed=14, size=(20, 20))
    mixer = TimmMixup(mixup_alpha=0.0, cutmix_minmax=(0.3, 0.6), mode="elem",
                      num_classes=NUM_CLASSES, generator=gen(15))
    assert mixer.cutmix_alpha == 1.0  # as timm: minmax forces alpha 1
    mixer(x, y)
    assert mixer.last_cutmix.all()
    heights = mixer.last_box[:, 1] - mixer.last_box[:, 0]
    assert torch.all((heights >= 6) & (heights < 12))
    mixer = TimmMixup(mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, mode="elem",
                      num_classes=NUM_CLASSES, generator=gen(16))
    mixed, target = mixer(x, y)
    box, lam = mixer.last_box, mixer.last_lam
    area = ((box[:, 1] - box[:, 0]) * (box[:, 3] - box[:, 2])).double()
    assert not torch.allclose(lam, 1 - area / 400)  # the Beta draw, not the area
    torch.testing.assert_close(target, dense_from_triple(y, mixer.last_perm, lam, 0.1))


def test_mixup_enabled_false_and_prob_zero_pass_through():
    x, y = images(6, seed=17)
    disabled = TimmMixup(cutmix_alpha=1.0, num_classes=NUM_CLASSES)
    disabled.mixup_enabled = False  # as timm's train.py does at --mixup-off-epoch
    for mixer in (TimmMixup(cutmix_alpha=1.0, num_classes=NUM_CLASSES, prob=0.0), disabled):
        mixed, target = mixer(x, y)
        assert torch.equal(mixed, x)
        torch.testing.assert_close(target, smoothed_one_hot(y, 0.1))


def test_in_place_gradient_and_half_precision():
    x, y = images(8, seed=18)
    mixer = TimmMixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=NUM_CLASSES,
                      generator=gen(19))
    expected, _ = mixer(x, y)
    mixer.generator.manual_seed(19)
    x_in = x.clone()
    mixed, _ = mixer(x_in, y, inplace=True)
    assert mixed is x_in and torch.equal(mixed, expected)
    leaf = x.clone().requires_grad_()
    mixer(leaf, y)[0].sum().backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.sum().item() == pytest.approx(x.numel())
    mixed, target = mixer(x.bfloat16(), y)
    assert mixed.dtype == torch.bfloat16 and target.dtype == torch.float32
    mixed, _ = mixer(x.contiguous(memory_format=torch.channels_last), y)
    assert mixed.is_contiguous(memory_format=torch.channels_last) and mixer.last_cutmix.any()


def test_hidden_mixup_takes_the_mixup_branch():
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    mixer = TimmMixup(mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair", num_classes=3,
                      generator=gen(20))
    hidden = kmixup.HiddenMixup(model, "1", mixer)
    out, target = hidden(torch.randn(6, 4), torch.arange(6) % 3)
    assert out.shape == (6, 3) and torch.allclose(target.sum(1), torch.ones(6))
    perm = mixer.last_perm
    assert torch.equal(perm[perm], torch.arange(6))


@pytest.mark.parametrize(
    "kwargs, err, name",
    [
        (dict(mixup_alpha=-1.0), ValueError, "mixup_alpha"),
        (dict(mixup_alpha=math.inf), ValueError, "mixup_alpha"),
        (dict(cutmix_alpha="1"), TypeError, "cutmix_alpha"),
        (dict(mixup_alpha=0.0), ValueError, "mixup_alpha"),
        (dict(cutmix_minmax=(0.8, 0.2)), ValueError, "cutmix_minmax"),
        (dict(prob=1.5), ValueError, "prob"),
        (dict(switch_prob=-0.1), ValueError, "switch_prob"),
        (dict(mode="half"), ValueError, "mode"),
        (dict(label_smoothing=1.0), ValueError, "label_smoothing"),
        (dict(num_classes=0), ValueError, "num_classes"),
        (dict(warping="cdf"), ValueError, "warping"),
    ],
)
def test_bad_construction_raises(kwargs, err, name):
    with pytest.raises(err, match=rf"\b{name}\b"):
        TimmMixup(**kwargs)


def test_bad_call_raises_and_repr():
    mixer = TimmMixup(cutmix_alpha=1.0, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="CutMix"):
        mixer(torch.randn(4, 5), torch.arange(4))
    with pytest.raises(TypeError, match="x"):
        mixer(torch.zeros(4, 3, 5, 5, dtype=torch.uint8), torch.arange(4))
    with pytest.raises(ValueError, match="target"):
        mixer(torch.randn(4, 3, 5, 5), torch.arange(3))
    assert repr(mixer).startswith("TimmMixup(mixup_alpha=1.0, cutmix_alpha=1.0")


# ----------------------------------------------------------------------------- collate


def test_collate_mixes_uint8_samples_as_fast_collate_mixup():
    rng = np.random.default_rng(21)
    samples = [(rng.integers(0, 256, (3, 8, 8), dtype=np.uint8), i % NUM_CLASSES)
               for i in range(6)]
    kwargs = dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode="elem", num_classes=NUM_CLASSES)
    collate = kmixup.MixupCollate(TimmMixup(**kwargs, generator=gen(22)))
    mixed, target = collate(samples)
    assert mixed.dtype == torch.uint8 and mixed.shape == (6, 3, 8, 8)
    # The same draw on the float batch, rounded: what timm's FastCollateMixup returns.
    reference = TimmMixup(**kwargs, generator=gen(22))
    x = torch.stack([torch.from_numpy(s[0]) for s in samples]).float()
    expected, expected_target = reference(x, torch.tensor([s[1] for s in samples]))
    assert torch.equal(mixed, expected.round().to(torch.uint8))
    assert torch.equal(target, expected_target)
    assert reference.last_cutmix.any()  # CutMix and mixup rows both checked


# ------------------------------------------------------------------- (target, perm, coeff)


@pytest.mark.parametrize(
    "make",
    [
        lambda **k: kmixup.KernelMixup(num_classes=NUM_CLASSES, label_smoothing=0.1, **k),
        lambda **k: kmixup.Mixup(num_classes=NUM_CLASSES, label_smoothing=0.1, **k),
        lambda **k: TimmMixup(cutmix_alpha=1.0, mode="elem", num_classes=NUM_CLASSES, **k),
    ],
    ids=["KernelMixup", "Mixup", "TimmMixup"],
)
def test_index_targets_reproduce_the_dense_targets(make):
    x, y = images(9, seed=23)
    dense_x, dense = make(generator=gen(24))(x, y)
    mixer = make(generator=gen(24), dense_target=False)
    mixed_x, (target, perm, coeff) = mixer(x, y)
    assert target is y and perm is mixer.last_perm and coeff is mixer.last_coeff
    assert torch.equal(mixed_x, dense_x)
    torch.testing.assert_close(dense_from_triple(target, perm, coeff, 0.1), dense)


def test_index_targets_through_the_collate_and_for_regression():
    samples = [(torch.randn(4), i % NUM_CLASSES) for i in range(5)]
    mixer = kmixup.KernelMixup(num_classes=NUM_CLASSES, dense_target=False)
    mixed, (target, perm, coeff) = kmixup.MixupCollate(mixer)(samples)
    assert mixed.shape == (5, 4) and target.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(perm, mixer.last_perm) and torch.equal(coeff, mixer.last_coeff)
    x, t = torch.randn(8, 3, generator=gen(25)), torch.randn(8, generator=gen(26))
    mixer = kmixup.KernelMixup(target_tau_max=2.0, dense_target=False, generator=gen(27))
    _, (target, perm, coeff) = mixer(x, t)
    dense = kmixup.KernelMixup(target_tau_max=2.0, generator=gen(27))(x, t)[1]
    assert coeff is mixer.last_target_coeff and target is t
    torch.testing.assert_close(coeff * t + (1 - coeff) * t[perm], dense)
