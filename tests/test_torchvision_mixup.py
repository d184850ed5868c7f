"""TorchvisionMixup: v2.MixUp's call shapes, without torchvision and, where it imports,
inside a torchvision.transforms.v2 pipeline beside v2.MixUp itself."""

import subprocess
import sys

import pytest
import torch

import kmixup
from kmixup import TorchvisionMixup
from kmixup import functional as F

NUM_CLASSES = 5


def gen(seed):
    return torch.Generator().manual_seed(seed)


def batch(n=6, seed=0):
    g = gen(seed)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)


def check_mixed(mixer, images, labels, mixed, target):
    """mixed/target are kernel_mix of the recorded draw, soft labels summing to 1."""
    perm, lam = mixer.mixer.last_perm, mixer.mixer.last_lam
    expected, coeff = F.kernel_mix(images, perm, lam)
    assert torch.equal(mixed, expected) and type(mixed) is torch.Tensor
    soft = labels if labels.dim() == 2 else torch.nn.functional.one_hot(labels, NUM_CLASSES)
    soft = soft.float()
    torch.testing.assert_close(target, coeff[:, None] * soft + (1 - coeff[:, None]) * soft[perm])
    torch.testing.assert_close(target.sum(1), torch.ones(len(labels)))


def test_two_arguments_a_tuple_and_a_dict():
    images, labels = batch()
    mixer = TorchvisionMixup(num_classes=NUM_CLASSES, generator=gen(1))
    mixed, target = mixer(images, labels)
    check_mixed(mixer, images, labels, mixed, target)
    out = mixer((images, labels))
    assert isinstance(out, tuple) and len(out) == 2
    check_mixed(mixer, images, labels, *out)
    index = torch.arange(6)
    out = mixer({"image": images, "labels": labels, "index": index})
    assert list(out) == ["image", "labels", "index"] and out["index"] is index
    check_mixed(mixer, images, labels, out["image"], out["labels"])
    assert mixer.mixer.last_lam.shape == ()  # one lam per batch, as v2.MixUp


def test_one_hot_and_probability_labels_and_a_labels_getter():
    images, labels = batch(seed=2)
    one_hot = torch.nn.functional.one_hot(labels, NUM_CLASSES)  # int64, as v2 accepts
    mixer = TorchvisionMixup(generator=gen(3))  # num_classes not needed for [B, C]
    check_mixed(mixer, images, one_hot, *mixer(images, one_hot))
    probs = torch.softmax(torch.randn(6, NUM_CLASSES, generator=gen(4)), 1)
    check_mixed(mixer, images, probs, *mixer(images, probs))
    getter = TorchvisionMixup(num_classes=NUM_CLASSES, labels_getter=lambda s: s["y"])
    out = getter({"x": images, "y": labels})
    check_mixed(getter, images, labels, out["x"], out["y"])


def test_index_targets_and_sk_settings():
    images, labels = batch(seed=5)
    mixer = TorchvisionMixup(num_classes=NUM_CLASSES, mode="elem", tau_std=0.5,
                             dense_target=False, generator=gen(6))
    mixed, (target, perm, coeff) = mixer(images, labels)
    assert target is labels and perm is mixer.mixer.last_perm and coeff.shape == (6,)
    expected, expected_coeff = F.kernel_mix(images, perm, mixer.mixer.last_lam, tau_std=0.5)
    assert torch.equal(mixed, expected) and torch.equal(coeff, expected_coeff)
    assert "tau_std=0.5" in repr(mixer)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, y: m(x, y.float()[:, None, None]), "labels must be class indices"),
        (lambda m, x, y: TorchvisionMixup()(x, y), "num_classes"),
        (lambda m, x, y: m(x, torch.zeros(6, 3)), "num_classes = 5"),
        (lambda m, x, y: m(x[0], y), "4 dims"),
        (lambda m, x, y: m(x[:4], y), "batch size 6"),
        (lambda m, x, y: m({"image": x}), "labels"),
        (lambda m, x, y: m(x, [0] * 6), "tensor"),
    ],
)
def test_bad_input_is_named(call, message):
    images, labels = batch()
    with pytest.raises(ValueError, match=message):
        call(TorchvisionMixup(num_classes=NUM_CLASSES), images, labels)


