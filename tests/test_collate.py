"""MixupCollate: mixing inside DataLoader worker processes."""

import os

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info

import kmixup
from kmixup import KernelMixup
from kmixup.collate import MixupCollate

NUM_SAMPLES = 32
NUM_CLASSES = 5
BATCH = 8
SCALE = 2.0


class OneHotDataset(Dataset):
    """Sample i is ``(SCALE * e_i, i % NUM_CLASSES, i)``: every mixed row names its sources."""

    def __len__(self):
        return NUM_SAMPLES

    def __getitem__(self, i):
        x = torch.zeros(NUM_SAMPLES)
        x[i] = SCALE
        return x, i % NUM_CLASSES, i


class WorkerRecordingCollate:
    """Appends where the batch was mixed: the worker id, the CPU backend, the drawn lam."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, samples):
        mixed = self.collate(samples)
        worker_id = get_worker_info().id
        return (*mixed, worker_id, kmixup.backend_info()["cpu"], self.collate.mixer.last_lam)


def loader(mixer, num_workers=2, generator=None, context=None):
    return DataLoader(
        OneHotDataset(),
        batch_size=BATCH,
        num_workers=num_workers,
        collate_fn=WorkerRecordingCollate(MixupCollate(mixer)),
        generator=generator,
        multiprocessing_context=context,
    )


def one_hot(i):
    return torch.nn.functional.one_hot(torch.tensor(i), NUM_CLASSES).float()


def check_mixed_rows(x, y, index):
    """Each row is k*x[i] + (1-k)*x[j], i its own sample, j from its batch, k in [0, 1];
    its target the same mixture of the one-hot labels; partners distinct (a permutation)."""
    batch_indices = set(index.tolist())
    partners = []
    for row, target, i in zip(x, y, index.tolist()):
        support = set(row.nonzero().flatten().tolist())
        others = support - {i}
        assert others <= batch_indices and len(others) <= 1
        j = others.pop() if others else i
        k = row[i].item() / SCALE
        assert 0.0 <= k <= 1.0
        expected = torch.zeros(NUM_SAMPLES)
        expected[i] += k * SCALE
        expected[j] += (1 - k) * SCALE
        torch.testing.assert_close(row, expected)
        expected_target = k * one_hot(i % NUM_CLASSES) + (1 - k) * one_hot(j % NUM_CLASSES)
        torch.testing.assert_close(target, expected_target)
        if 0.0 < k < 1.0:
            partners.append(j)
    assert len(partners) == len(set(partners))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_mix_with_the_compiled_kernel_and_pass_the_index_through(context):
    worker_ids, backends = set(), set()
    batches = list(loader(KernelMixup(num_classes=NUM_CLASSES), context=context))
    assert len(batches) == NUM_SAMPLES // BATCH
    for b, (x, y, index, worker_id, backend, _) in enumerate(batches):
        torch.testing.assert_close(index, torch.arange(b * BATCH, (b + 1) * BATCH))
        check_mixed_rows(x, y, index)
        worker_ids.add(worker_id)
        backends.add(backend)
    assert worker_ids == {0, 1}
    for backend in backends:
        assert isinstance(backend, str)
        if os.environ.get("KMIXUP_EXPECT_COMPILED") == "cpu":
            assert backend.startswith("compiled")


def test_same_loader_seed_same_batches_different_seed_different():
    mixer = KernelMixup(num_classes=NUM_CLASSES)
    a, b, c = (
        list(loader(mixer, generator=torch.Generator().manual_seed(seed))) for seed in (0, 0, 1)
    )
    for batch_a, batch_b in zip(a, b):
        for field_a, field_b in zip(batch_a, batch_b):
            assert torch.equal(field_a, field_b) if torch.is_tensor(field_a) else field_a == field_b
    assert not torch.equal(a[0][0], c[0][0])


def test_explicit_generator_is_reseeded_per_worker_and_per_epoch():
    mixer = KernelMixup(num_classes=NUM_CLASSES, generator=torch.Generator().manual_seed(0))
    epochs = loader(mixer, generator=torch.Generator().manual_seed(0))
    first, second = list(epochs), list(epochs)
    # Batches 0 and 1 are each worker's first: unreseeded copies would draw the same lam.
    assert (first[0][3], first[1][3]) == (0, 1)
    assert not torch.equal(first[0][5], first[1][5])
    assert not torch.equal(first[0][5], second[0][5])
    for x, y, index, *_ in first:
        check_mixed_rows(x, y, index)


def test_explicit_generator_is_used_as_is_in_the_main_process():
    samples = [OneHotDataset()[i] for i in range(BATCH)]
    collate = MixupCollate(KernelMixup(num_classes=NUM_CLASSES, generator=torch.Generator()))
    collate.mixer.generator.manual_seed(7)
    x, y, index = collate(samples)
    reference = KernelMixup(num_classes=NUM_CLASSES, generator=torch.Generator().manual_seed(7))
    x_ref, y_ref, index_ref = default_collate(samples)
    expected_x, expected_y = reference(x_ref, y_ref)
    assert torch.equal(x, expected_x) and torch.equal(y, expected_y)
    assert torch.equal(index, index_ref)


@pytest.mark.parametrize(
    "samples, message",
    [
        ([torch.zeros(3), torch.ones(3)], "collated batch is a Tensor"),
        ([(torch.zeros(3),), (torch.ones(3),)], "list of 1 field"),
        ([(torch.zeros(3), "cat"), (torch.ones(3), "dog")], "got Tensor and tuple"),
    ],
)
def test_batch_that_is_not_x_and_target_raises(samples, message):
    collate = MixupCollate(KernelMixup(num_classes=NUM_CLASSES))
    with pytest.raises(ValueError, match=message):
        collate(samples)
