"""Losses on mixed batches that take the integer class targets, not dense soft targets.

A mixed target ``t = c * s(y) + (1 - c) * s(y[perm])`` (``s``: one-hot with label
smoothing, what :func:`kmixup.functional.mix_targets` builds) enters cross-entropy
linearly, so ``CE(logits, t) = c * CE(logits, y) + (1 - c) * CE(logits, y[perm])``: the
loss needs the class indices, the pairing and the coefficients, never the ``[B, C]``
target tensor.
"""

from __future__ import annotations

from numbers import Integral

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _checks as C

__all__ = ["mix_cross_entropy"]

_REDUCTIONS = ("none", "mean", "sum")


def mix_cross_entropy(
    logits: Tensor,
    target: Tensor,
    perm: Tensor,
    coeff: Tensor,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    validate: bool | None = None,
) -> Tensor:
    """Cross-entropy against mixed targets, from integer class indices.

    ``loss[i] = coeff[i] * CE(logits[i], target[i]) + (1 - coeff[i]) *
    CE(logits[i], target[perm[i]])``, with ``CE`` torch's
    :func:`~torch.nn.functional.cross_entropy` for class indices (with ``label_smoothing``,
    ``weight`` and ``ignore_index``, as torch defines them). Without ``weight`` and
    ignored positions, this is the soft-target cross-entropy against the dense mixed
    targets of :func:`kmixup.functional.mix_targets` (same ``label_smoothing``), for
    every reduction, but no ``[B, C]`` target is built: the logits' log-softmax is the
    only tensor of their size, as with integer-target cross-entropy.

    Segmentation (dense targets): ``logits`` ``[B, C, *spatial]`` and ``target``
    ``[B, *spatial]``; the partner of sample ``i`` is the whole map ``target[perm[i]]``,
    mixed with the sample's one coefficient (the input images having been mixed by
    ``coeff[i]`` too), so this equals the soft-target cross-entropy against mixed one-hot
    maps.

    Typical use, with what the mixer drew::

        mixer = kmixup.KernelMixup(num_classes=C)
        x_mix, _ = mixer(x, y)
        loss = kmixup.mix_cross_entropy(model(x_mix), y, mixer.last_perm, mixer.last_coeff)

    Args:
        logits: Floating ``[B, C]`` or ``[B, C, *spatial]``. float16/bfloat16 logits are
            taken to float32 by the log-softmax (as ``cross_entropy`` under autocast).
        target: Integer class indices ``[B]`` or ``[B, *spatial]``, in ``[0, C)`` or
            equal to ``ignore_index``.
        perm: int64/int32 ``[B]``: the partner of each sample (the mixer's
            ``last_perm``).
        coeff: Floating, 0-d or ``[B]``: the weight of ``target[i]`` (the mixer's
            ``last_coeff``, the input coefficients).
        label_smoothing: In [0, 1): each target is ``(1 - eps)`` one-hot plus
            ``eps / C`` everywhere, as in torch's ``cross_entropy`` and kmixup's
            ``mix_targets``.
        reduction: ``"none"`` (shape ``[B, *spatial]``), ``"sum"`` or ``"mean"``. The mean
            divides by the total target weight ``sum(coeff * w[target] + (1 - coeff) *
            w[target[perm]])`` over the positions that are not ignored (``w = 1`` without
            ``weight``), torch's convention for class indices: it is the number of
            positions (``B * prod(spatial)``, the soft-target mean) when nothing is
            ignored and ``weight`` is None, and ``coeff = 1`` gives exactly
            ``F.cross_entropy(logits, target, ...)``. NaN when everything is ignored, as
            in torch.
        weight: Optional floating ``[C]`` class weights (keyword).
        ignore_index: A class index that contributes nothing (keyword); a position of
            the partner's map equal to it contributes nothing to that side.
        validate: Check values that need reading data: ``perm`` in ``[0, B)``, ``coeff``
            in [0, 1], class indices in range. ``None``: only for CPU tensors and not
            while ``torch.compile`` traces (no device sync).

    Returns:
        The loss: 0-d, or ``[B, *spatial]`` for ``reduction="none"``; float32 for
        float16/bfloat16 logits, else the logits' dtype. Differentiable in ``logits``
        (and in ``coeff`` and ``weight`` if they require grad).

    Raises:
        TypeError: a non-floating ``logits``/``coeff``/``weight``, non-integer ``target``
            or ``perm``, or non-integer ``ignore_index``.
        ValueError: a shape or device mismatch, unknown ``reduction``, bad
            ``label_smoothing``, or (when validating) ``coeff`` outside [0, 1].
        IndexError: (when validating) a ``perm`` value outside ``[0, B)`` or a class
            index outside ``[0, C)`` other than ``ignore_index``.
    """
    _check(logits, target, perm, coeff, label_smoothing, reduction, weight, ignore_index)
    batch, classes = logits.shape[:2]
    if C.should_validate(validate, logits, target, perm, coeff):
        _check_values(target, perm, coeff, classes, ignore_index)
    low_precision = logits.dtype in (torch.float16, torch.bfloat16)
    log_p = F.log_softmax(logits, dim=1, dtype=torch.float32 if low_precision else None)
    target = target.long()
    partner = target.index_select(0, perm.long())
    # coeff [B] against per-position losses [B, *spatial]
    c = coeff.to(log_p.dtype).reshape(-1, *([1] * (target.dim() - 1)))
    nll = F.nll_loss(log_p, target, weight, ignore_index=ignore_index, reduction="none")
    nll_partner = F.nll_loss(log_p, partner, weight, ignore_index=ignore_index, reduction="none")
    loss = c * nll + (1 - c) * nll_partner
    kept, kept_partner = target != ignore_index, partner != ignore_index
    if label_smoothing:
        # The uniform part of both smoothed targets: the same for both sides, where kept.
        log_p_weighted = log_p if weight is None else log_p * _per_class(weight, log_p)
        uniform = -log_p_weighted.sum(dim=1) / classes
        share = c * kept + (1 - c) * kept_partner
        loss = (1 - label_smoothing) * loss + label_smoothing * uniform * share
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    mass = c * _target_weight(target, kept, weight) + (1 - c) * _target_weight(
        partner, kept_partner, weight
    )
    return loss.sum() / mass.sum()


