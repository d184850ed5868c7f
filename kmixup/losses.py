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
    every reduction, but no ``[B, C]`` target is built: between forward and backward it
    keeps the logits and nothing else of their size (the backward recomputes the
    softmax), as much as torch's integer-target cross-entropy, which keeps the
    log-probabilities, and half what the dense path keeps.

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
        weight: Optional floating ``[C]`` class weights (keyword), not differentiated
            (one that requires grad is refused, as by torch's ``cross_entropy``).
        ignore_index: A class index that contributes nothing (keyword); a position of
            the partner's map equal to it contributes nothing to that side.
        validate: Check values that need reading data: ``perm`` in ``[0, B)``, ``coeff``
            in [0, 1], class indices in range. ``None``: only for CPU tensors and not
            while ``torch.compile`` traces (no device sync).

    Returns:
        The loss: 0-d, or ``[B, *spatial]`` for ``reduction="none"``; float32 for
        float16/bfloat16 logits, else the logits' dtype. Differentiable in ``logits``,
        twice over (``coeff``, ``weight`` and the targets get no gradient).

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
    dtype = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
    target = target.long()
    partner = target.index_select(0, perm.long())
    kept, kept_partner = target != ignore_index, partner != ignore_index
    # Per position, both sides stacked on dim 1: [B, 2, *spatial].
    c = coeff.detach().to(dtype).reshape(-1, *([1] * (target.dim() - 1)))
    sides = torch.stack([c, 1 - c], 1)
    index = torch.stack([torch.where(kept, target, 0), torch.where(kept_partner, partner, 0)], 1)
    kept_sides = torch.stack([kept, kept_partner], 1)
    class_weight = None if weight is None else weight.detach().to(dtype)
    side_weight = sides * (kept_sides if weight is None else class_weight[index] * kept_sides)
    smooth = label_smoothing / classes * (sides * kept_sides).sum(1)
    total_weight = classes if weight is None else class_weight.sum()
    mass = (1 - label_smoothing) * side_weight.sum(1) + smooth * total_weight
    loss = _MixedCrossEntropy.apply(logits, index, (1 - label_smoothing) * side_weight, mass,
                                    smooth if label_smoothing else None, class_weight)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / side_weight.sum()


class _MixedCrossEntropy(torch.autograd.Function):
    """Per position: ``-sum_k pick[k] * log_p[index[k]] - smooth * sum_c w_c log_p[c]``,
    ``log_p`` the log-softmax of the logits over classes (dim 1) in float32 or float64;
    ``mass = sum_k pick[k] + smooth * sum_c w_c`` is the total target weight.

    Of the logits' size only the logits are kept for the backward, which recomputes the
    softmax: ``grad * (mass * softmax - scatter(pick) - smooth * w)``, in place in one
    tensor, or out of place when the backward itself is differentiated
    (``create_graph=True``).
    """

    @staticmethod
    def forward(ctx, logits, index, pick, mass, smooth, weight):
        # Not saved: freed on return (the backward recomputes the softmax).
        log_p = torch.log_softmax(logits, dim=1, dtype=mass.dtype)
        loss = -(pick * log_p.gather(1, index)).sum(1)
        if smooth is not None:
            weighted = log_p.sum(1) if weight is None else torch.einsum("bc...,c->b...", log_p,
                                                                         weight)
            loss = loss - smooth * weighted
        ctx.save_for_backward(logits, index, pick, mass, smooth, weight)
        return loss

    @staticmethod
    def backward(ctx, grad):
        logits, index, pick, mass, smooth, weight = ctx.saved_tensors
        inplace = not torch.is_grad_enabled()
        grad_z = torch.softmax(logits.to(mass.dtype), dim=1)
        scale, picked = (grad * mass).unsqueeze(1), -grad.unsqueeze(1) * pick
        grad_z = grad_z.mul_(scale) if inplace else grad_z * scale
        grad_z = (grad_z.scatter_add_ if inplace else grad_z.scatter_add)(1, index, picked)
        if smooth is not None:
            per_class = mass.new_ones(1) if weight is None else weight
            per_class = per_class.reshape(-1, *[1] * (grad.dim() - 1))
            uniform = (grad * smooth).unsqueeze(1)
            grad_z = (grad_z.addcmul_ if inplace else grad_z.addcmul)(uniform, per_class, value=-1)
        return grad_z.to(logits.dtype), None, None, None, None, None


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
        if weight.requires_grad and torch.is_grad_enabled():
            # The backward gives weight no gradient: an error, as from torch's
            # cross_entropy with class indices, rather than a silent zero.
            raise ValueError("weight requires grad, but the loss is not differentiable in it")
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
