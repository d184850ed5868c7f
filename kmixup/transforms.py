"""Batch transforms shaped after timm's ``Mixup``: ``mixer(x, target) -> (x, target)``."""

from __future__ import annotations

import math
from numbers import Real

import torch
import torch.distributed as dist
from torch import Tensor

from . import _checks as C
from . import draws
from .functional import _mix_targets, kernel_mix, kernel_mix_

__all__ = ["KernelMixup", "Mixup", "TimmMixup", "paste_boxes"]

_MODES = ("elem", "batch")


class KernelMixup:
    """Similarity Kernel Mixup for a training loop (drop-in for timm's ``Mixup``).

    Each call draws a random pairing ``perm = randperm(B)`` and coefficients
    ``lam ~ Beta(alpha, alpha)`` (one per sample in ``mode="elem"``, one for the batch in
    ``mode="batch"``), warps them by pair similarity (:func:`kmixup.functional.kernel_mix`)
    and mixes inputs and targets with the same coefficients. Any batch size works; a batch
    of 0 or 1 sample (a DataLoader's last batch without ``drop_last``) passes through
    unmixed, with coefficient 1 and targets one-hot (smoothed) as usual.

    Randomness: ``perm`` and ``lam`` are drawn on the input's device, from ``generator``
    if given (it must live on that device), else from torch's default generator for that
    device, so ``torch.manual_seed`` makes runs reproducible. ``lam = G1 / (G1 + G2)`` with
    ``G1, G2 ~ Gamma(alpha)``, which is Beta(alpha, alpha), drawn in log space
    (``log G = log G' + log(U) / alpha``, ``G' ~ Gamma(alpha + 1)``, ``U ~ U(0, 1]``) so that
    it stays exact for any alpha: for tiny alpha the Gamma draws themselves underflow to 0
    (torch's Dirichlet sampler then returns 0.5 for alpha = 1e-20, where Beta(alpha, alpha)
    is all but a coin flip between 0 and 1). Beta(1, 1), the default, is the uniform
    distribution and is drawn as one. No host sync.

    Targets:

    * integer class indices ``[B]``: one-hot with ``label_smoothing`` (``num_classes``
      required), mixed with the input coefficients;
    * floating targets with ``num_classes`` set: soft labels, mixed with the input
      coefficients;
    * floating targets with ``num_classes=None``: regression targets. If
      ``target_tau_max`` is set, their coefficients come from the distance between the
      labels themselves (as in the paper's regression setup), with ``target_tau_max`` and
      ``target_tau_std`` (default ``tau_std``); otherwise the input coefficients are used.
      This matters only when the input similarity is not the labels' own: with
      ``feats=y`` and the same kernel for both, the target coefficients equal the input
      ones, so the target settings change nothing.

    How ``tau_max`` and ``tau_std`` act (the same way under both warps): a pair at the
    batch's mean distance gets ``tau = tau_max``, closer pairs more, farther pairs less
    (a Gaussian of width ``tau_std`` in normalised squared distance). ``tau = 1`` leaves
    ``lam`` as drawn (plain mixup), a large ``tau`` pulls the coefficient to 0.5 (an even
    blend), a small one pushes it to 0 or 1 (no mixing). So ``tau_max`` well below 1
    switches mixing off for nearly every pair (at ``lam = 0.25``, ``tau = 0.1`` gives
    ``k = 0.009`` under ``beta_cdf``, 0.0008 under ``inverse_beta_cdf``; ``tau = 1e-4``
    gives 0 under both), and ``tau_max`` above 1 blends more evenly than plain mixup.
    The inverse warp pushes harder towards 0 and 1 for ``tau < 1``. Picture:
    ``docs/kernel_warps.png``.

    After each call, ``last_perm``, ``last_lam``, ``last_coeff`` (input coefficients) and
    ``last_target_coeff`` hold what was drawn and used, so other tensors can be mixed the
    same way with :func:`kmixup.functional.interpolate`. To mix inside a network instead
    of at its input, see :class:`kmixup.HiddenMixup`.

    Data-parallel training: with ``global_mean=True`` and ``torch.distributed``
    initialised, the distances are normalised by their mean over the global batch (all
    ranks of ``process_group``, default the world) rather than the local one, at the
    cost of one all-reduce of two numbers; pairing stays within each rank's batch.

    Args:
        num_classes: Number of classes, for class-index or soft-label targets.
        alpha: Beta(alpha, alpha) parameter, > 0.
        tau_max: Similarity kernel amplitude, > 0.
        tau_std: Similarity kernel width, > 0.
        warping: ``"beta_cdf"``, ``"inverse_beta_cdf"`` or ``"none"``.
        mode: ``"elem"`` (a coefficient per sample) or ``"batch"`` (one per batch).
        label_smoothing: In [0, 1), applied to class-index targets.
        target_tau_max: Regression only: amplitude of the label-space kernel, > 0.
        target_tau_std: Regression only: width of the label-space kernel, > 0 (default
            ``tau_std``); only with ``target_tau_max``.
        generator: Optional ``torch.Generator`` on the inputs' device.
        dominant_anchor: Draw ``lam`` as ``max(lam, 1 - lam)`` (as MixMatch does), so
            that sample ``i`` always has weight >= 0.5 in mixed row ``i`` (both warps
            keep 0.5 fixed). Over random pairings the mixed points have the same
            distribution; what it buys is that row ``i``'s embedding stands for sample
            ``i``, which :class:`kmixup.FeatureBank` relies on.
        global_mean: Normalise distances by the global-batch mean under
            ``torch.distributed`` (see above); the local mean when it is not initialised.
        process_group: The group for ``global_mean`` (default: the world).
        inplace: Mix ``x`` in place (:func:`kmixup.functional.kernel_mix_`) and return
            it: no batch-sized allocation, which on a CPU costs more than the mix itself.
            For inputs that need no gradient (a DataLoader batch); an ``x`` that requires
            grad is refused.
        dense_target: Return the mixed targets as a tensor (``[B, C]`` soft labels
            for class indices). ``False``: return ``(target, perm, coeff)`` instead,
            the targets as given and the draw that mixes them, for a loss that mixes
            on its own without materialising ``[B, C]``
            (``kmixup.mix_cross_entropy(logits, target, perm, coeff,
            label_smoothing=...)``); ``label_smoothing`` then belongs to that loss, the
            mixer does not apply it. ``coeff`` is the targets' coefficient (the label-space
            one for regression with ``target_tau_max``), and the dense targets are
            ``coeff * t + (1 - coeff) * t[perm]`` of the (one-hot, smoothed) targets ``t``.

    Raises:
        ValueError: an invalid argument (named in the message).
    """

    def __init__(
        self,
        num_classes: int | None = None,
        alpha: float = 1.0,
        tau_max: float = 1.0,
        tau_std: float = 0.25,
        warping: str = "beta_cdf",
        mode: str = "elem",
        label_smoothing: float = 0.0,
        target_tau_max: float | None = None,
        target_tau_std: float | None = None,
        generator: torch.Generator | None = None,
        dominant_anchor: bool = False,
        global_mean: bool = False,
        process_group: dist.ProcessGroup | None = None,
        inplace: bool = False,
        dense_target: bool = True,
    ) -> None:
        if num_classes is not None:
            C.check_num_classes(num_classes)
        C.check_positive(alpha, "alpha")
        C.check_positive(tau_max, "tau_max")
        C.check_positive(tau_std, "tau_std")
        C.check_warping(warping)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        C.check_label_smoothing(label_smoothing)
        if target_tau_max is not None:
            C.check_positive(target_tau_max, "target_tau_max")
            if num_classes is not None:
                raise ValueError("target_tau_max is for regression targets (num_classes=None)")
        if target_tau_std is not None:
            C.check_positive(target_tau_std, "target_tau_std")
            if target_tau_max is None:
                raise ValueError("target_tau_std needs target_tau_max (it is the width of "
                                 "the label-space kernel that target_tau_max turns on)")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator)}")
        C.check_process_group(process_group)
        self.num_classes = num_classes
        self.alpha = float(alpha)
        self.tau_max = tau_max
        self.tau_std = tau_std
        self.warping = warping
        self.mode = mode
        self.label_smoothing = label_smoothing
        self.target_tau_max = target_tau_max
        self.target_tau_std = target_tau_std or (None if target_tau_max is None else tau_std)
        self.generator = generator
        self.dominant_anchor = bool(dominant_anchor)
        self.global_mean = bool(global_mean)
        self.process_group = process_group
        self.inplace = bool(inplace)
        self.dense_target = bool(dense_target)
        self.last_perm: Tensor | None = None
        self.last_lam: Tensor | None = None
        self.last_coeff: Tensor | None = None
        self.last_target_coeff: Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_classes={self.num_classes}, alpha={self.alpha}, "
            f"tau_max={self.tau_max}, tau_std={self.tau_std}, warping={self.warping!r}, "
            f"mode={self.mode!r}, label_smoothing={self.label_smoothing}, "
            f"target_tau_max={self.target_tau_max}, target_tau_std={self.target_tau_std})"
        )

    def sample(self, batch: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
        """Draw ``(perm, lam)`` for a batch on ``device``.

        Returns:
            ``perm`` int64 ``[B]``; ``lam`` float64, ``[B]`` (``mode="elem"``) or 0-d.
            float64 because float32 rounds a noticeable share of Beta(alpha, alpha) draws
            with small alpha to exactly 1 (e.g. 2% for alpha = 0.2), but not to 0.
        """
        device = torch.device(device)
        gen = self._generator_on(device)
        perm = draws.pairs(batch, False, device, gen)
        lam = draws.beta(self.alpha, batch if self.mode == "elem" else 1, device, gen)
        if self.dominant_anchor:
            lam = torch.maximum(lam, 1.0 - lam)
        return perm, (lam if self.mode == "elem" else lam[0])

    def _generator_on(self, device: torch.device) -> torch.Generator | None:
        gen = self.generator
        if gen is not None and gen.device.type != device.type:
            raise ValueError(f"generator is on {gen.device} but the inputs are on {device}")
        return gen

    def _group(self) -> dist.ProcessGroup | None:
        if self.global_mean and dist.is_available() and dist.is_initialized():
            return self.process_group or dist.group.WORLD
        return None

    def mix(
        self,
        x: Tensor,
        perm: Tensor,
        lam: Tensor,
        feats: Tensor | None = None,
        inplace: bool | None = None,
    ) -> tuple[Tensor, Tensor]:
        """:func:`kmixup.functional.kernel_mix` (or ``kernel_mix_`` when ``inplace``,
        default the mixer's setting) with this mixer's settings, for a draw from
        :meth:`sample`. Returns ``(mixed_x, coeff)``."""
        mix = kernel_mix_ if (self.inplace if inplace is None else inplace) else kernel_mix
        return mix(
            x,
            perm,
            lam,
            feats=feats,
            tau_max=self.tau_max,
            tau_std=self.tau_std,
            warping=self.warping,
            validate=False,  # perm and lam from sample() are valid by construction
            process_group=self._group(),
        )

    def mix_target(
        self, target: Tensor, perm: Tensor, lam: Tensor, coeff: Tensor
    ) -> tuple[Tensor | tuple[Tensor, Tensor, Tensor], Tensor]:
        """Mix targets for a draw whose input coefficients are ``coeff`` (see the class
        docstring for the target kinds). Returns ``(mixed_target, target_coeff)``;
        ``mixed_target`` is ``(target, perm, target_coeff)`` when ``dense_target`` is off."""
        C.check_tensor(target, "target")
        if target.dim() == 0 or target.shape[0] != perm.shape[0]:
            raise ValueError(f"target must have batch size {perm.shape[0]}")
        C.check_same_device(target, "target", perm, "the inputs")
        regression = target.dtype.is_floating_point and self.num_classes is None
        if regression and self.target_tau_max is not None:
            C.check_floating(target, "target")
            mixed, target_coeff = kernel_mix(
                target,
                perm,
                lam,
                tau_max=self.target_tau_max,
                tau_std=self.target_tau_std,
                warping=self.warping,
                validate=False,
                process_group=self._group(),
            )
        elif not self.dense_target:
            return (target, perm, coeff), coeff
        else:
            mixed = _mix_targets(
                target, perm, coeff, self.num_classes, self.label_smoothing, None, "target",
                own_draw=True,
            )
            return mixed, coeff
        return (mixed if self.dense_target else (target, perm, target_coeff)), target_coeff

    def record(self, perm: Tensor, lam: Tensor, coeff: Tensor, target_coeff: Tensor) -> None:
        """Keep a draw and its coefficients in ``last_*``."""
        self.last_perm, self.last_lam = perm, lam
        self.last_coeff, self.last_target_coeff = coeff, target_coeff

    def __call__(
        self,
        x: Tensor,
        target: Tensor,
        feats: Tensor | None = None,
        inplace: bool | None = None,
    ) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor, Tensor]]:
        """Mix a batch.

        Args:
            x: Floating inputs ``[B, ...]``; ``B < 2`` passes through unmixed.
            target: Class indices ``[B]``, soft labels ``[B, C]`` or regression targets.
            feats: Optional features ``[B, ...]`` for the similarity (default ``x``).
            inplace: Override the mixer's ``inplace`` setting for this call.

        Returns:
            ``(mixed_x, mixed_target)``, or ``(mixed_x, (target, perm, coeff))`` with
            ``dense_target=False``.
        """
        C.check_floating(x, "x")
        C.check_batched(x, "x", min_batch=0)
        perm, lam = self.sample(x.shape[0], x.device)
        mixed, coeff = self.mix(x, perm, lam, feats, inplace)
        mixed_target, target_coeff = self.mix_target(target, perm, lam, coeff)
        self.record(perm, lam, coeff, target_coeff)
        return mixed, mixed_target


