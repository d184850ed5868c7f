"""Per-sample embeddings kept from the training forward pass, for SK Mixup's similarity."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _checks as C

__all__ = ["FeatureBank"]


class FeatureBank:
    """Embeddings for SK Mixup's similarity without an extra forward pass.

    The authors measure similarity on the current model's embeddings of the clean batch,
    which costs an extra no-grad forward pass per step. The bank instead keeps, for each
    training sample (keyed by its dataset index), the embedding the training forward
    itself produced the last time the sample was visited, and supplies it as ``feats``
    on the next visit. Two approximations, both bounded: the entry comes from a model up
    to one epoch older, and it is the embedding of the mixed row the sample anchored
    rather than of the clean sample. With ``KernelMixup(dominant_anchor=True)`` the
    anchor has weight >= 0.5 in that row, so the entry is closer to the sample than to
    its partner. Which trade-off wins is measured in the README's experiments.

    Example::

        bank = kmixup.FeatureBank(len(train_set), dim=512, device="cuda")
        mixer = kmixup.KernelMixup(num_classes=10, dominant_anchor=True)
        for x, y, index in loader:  # the dataset also returns each sample's index
            x_mix, y_mix = mixer(x, y, feats=bank.lookup(index))
            emb = model.features(x_mix)
            loss = torch.nn.functional.cross_entropy(model.head(emb), y_mix)
            bank.update(index, emb)

    Until every sample of a batch has an entry (the first epoch), :meth:`lookup` returns
    ``None`` and the mixer falls back to input-space similarity for that batch. Entries
    never written stay missing, so the fallback persists for a sample that is never
    visited. Memory: ``num_samples * dim`` elements of ``dtype`` on ``device`` (a
    bfloat16 or CPU bank keeps large datasets affordable). Keep ``index`` on the CPU, as
    a DataLoader yields it: the bank tracks which entries exist on the host so that
    :meth:`lookup` decides without reading device memory; an index on an accelerator
    costs one copy to the host (a sync) per call.

    Args:
        num_samples: Number of training samples (indices run over ``[0, num_samples)``).
        dim: Embedding size; embeddings are flattened to ``[B, dim]``.
        device: Where the embeddings are stored (default: the CPU).
        dtype: Floating dtype of the stored embeddings.

    Raises:
        TypeError: ``num_samples`` or ``dim`` not an integer, or ``dtype`` not floating.
        ValueError: ``num_samples`` or ``dim`` below 1.
    """

    def __init__(
        self,
        num_samples: int,
        dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        C.check_positive_int(num_samples, "num_samples")
        C.check_positive_int(dim, "dim")
        if dtype not in C.FLOAT_DTYPES:
            raise TypeError(
                f"dtype must be torch.float32, float64, float16 or bfloat16, got {dtype!r}"
            )
        try:
            self.feats = torch.zeros(int(num_samples), int(dim), dtype=dtype, device=device)
        except (RuntimeError, AssertionError, TypeError) as err:  # unknown or unavailable
            raise ValueError(f"device {device!r} cannot hold the bank: {err}") from None
        self.filled = torch.zeros(int(num_samples), dtype=torch.bool)

    def __len__(self) -> int:
        return self.feats.shape[0]

    def _host_index(self, index: Tensor) -> Tensor:
        C.check_tensor(index, "index")
        if not C.is_integer_tensor(index):
            raise TypeError(
                f"index must be an integer tensor of dataset indices, got {index.dtype}"
            )
        if index.dim() != 1:
            raise ValueError(f"index must be 1-D [B], got shape {list(index.shape)}")
        host = index.cpu().long()
        if host.numel() and (host.min() < 0 or host.max() >= len(self)):
            raise ValueError(f"index must lie in [0, num_samples={len(self)})")
        return host

    def lookup(self, index: Tensor) -> Tensor | None:
        """The stored embeddings ``[B, dim]`` of a batch, or ``None`` if any is missing.

        Args:
            index: Dataset indices ``[B]`` of the batch (integer, preferably on the CPU).
        """
        host = self._host_index(index)
        if not bool(self.filled[host].all()):
            return None
        return self.feats[host.to(self.feats.device, non_blocking=True)]

    def update(self, index: Tensor, feats: Tensor) -> None:
        """Store (detached) embeddings for the samples ``index`` anchors.

        Args:
            index: Dataset indices ``[B]``; a repeated index keeps one of its rows.
            feats: Embeddings ``[B, ...]`` with ``dim`` elements per sample, any
                floating dtype and device (converted to the bank's).
        """
        host = self._host_index(index)
        C.check_floating(feats, "feats")
        if feats.dim() == 0 or feats.shape[0] != host.shape[0]:
            raise ValueError(f"feats must have batch size {host.shape[0]} (that of index)")
        per_sample = math.prod(feats.shape[1:])
        if per_sample != self.feats.shape[1]:
            raise ValueError(
                f"feats must have dim={self.feats.shape[1]} elements per sample, "
                f"got {per_sample}"
            )
        rows = feats.detach().reshape(host.shape[0], per_sample)
        self.feats[host.to(self.feats.device, non_blocking=True)] = rows.to(self.feats)
        self.filled[host] = True
