"""Batch transforms shaped after timm's ``Mixup``: ``mixer(x, target) -> (x, target)``."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

from . import _checks as C
from .functional import _mix_targets, kernel_mix, kernel_mix_

__all__ = ["KernelMixup", "Mixup"]

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
    is all but a coin flip between 0 and 1). No host sync.

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
        gen = self.generator
        if gen is not None and gen.device.type != device.type:
            raise ValueError(f"generator is on {gen.device} but the inputs are on {device}")
        perm = torch.randperm(batch, device=device, generator=gen)
        n = batch if self.mode == "elem" else 1
        boosted = torch.full((n, 2), self.alpha + 1.0, dtype=torch.float64, device=device)
        uniform = 1.0 - torch.rand((n, 2), dtype=torch.float64, device=device, generator=gen)
        log_gamma, log_uniform = torch._standard_gamma(boosted, generator=gen).log(), uniform.log()
        # The difference of the log-uniforms before dividing: each alone may overflow to
        # -inf for alpha near the smallest double, and -inf - -inf is NaN.
        logit = log_gamma[:, 0] - log_gamma[:, 1]
        logit = logit + (log_uniform[:, 0] - log_uniform[:, 1]) / self.alpha
        lam = torch.sigmoid(logit)
        if self.dominant_anchor:
            lam = torch.maximum(lam, 1.0 - lam)
        return perm, (lam if self.mode == "elem" else lam[0])

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
    ) -> tuple[Tensor, Tensor]:
        """Mix targets for a draw whose input coefficients are ``coeff`` (see the class
        docstring for the target kinds). Returns ``(mixed_target, target_coeff)``."""
        C.check_tensor(target, "target")
        if target.dim() == 0 or target.shape[0] != perm.shape[0]:
            raise ValueError(f"target must have batch size {perm.shape[0]}")
        C.check_same_device(target, "target", perm, "the inputs")
        regression = target.dtype.is_floating_point and self.num_classes is None
        if regression and self.target_tau_max is not None:
            C.check_floating(target, "target")
            return kernel_mix(
                target,
                perm,
                lam,
                tau_max=self.target_tau_max,
                tau_std=self.target_tau_std,
                warping=self.warping,
                validate=False,
                process_group=self._group(),
            )
        mixed = _mix_targets(
            target, perm, coeff, self.num_classes, self.label_smoothing, None, "target"
        )
        return mixed, coeff

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
    ) -> tuple[Tensor, Tensor]:
        """Mix a batch.

        Args:
            x: Floating inputs ``[B, ...]``; ``B < 2`` passes through unmixed.
            target: Class indices ``[B]``, soft labels ``[B, C]`` or regression targets.
            feats: Optional features ``[B, ...]`` for the similarity (default ``x``).
            inplace: Override the mixer's ``inplace`` setting for this call.

        Returns:
            ``(mixed_x, mixed_target)``.
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
    """

    def __init__(
        self,
        num_classes: int | None = None,
        alpha: float = 1.0,
        mode: str = "elem",
        label_smoothing: float = 0.0,
        generator: torch.Generator | None = None,
        inplace: bool = False,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            alpha=alpha,
            warping="none",
            mode=mode,
            label_smoothing=label_smoothing,
            generator=generator,
            inplace=inplace,
        )

    def __repr__(self) -> str:
        return (
            f"Mixup(num_classes={self.num_classes}, alpha={self.alpha}, mode={self.mode!r}, "
            f"label_smoothing={self.label_smoothing})"
        )