class Mixup(KernelMixup):
    """Plain mixup (Zhang et al., 2018) with :class:`KernelMixup`'s interface.

    The same code path with ``warping="none"``: the coefficient is ``lam`` itself.

    Args:
        num_classes: Number of classes, for class-index or soft-label targets.
        alpha: Beta(alpha, alpha) parameter, > 0.
        mode: ``"elem"`` (a coefficient per sample) or ``"batch"`` (one per batch).
        label_smoothing: In [0, 1), applied to class-index targets.
        generator: Optional ``torch.Generator`` on the inputs' device.
        inplace: Mix ``x`` in place (see :class:`KernelMixup`).
        dense_target: ``False``: return ``(target, perm, coeff)`` instead of mixed
            targets (see :class:`KernelMixup`).
    """

    def __init__(
        self,
        num_classes: int | None = None,
        alpha: float = 1.0,
        mode: str = "elem",
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
        inplace: bool = False,
        dense_target: bool = True,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            alpha=alpha,
            warping="none",
            mode=mode,
            label_smoothing=label_smoothing,
            generator=generator,
            inplace=inplace,
            dense_target=dense_target,
        )

    def __repr__(self) -> str:
        return (
            f"Mixup(num_classes={self.num_classes}, alpha={self.alpha}, mode={self.mode!r}, "
            f"label_smoothing={self.label_smoothing})"
        )


