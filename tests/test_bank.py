"""FeatureBank and KernelMixup(dominant_anchor=True)."""

import pytest
import torch

import kmixup
from kmixup import functional as F


def test_lookup_is_none_until_every_sample_of_the_batch_has_an_entry():
    bank = kmixup.FeatureBank(10, 3)
    index = torch.tensor([1, 4, 7])
    assert bank.lookup(index) is None
    bank.update(index[:2], torch.ones(2, 3))
    assert bank.lookup(index) is None
    feats = torch.arange(9.0).reshape(3, 3)
    bank.update(index, feats)
    torch.testing.assert_close(bank.lookup(index), feats)
    torch.testing.assert_close(bank.lookup(torch.tensor([7, 1])), feats[[2, 0]])
    assert bank.lookup(torch.tensor([1, 2])) is None


def test_update_stores_detached_flattened_rows_in_the_bank_dtype():
    bank = kmixup.FeatureBank(4, 6, dtype=torch.bfloat16)
    emb = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    bank.update(torch.tensor([3, 0], dtype=torch.int32), emb * 2)
    got = bank.lookup(torch.tensor([0, 3]))
    assert got.dtype == torch.bfloat16 and not got.requires_grad
    torch.testing.assert_close(got, (emb.detach() * 2).reshape(2, 6)[[1, 0]].bfloat16())
    assert len(bank) == 4


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda b: b.lookup(torch.tensor([0, 10])), ValueError, "index must lie in"),
        (lambda b: b.lookup(torch.tensor([-1])), ValueError, "index must lie in"),
        (lambda b: b.lookup(torch.tensor([0.0])), TypeError, "index must be an integer"),
        (lambda b: b.lookup(torch.zeros(2, 2, dtype=torch.long)), ValueError, "index must be"),
        (lambda b: b.lookup([0, 1]), TypeError, "index"),
        (lambda b: b.update(torch.tensor([0, 1]), torch.ones(3, 4)), ValueError, "batch size 2"),
        (lambda b: b.update(torch.tensor([0, 1]), torch.ones(2, 5)), ValueError, "dim=4"),
        (lambda b: b.update(torch.tensor([0, 1]), torch.ones(2, 4, dtype=torch.long)),
         TypeError, "feats"),
    ],
)
def test_bad_calls_raise_named_errors(call, err, match):
    with pytest.raises(err, match=match):
        call(kmixup.FeatureBank(10, 4))


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"num_samples": 0, "dim": 3}, ValueError, "num_samples"),
        ({"num_samples": 5, "dim": 2.0}, TypeError, "dim"),
        ({"num_samples": 5, "dim": 3, "dtype": torch.int64}, TypeError, "dtype"),
        ({"num_samples": 5, "dim": 3, "dtype": torch.float8_e4m3fn}, TypeError, "dtype"),
    ],
)
def test_bad_construction_raises(kwargs, err, match):
    with pytest.raises(err, match=match):
        kmixup.FeatureBank(**kwargs)


@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf", "none"])
@pytest.mark.parametrize("mode", ["elem", "batch"])
def test_dominant_anchor_gives_each_sample_at_least_half_of_its_row(warping, mode):
    mixer = kmixup.KernelMixup(num_classes=3, warping=warping, mode=mode, dominant_anchor=True)
    plain = kmixup.KernelMixup(num_classes=3, warping=warping, mode=mode)
    x, y = torch.randn(64, 5), torch.randint(3, (64,))
    for _ in range(5):
        mixer(x, y)
        assert (mixer.last_lam >= 0.5).all() and (mixer.last_coeff >= 0.5).all()
    torch.manual_seed(0)
    _, lam = plain.sample(64, "cpu")
    torch.manual_seed(0)
    _, lam_dominant = mixer.sample(64, "cpu")
    torch.testing.assert_close(lam_dominant, torch.maximum(lam, 1 - lam))


def test_training_loop_uses_the_bank_from_the_second_epoch():
    torch.manual_seed(0)
    data, labels = torch.randn(12, 4), torch.randint(2, (12,))
    embed = torch.nn.Linear(4, 3)
    bank = kmixup.FeatureBank(12, 3)
    mixer = kmixup.KernelMixup(num_classes=2, dominant_anchor=True)
    for epoch in range(2):
        for index in torch.randperm(12).split(4):
            feats = bank.lookup(index)
            assert (feats is None) == (epoch == 0)
            x_mix, _ = mixer(data[index], labels[index], feats=feats)
            similarity_source = data[index] if feats is None else feats
            _, expected = F.kernel_mix(data[index], mixer.last_perm, mixer.last_lam,
                                       feats=similarity_source)
            torch.testing.assert_close(mixer.last_coeff, expected)
            emb = embed(x_mix)
            bank.update(index, emb)
            torch.testing.assert_close(bank.lookup(index), emb.detach())
