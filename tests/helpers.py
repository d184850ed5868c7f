"""Random batches shared by the op tests (CPU and CUDA)."""

import torch


def gen(seed):
    return torch.Generator().manual_seed(seed)


def batch(shape, dtype=torch.float32, seed=0, device="cpu"):
    """x, perm, lam (float64 [B]) drawn on the CPU from `seed`, then moved to `device`."""
    x = torch.randn(shape, generator=gen(seed), dtype=torch.float64).to(dtype)
    perm = torch.randperm(shape[0], generator=gen(seed + 1))
    lam = torch.rand(shape[0], generator=gen(seed + 2), dtype=torch.float64)
    return x.to(device), perm.to(device), lam.to(device)