def _per_class(weight: Tensor, log_p: Tensor) -> Tensor:
    """``weight`` [C] shaped to broadcast over ``log_p`` [B, C, *spatial]."""
    return weight.to(log_p.dtype).reshape(-1, *([1] * (log_p.dim() - 2)))


def _target_weight(target: Tensor, kept: Tensor, weight: Tensor | None) -> Tensor:
    """Per position: the class weight of its target, 0 where ignored."""
    if weight is None:
        return kept
    return weight[torch.where(kept, target, 0)] * kept


def _check(logits, target, perm, coeff, label_smoothing, reduction, weight, ignore_index):
    C.check_floating(logits, "logits")
    if logits.dim() < 2:
        raise ValueError(
            f"logits must have shape [B, C] or [B, C, *spatial], got {list(logits.shape)}"
        )
    C.check_tensor(target, "target")
    if not C.is_integer_tensor(target):
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    expected = [logits.shape[0], *logits.shape[2:]]
    if list(target.shape) != expected:
        raise ValueError(
            f"target must have shape {expected} for logits of shape {list(logits.shape)}, "
            f"got {list(target.shape)}"
        )
    C.check_same_device(target, "target", logits, "logits")
    C.check_perm(perm, logits.shape[0], logits, "logits")
    C.check_coefficient(coeff, "coeff", logits.shape[0], logits, "logits")
    C.check_label_smoothing(label_smoothing)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if weight is not None:
        C.check_floating(weight, "weight")
        if weight.shape != (logits.shape[1],):
            raise ValueError(
                f"weight must have shape [C={logits.shape[1]}], got {list(weight.shape)}"
            )
        C.check_same_device(weight, "weight", logits, "logits")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, Integral):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")


def _check_values(target, perm, coeff, classes, ignore_index):
    if perm.numel() and not bool(((perm >= 0) & (perm < perm.shape[0])).all()):
        raise IndexError(f"perm values must lie in [0, B={perm.shape[0]})")
    C.check_unit_interval_values(coeff, "coeff")
    in_range = (target >= 0) & (target < classes) | (target == ignore_index)
    if not bool(in_range.all()):
        raise IndexError(
            f"target: class indices must lie in [0, C={classes}) or equal "
            f"ignore_index={ignore_index}"
        )
