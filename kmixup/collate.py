"""A DataLoader ``collate_fn`` that mixes each batch inside the worker processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.data import default_collate, get_worker_info

from .transforms import KernelMixup

__all__ = ["MixupCollate"]


class MixupCollate:
    """Collate a batch and mix it, on the CPU, in the DataLoader's worker processes.

    For pipelines that mix before the host-to-device transfer: the mixing (the compiled
    CPU kernel behind :class:`kmixup.KernelMixup`, where built) runs in each worker, next
    to the data loading, and the main process receives batches already mixed, so
    ``pin_memory=True`` and ``.to(device, non_blocking=True)`` work unchanged. Workers
    run torch with one thread, so several workers mix in parallel without
    oversubscribing the CPU. Dataset samples are CPU tensors, so ``x`` is mixed on the
    CPU; with ``num_workers=0`` the mixing runs in the main process instead. With the
    default ``collate_fn`` the stacked batch is fresh, so a :class:`kmixup.KernelMixup`
    mixes it in place (no second batch-sized allocation).

    uint8 images (timm's prefetching loader, which normalises on the GPU) are mixed as
    timm's ``FastCollateMixup`` mixes them: in float32, rounded back to uint8. So
    ``FastCollateMixup(**mixup_args)`` becomes
    ``MixupCollate(kmixup.TimmMixup(**mixup_args))``; samples may be numpy arrays, as
    timm's transforms leave them. A mixer with ``dense_target=False`` makes the batch
    ``(mixed_x, (target, perm, coeff), *rest)``.

    Example::

        collate = kmixup.MixupCollate(kmixup.KernelMixup(num_classes=10))
        loader = DataLoader(train_set, batch_size=128, shuffle=True, num_workers=8,
                            pin_memory=True, collate_fn=collate)
        for x_mix, y_mix in loader:
            x_mix, y_mix = x_mix.to("cuda", non_blocking=True), y_mix.to("cuda")

    Randomness: the DataLoader seeds torch in each worker with ``base_seed + worker_id``,
    ``base_seed`` drawn afresh for every iteration over the loader from its
    ``generator`` (or torch's default generator), so a mixer drawing from torch's
    default generator pairs differently in each worker and each epoch, reproducibly
    under ``torch.manual_seed`` or the loader's ``generator``. A mixer with an explicit
    ``generator`` would instead reach every worker as a copy in the same state: all
    workers would draw the same pairings, and again every epoch. So, inside a worker,
    that copy is reseeded once from the worker's seed before its first batch, which
    makes it behave like the default generator; its own seed then matters only with
    ``num_workers=0``, where the mixer is used as it is.

    Args:
        mixer: A :class:`kmixup.KernelMixup`, :class:`kmixup.Mixup` or
            :class:`kmixup.TimmMixup`, or any callable
            ``mixer(x, target) -> (mixed_x, mixed_target)``.
        collate_fn: Turns a list of samples into a batch; default
            :func:`torch.utils.data.default_collate`.
    """

    def __init__(
        self,
        mixer: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if not callable(mixer):
            raise TypeError(f"mixer must be callable, got {type(mixer).__name__}")
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn must be callable, got {type(collate_fn).__name__}")
        self.mixer = mixer
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self._reseeded_in_worker = False

    def __repr__(self) -> str:
        return f"MixupCollate(mixer={self.mixer!r}, collate_fn={self.collate_fn!r})"

    def _reseed_in_worker(self) -> None:
        worker_info = get_worker_info()
        if worker_info is None or self._reseeded_in_worker:
            return
        # This object is the worker's own copy, so the main process's mixer is untouched.
        generator = getattr(self.mixer, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(worker_info.seed)
        self._reseeded_in_worker = True

    def __call__(self, samples: list[Any]) -> tuple[Any, ...]:
        """Collate ``samples`` and mix the batch.

        Args:
            samples: Dataset samples ``(x, target)`` or ``(x, target, *rest)``.

        Returns:
            ``(mixed_x, mixed_target, *rest)``: extra fields (e.g. a dataset index) pass
            through unchanged.

        Raises:
            ValueError: the collated batch is not a tuple or list whose first two fields
                are tensors ``x`` and ``target``.
        """
        if not isinstance(samples, Sequence) or isinstance(samples, (str, bytes)):
            raise TypeError(f"samples must be a list of dataset samples, got {type(samples)}")
        if len(samples) == 0:
            raise ValueError("samples is empty: there is no batch to collate")
        try:
            batch = self.collate_fn(samples)
        except (RuntimeError, TypeError, ValueError, IndexError) as err:
            raise type(err)(f"samples could not be collated: {err}") from err
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(
                "MixupCollate expects samples (x, target) or (x, target, *rest); the "
                f"collated batch is a {type(batch).__name__}"
                + (f" of {len(batch)} field(s)" if isinstance(batch, (tuple, list)) else "")
            )
        x, target, *rest = batch
        if not isinstance(x, Tensor) or not isinstance(target, Tensor):
            raise ValueError(
                "MixupCollate expects x and target to collate to tensors, got "
                f"{type(x).__name__} and {type(target).__name__}"
            )
        self._reseed_in_worker()
        as_bytes = x.dtype == torch.uint8
        fresh = as_bytes or self.collate_fn is default_collate
        if as_bytes:
            x = x.float()
        if isinstance(self.mixer, KernelMixup) and fresh:
            # The batch is a fresh tensor (stacked by default_collate, or the float copy
            # of uint8 images): nothing else sees it, so mix it in place rather than
            # allocate a second batch.
            mixed_x, mixed_target = self.mixer(x, target, inplace=True)
        else:
            mixed_x, mixed_target = self.mixer(x, target)
        if as_bytes:
            mixed_x = mixed_x.round_().to(torch.uint8)
        return (mixed_x, mixed_target, *rest)