def paste_boxes(
    x: Tensor, source: Tensor, box: Tensor, rows: Tensor, out: Tensor | None = None
) -> Tensor:
    """CutMix's input mixing: in each row where ``rows`` is true, the region ``box[i]`` of
    ``x[i]`` (images ``[B, ..., H, W]``) replaced by the same region of ``source[i]``.

    ``box`` is int64 ``[B, 4]`` as ``(top, bottom, left, right)``, bottom/right
    exclusive (:func:`kmixup.draws.boxes`); ``rows`` bool ``[B]``. Returns a new tensor,
    or ``out`` (which may be ``x`` itself) filled with the result.
    """
    height, width = x.shape[-2:]
    top, bottom, left, right = (edge[:, None] for edge in box.unbind(-1))
    y = torch.arange(height, device=x.device)
    z = torch.arange(width, device=x.device)
    inside_rows = (y >= top) & (y < bottom)  # [B, H]
    inside_cols = (z >= left) & (z < right)  # [B, W]
    inside = inside_rows[:, :, None] & inside_cols[:, None, :] & rows[:, None, None]
    inside = inside.view(x.shape[0], *[1] * (x.dim() - 3), height, width)
    return torch.where(inside, source, x, out=out)


_TIMM_MODES = ("batch", "pair", "elem")


