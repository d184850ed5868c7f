"""Global-batch distance normalisation under torch.distributed: two CPU processes on gloo.

Each rank mixes its own batch; the coefficients must be those of the single-process
computation (the independent numpy/scipy oracle) whose distance mean is taken over the
concatenation of both ranks' pair distances, while pairing stays local.
"""

import time

import numpy as np
import oracle
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import kmixup
from kmixup import functional as F

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="needs torch.distributed with gloo",
)

WORLD_SIZE = 2
BATCH = 6
TIMEOUT_S = 120


def rank_batch(rank):
    """A batch per rank at very different scales, so local and global means differ.
    Rank 1 has a NaN sample, which must stay out of the global mean too."""
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(BATCH, 3, 4, generator=g, dtype=torch.float64) * (1.0 + rank)
    if rank == 1:
        x[2, 0, 0] = float("nan")
    perm = torch.randperm(BATCH, generator=g)
    lam = torch.rand(BATCH, generator=g, dtype=torch.float64)
    y = torch.randn(BATCH, generator=g, dtype=torch.float64) * (1.0 + rank)
    return x, perm, lam, y


def _worker(rank, store_path, out_dir):
    dist.init_process_group(
        "gloo", init_method=f"file://{store_path}", rank=rank, world_size=WORLD_SIZE
    )
    try:
        x, perm, lam, y = rank_batch(rank)
        results = {}
        for warping in ("beta_cdf", "inverse_beta_cdf"):
            results[warping] = F.kernel_mix(
                x, perm, lam, tau_std=1.0, warping=warping, process_group=dist.group.WORLD
            )
        # The transform: global_mean=True uses the world group for inputs and labels.
        mixer = kmixup.KernelMixup(
            tau_max=0.5, tau_std=0.5, target_tau_max=2.0, target_tau_std=1.0,
            global_mean=True, generator=torch.Generator().manual_seed(10 + rank),
        )
        mixed, mixed_y = mixer(x, y)
        results["mixer"] = (mixed, mixed_y, mixer.last_perm, mixer.last_lam,
                            mixer.last_coeff, mixer.last_target_coeff)
        # A last batch of one sample on rank 1 (no drop_last): the rank still takes part in
        # the all-reduce, or rank 0 would wait forever.
        n = BATCH if rank == 0 else 1
        small_perm = perm if rank == 0 else torch.tensor([0])
        results["small"] = F.kernel_mix(
            x[:n], small_perm, lam[:n], tau_std=1.0, process_group=dist.group.WORLD
        )
        torch.save(results, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    context = mp.start_processes(
        _worker, args=(str(tmp / "store"), str(tmp)), nprocs=WORLD_SIZE, join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD_SIZE} gloo processes did not finish in {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD_SIZE)]


def _global_mean(features_and_perms):
    d = np.concatenate([oracle.sq_dist(f, p) for f, p in features_and_perms])
    return oracle.finite_mean(d)


@pytest.mark.parametrize("warping", ["beta_cdf", "inverse_beta_cdf"])
def test_functional_kernel_mix_uses_the_global_mean(rank_results, warping):
    batches = [rank_batch(r) for r in range(WORLD_SIZE)]
    mean = _global_mean([(x.numpy(), perm.numpy()) for x, perm, _, _ in batches])
    for rank, (x, perm, lam, _) in enumerate(batches):
        mixed, coeff = rank_results[rank][warping]
        expected = oracle.coefficients(x.numpy(), perm.numpy(), lam.numpy(), tau_std=1.0,
                                       warping=warping, mean=mean)
        np.testing.assert_allclose(coeff.numpy(), expected, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            mixed.numpy(), oracle.interpolate(x.numpy(), perm.numpy(), expected), rtol=1e-9,
            atol=1e-12,
        )
        # The check has teeth: the local-mean coefficients differ.
        local = oracle.coefficients(x.numpy(), perm.numpy(), lam.numpy(), tau_std=1.0,
                                    warping=warping)
        assert np.abs(local - expected).max() > 1e-2
    assert rank_results[1][warping][1][2] == 1.0  # the NaN pair stays unmixed


def test_kernel_mixup_global_mean_for_inputs_and_labels(rank_results):
    batches = [rank_batch(r) for r in range(WORLD_SIZE)]
    outs = [rank_results[r]["mixer"] for r in range(WORLD_SIZE)]
    x_mean = _global_mean([(b[0].numpy(), o[2].numpy()) for b, o in zip(batches, outs)])
    y_mean = _global_mean([(b[3].numpy(), o[2].numpy()) for b, o in zip(batches, outs)])
    for (x, _, _, y), (mixed, mixed_y, perm, lam, coeff, target_coeff) in zip(batches, outs):
        p, lam = perm.numpy(), lam.numpy()
        k = oracle.coefficients(x.numpy(), p, lam, 0.5, 0.5, mean=x_mean)
        k_y = oracle.coefficients(y.numpy(), p, lam, 2.0, 1.0, mean=y_mean)
        np.testing.assert_allclose(coeff.numpy(), k, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(mixed.numpy(), oracle.interpolate(x.numpy(), p, k),
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(target_coeff.numpy(), k_y, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(mixed_y.numpy(), oracle.interpolate(y.numpy(), p, k_y),
                                   rtol=1e-9, atol=1e-12)


def test_without_an_initialised_group_global_mean_is_the_local_mean():
    x, perm, lam, y = rank_batch(0)
    assert not dist.is_initialized()
    mixer = kmixup.KernelMixup(global_mean=True, generator=torch.Generator().manual_seed(0))
    mixer(x, y)
    expected = oracle.coefficients(x.numpy(), mixer.last_perm.numpy(), mixer.last_lam.numpy())
    np.testing.assert_allclose(mixer.last_coeff.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_a_rank_with_a_batch_of_one_joins_the_collective_and_stays_unmixed(rank_results):
    (x0, perm0, lam0, _), (x1, _, _, _) = rank_batch(0), rank_batch(1)
    mixed, coeff = rank_results[1]["small"]
    assert coeff.tolist() == [1.0] and torch.equal(mixed, x1[:1])
    # Rank 1 contributes nothing to the mean: rank 0's coefficients are its local ones.
    expected = oracle.coefficients(x0.numpy(), perm0.numpy(), lam0.numpy(), tau_std=1.0)
    np.testing.assert_allclose(rank_results[0]["small"][1].numpy(), expected, rtol=1e-9)