def test_bad_construction():
    with pytest.raises(ValueError, match="labels_getter"):
        TorchvisionMixup(labels_getter="labels")
    with pytest.raises(ValueError, match="alpha"):
        TorchvisionMixup(alpha=0)


def test_imports_and_works_without_torchvision():
    # A fresh interpreter in which importing torchvision fails.
    code = (
        "import sys; sys.modules['torchvision'] = None\n"
        "import torch, kmixup\n"
        "x, y = torch.rand(4, 3, 5, 5), torch.tensor([0, 1, 2, 1])\n"
        "mixed, target = kmixup.TorchvisionMixup(num_classes=3)(x, y)\n"
        "assert mixed.shape == x.shape and target.shape == (4, 3)\n"
        "assert 'torchvision.tv_tensors' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- with torchvision


def import_v2():
    try:
        from torchvision import tv_tensors
        from torchvision.transforms import v2
    except Exception as err:  # torchvision absent, or built for another torch
        pytest.skip(f"torchvision does not import here: {type(err).__name__}: {err}"[:300])
    return v2, tv_tensors


def test_tv_tensors_pass_through_as_such_like_v2_mixup():
    v2, tv_tensors = import_v2()
    images, labels = batch(seed=7)
    video = tv_tensors.Video(torch.rand(6, 2, 3, 4, 4, generator=gen(8)))
    sample = {"image": tv_tensors.Image(images), "video": video, "labels": labels,
              "extra": torch.ones(6)}
    ours = TorchvisionMixup(num_classes=NUM_CLASSES, generator=gen(9))(sample)
    theirs = v2.MixUp(num_classes=NUM_CLASSES)(sample)
    assert list(ours) == list(theirs)
    for key in ours:
        assert type(ours[key]) is type(theirs[key]), key
        assert ours[key].shape == theirs[key].shape and ours[key].dtype == theirs[key].dtype
    assert torch.equal(ours["extra"], sample["extra"])
    mixer = TorchvisionMixup(num_classes=NUM_CLASSES, generator=gen(9))
    ours = mixer(sample)
    perm, coeff = mixer.mixer.last_perm, mixer.mixer.last_coeff
    check_mixed(mixer, images, labels, ours["image"].as_subclass(torch.Tensor), ours["labels"])
    # The video follows the image's coefficients.
    assert torch.equal(ours["video"].as_subclass(torch.Tensor),
                       F.interpolate(video.as_subclass(torch.Tensor), perm, coeff))


def test_inside_a_v2_pipeline_on_batches_from_a_loader():
    v2, tv_tensors = import_v2()
    mixer = TorchvisionMixup(num_classes=NUM_CLASSES, generator=gen(10))
    pipeline = v2.Compose([v2.RandomChoice([v2.CutMix(num_classes=NUM_CLASSES), mixer])])
    images, labels = batch(seed=11)
    for _ in range(4):
        out_images, out_labels = pipeline(tv_tensors.Image(images), labels)
        assert type(out_images) is tv_tensors.Image and out_images.shape == images.shape
        assert out_labels.shape == (6, NUM_CLASSES)
        torch.testing.assert_close(out_labels.sum(1), torch.ones(6))
    reference = v2.MixUp(num_classes=NUM_CLASSES)
    for call in (lambda m: m(images, labels), lambda m: m((images, labels))):
        ours, theirs = call(mixer), call(reference)
        assert type(ours) is type(theirs) and len(ours) == len(theirs) == 2
        assert [t.shape for t in ours] == [t.shape for t in theirs]
    assert isinstance(kmixup.TorchvisionMixup(num_classes=2), torch.nn.Module)