class TimmMixup(KernelMixup):
    """timm's ``Mixup`` (mixup and CutMix), with SK warping of the mixup branch.

    The constructor takes timm's arguments, in timm's order and with timm's defaults, so
    ``Mixup(**mixup_args)`` in timm's ``train.py`` becomes
    ``kmixup.TimmMixup(**mixup_args)``; kmixup's own settings are keywords after them.
    The call is timm's too: ``mixer(x, target) -> (mixed_x, soft_target)``. For timm's
    ``FastCollateMixup`` (uint8 batches mixed in the loader), use
    ``kmixup.MixupCollate(kmixup.TimmMixup(**mixup_args))``.

    Each call draws, per batch (``mode="batch"``), per sample (``"elem"``) or per pair
    of samples that mix with each other (``"pair"``):

    * whether to mix at all (probability ``prob``; an unmixed sample keeps coefficient
      1 and its own, smoothed, one-hot target);
    * mixup or CutMix (CutMix with probability ``switch_prob`` when both are active);
    * ``lam`` from Beta(mixup_alpha, mixup_alpha) or Beta(cutmix_alpha, cutmix_alpha).

    The mixup branch is :class:`KernelMixup`'s: ``lam`` warped by pair similarity
    (``warping="none"`` gives timm's plain mixup). The CutMix branch is timm's, plain:
    a box drawn as timm does (:func:`kmixup.draws.boxes`) is pasted from the partner and
    the coefficient is the share of the image left to the sample (the area ratio,
    corrected for clipping with ``correct_lam``). Targets are mixed with the
    coefficients: ``coeff * onehot(y) + (1 - coeff) * onehot(y[perm])``, smoothed as timm
    does (off value ``label_smoothing / num_classes``).

    Samples are matched two by two, as in timm (``i`` mixes with ``j`` and ``j`` with
    ``i``, with a draw each except in ``"pair"`` mode), but the matching is drawn at
    random where timm pairs ``i`` with ``B - 1 - i`` (so it relies on a shuffled batch).
    The draws use torch's generators (on the inputs' device, no host sync) rather than
    numpy's. Neither changes the distribution of the mixing. Any batch size works
    (timm asserts an even batch): in an odd batch one sample is left without a partner
    and passes through unmixed, as does a batch of 0 or 1.

    ``mixup_enabled`` (set it to ``False`` to stop mixing, as timm's ``train.py`` does at
    ``--mixup-off-epoch``) and the ``last_*`` attributes of :class:`KernelMixup` work as
    there; ``last_cutmix`` (bool ``[B]``) and ``last_box`` (int64 ``[B, 4]``, meaningful
    where ``last_cutmix``) record the CutMix part of the draw.

    Args:
        mixup_alpha: Beta parameter of the mixup branch; 0 switches mixup off.
        cutmix_alpha: Beta parameter of the CutMix branch; 0 switches CutMix off.
        cutmix_minmax: ``(lo, hi)``: draw box sides uniformly in ``[lo, hi)`` of the
            image side instead of from ``lam`` (switches CutMix on, with alpha 1).
        prob: Probability of mixing a batch, sample or pair.
        switch_prob: Probability of CutMix rather than mixup when both are active.
        mode: ``"batch"``, ``"pair"`` or ``"elem"``.
        correct_lam: Use the clipped box's true area ratio as the CutMix coefficient.
        label_smoothing: In [0, 1), applied to class-index targets.
        num_classes: Number of classes.
        tau_max, tau_std, warping, generator, global_mean, process_group, inplace,
            dense_target: As for :class:`KernelMixup` (the kernel acts on the mixup
            branch only).

    Raises:
        ValueError: an invalid argument (named in the message), or neither mixup nor
            CutMix active.
    """

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: tuple[float, float] | None = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: int = 1000,
        *,
        tau_max: float = 1.0,
        tau_std: float = 0.25,
        warping: str = "beta_cdf",
        generator: torch.Generator | None = None,
        global_mean: bool = False,
        process_group: dist.ProcessGroup | None = None,
        inplace: bool = False,
        dense_target: bool = True,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            tau_max=tau_max,
            tau_std=tau_std,
            warping=warping,
            label_smoothing=label_smoothing,
            generator=generator,
            global_mean=global_mean,
            process_group=process_group,
            inplace=inplace,
            dense_target=dense_target,
        )
        _check_real_in(mixup_alpha, "mixup_alpha", 0.0, math.inf)
        _check_real_in(cutmix_alpha, "cutmix_alpha", 0.0, math.inf)
        if cutmix_minmax is not None:
            if len(cutmix_minmax) != 2 or not 0 <= cutmix_minmax[0] < cutmix_minmax[1] <= 1:
                raise ValueError(
                    f"cutmix_minmax must be (lo, hi) with 0 <= lo < hi <= 1, got {cutmix_minmax}"
                )
            cutmix_alpha = 1.0  # as timm: the box comes from minmax, lam is unused
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("mixup_alpha or cutmix_alpha (or cutmix_minmax) must be active")
        _check_real_in(prob, "prob", 0.0, 1.0)
        _check_real_in(switch_prob, "switch_prob", 0.0, 1.0)
        if mode not in _TIMM_MODES:
            raise ValueError(f"mode must be one of {_TIMM_MODES}, got {mode!r}")
        self.mixup_alpha = self.alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.cutmix_minmax = None if cutmix_minmax is None else tuple(map(float, cutmix_minmax))
        self.prob = float(prob)
        self.switch_prob = float(switch_prob)
        self.mode = mode
        self.correct_lam = bool(correct_lam)
        self.mixup_enabled = True
        self.last_cutmix: Tensor | None = None
        self.last_box: Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"TimmMixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, "
            f"cutmix_minmax={self.cutmix_minmax}, prob={self.prob}, "
            f"switch_prob={self.switch_prob}, mode={self.mode!r}, "
            f"correct_lam={self.correct_lam}, label_smoothing={self.label_smoothing}, "
            f"num_classes={self.num_classes}, tau_max={self.tau_max}, "
            f"tau_std={self.tau_std}, warping={self.warping!r})"
        )

    def draw(
        self, batch: int, device: torch.device | str, image_size: tuple[int, int] | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Draw ``(perm, lam, cutmix, box)`` for a batch on ``device``.

        ``perm``: the pairing, int64 ``[B]``. ``lam``: float64 ``[B]``, 1 for a sample
        left unmixed; for a CutMix sample, the box's coefficient (see
        :func:`kmixup.draws.boxes`) when ``image_size`` is given, else its Beta draw.
        ``cutmix``: bool ``[B]``, the samples that take the CutMix branch. ``box``: int64
        ``[B, 4]`` (``None`` without ``image_size``). One draw serves the whole batch in
        ``"batch"`` mode and both members of a pair in ``"pair"`` mode.
        """
        device = torch.device(device)
        gen = self._generator_on(device)
        perm = draws.pairs(batch, True, device, gen)
        n = 1 if self.mode == "batch" else batch
        mixup_on, cutmix_on = self.mixup_alpha > 0, self.cutmix_alpha > 0
        if mixup_on and cutmix_on:
            cutmix = torch.rand(n, device=device, generator=gen) < self.switch_prob
        else:
            cutmix = torch.full((n,), cutmix_on, device=device)
        lam = torch.where(
            cutmix,
            draws.beta(self.cutmix_alpha, n, device, gen) if cutmix_on else 1.0,
            draws.beta(self.mixup_alpha, n, device, gen) if mixup_on else 1.0,
        )
        box = None
        if image_size is not None and cutmix_on:
            box, box_lam = draws.boxes(lam, *image_size, self.cutmix_minmax, self.correct_lam, gen)
            lam = torch.where(cutmix, box_lam, lam)
        mixed = torch.rand(n, device=device, generator=gen) < self.prob
        if not self.mixup_enabled or batch < 2:
            mixed.zero_()
        # Every sample takes the draw of its batch, of its pair's first member, or its own.
        index = torch.arange(batch, device=device)
        if self.mode == "batch":
            owner = index.new_zeros(batch)
        elif self.mode == "pair":
            owner = torch.minimum(index, perm)
        else:
            owner = index
        mixed = mixed[owner] & (perm != index)  # an odd batch's odd one out stays as it is
        lam = torch.where(mixed, lam[owner], 1.0)
        return perm, lam, cutmix[owner] & mixed, (None if box is None else box[owner])

    def sample(self, batch: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
        """``(perm, lam)`` of the mixup branch alone (for :class:`kmixup.HiddenMixup`,
        where there is no image to cut): samples drawn for CutMix are left unmixed."""
        perm, lam, cutmix, _ = self.draw(batch, device)
        return perm, torch.where(cutmix, 1.0, lam)

    def __call__(
        self,
        x: Tensor,
        target: Tensor,
        feats: Tensor | None = None,
        inplace: bool | None = None,
    ) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor, Tensor]]:
        """Mix a batch (see :meth:`KernelMixup.__call__`); CutMix needs images
        ``[B, ..., H, W]``."""
        C.check_floating(x, "x")
        C.check_batched(x, "x", min_batch=0)
        cutmix_on = self.cutmix_alpha > 0
        if cutmix_on and x.dim() < 3:
            raise ValueError(f"x must be images [B, C, H, W] for CutMix, got {list(x.shape)}")
        image_size = tuple(x.shape[-2:]) if cutmix_on else None
        perm, lam, cutmix, box = self.draw(x.shape[0], x.device, image_size)
        source = x[perm] if cutmix_on else None  # before an in-place mix overwrites x
        mixed, coeff = self.mix(x, perm, torch.where(cutmix, 1.0, lam), feats, inplace)
        if cutmix_on:
            coeff = torch.where(cutmix, lam.to(coeff.dtype), coeff)
            # Into the mixed batch itself (x's storage when mixing in place), unless
            # autograd needs the mix's output, which out= cannot record.
            mixed = paste_boxes(mixed, source, box, cutmix,
                                out=None if mixed.requires_grad else mixed)
        mixed_target, target_coeff = self.mix_target(target, perm, lam, coeff)
        self.record(perm, lam, coeff, target_coeff)
        self.last_cutmix, self.last_box = cutmix, box
        return mixed, mixed_target


def _check_real_in(value: object, name: str, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be finite and lie in [{low}, {high}], got {value}")
