"""The random draws of a mixing step, each on its own: pairs, coefficients, CutMix boxes.

The mixers (:class:`kmixup.KernelMixup`, :class:`kmixup.TimmMixup`) assemble these.
Everything is drawn on the inputs' device from ``generator`` (or torch's default
generator for that device) and nothing is read back on the host, so a GPU never syncs.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["beta", "pairs", "boxes"]


def beta(
    alpha: float, n: int, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """``n`` draws of Beta(alpha, alpha), float64.

    ``lam = G1 / (G1 + G2)`` with ``G1, G2 ~ Gamma(alpha)``, drawn in log space
    (``log G = log G' + log(U) / alpha``, ``G' ~ Gamma(alpha + 1)``, ``U ~ U(0, 1]``) so
    that it stays exact for any alpha: for tiny alpha the Gamma draws themselves
    underflow to 0 (torch's Dirichlet sampler then returns 0.5 for alpha = 1e-20, where
    Beta(alpha, alpha) is all but a coin flip between 0 and 1). float64 because float32
    rounds a noticeable share of draws with small alpha to exactly 1 (e.g. 2% for
    alpha = 0.2), but not to 0. Beta(1, 1), the usual setting, is the uniform distribution
    and is drawn as such: one op instead of a dozen (a tenth of a CIFAR-sized mixing step).
    """
    if alpha == 1.0:
        return torch.rand(n, dtype=torch.float64, device=device, generator=generator)
    boosted = torch.full((n, 2), alpha + 1.0, dtype=torch.float64, device=device)
    uniform = 1.0 - torch.rand((n, 2), dtype=torch.float64, device=device, generator=generator)
    log_gamma = torch._standard_gamma(boosted, generator=generator).log()
    log_uniform = uniform.log()
    # The difference of the log-uniforms before dividing: each alone may overflow to
    # -inf for alpha near the smallest double, and -inf - -inf is NaN.
    logit = log_gamma[:, 0] - log_gamma[:, 1]
    logit = logit + (log_uniform[:, 0] - log_uniform[:, 1]) / alpha
    return torch.sigmoid(logit)


def pairs(
    batch: int, mutual: bool, device: torch.device, generator: torch.Generator | None = None
) -> Tensor:
    """A random pairing ``perm`` (int64 ``[batch]``): sample ``i`` mixes with ``perm[i]``.

    ``mutual=False``: a uniform random permutation. ``mutual=True`` (timm's ``"pair"``
    mode): samples are matched two by two, ``perm[perm[i]] == i``, so both members of a
    pair mix with each other; in an odd batch one sample is left with itself
    (``perm[i] == i``).
    """
    order = torch.randperm(batch, device=device, generator=generator)
    if not mutual:
        return order
    partner = torch.arange(batch, device=device)
    even = batch - batch % 2
    partner[:even] ^= 1  # 0<->1, 2<->3, ...; an odd batch's last position stays put
    perm = torch.empty_like(order)
    perm[order] = order[partner]
    return perm


def boxes(
    lam: Tensor,
    height: int,
    width: int,
    minmax: tuple[float, float] | None = None,
    correct_lam: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """CutMix boxes as timm draws them, one per entry of ``lam``.

    Without ``minmax``: a box of side ``int(side * sqrt(1 - lam))`` centred on a
    uniformly drawn pixel, clipped to the image. With ``minmax = (lo, hi)``: height
    and width drawn uniformly in ``[int(side * lo), int(side * hi))`` and the box
    placed fully inside the image (``lam`` is not used).

    Args:
        lam: float64 ``[n]`` (or 0-d) coefficients from Beta(cutmix_alpha, cutmix_alpha).
        height, width: The image size.
        minmax: Optional ``(lo, hi)`` box-side ratios.
        correct_lam: Return the box's true area ratio (clipping makes a box smaller
            than ``lam`` asked for); always done with ``minmax``.
        generator: As for the other draws.

    Returns:
        ``(box, coeff)``: ``box`` int64 ``[..., 4]`` as ``(top, bottom, left, right)``,
        bottom/right exclusive; ``coeff`` float64 like ``lam``: the share of the
        image that stays the sample's own, ``1 - box area / image area`` (or ``lam``
        itself when neither ``correct_lam`` nor ``minmax``).

    Raises:
        ValueError: ``minmax`` leaves no box size to draw for this image.
    """
    shape, device = lam.shape, lam.device

    def uniform_int(low: Tensor | int, high: Tensor | int) -> Tensor:
        """An integer drawn uniformly from ``[low, high)`` (``high > low``)."""
        u = torch.rand(shape, dtype=torch.float64, device=device, generator=generator)
        return (u * (high - low)).floor().long() + low

    if minmax is None:
        ratio = (1.0 - lam).sqrt()
        cut_h, cut_w = (height * ratio).floor().long(), (width * ratio).floor().long()
        centre_y, centre_x = uniform_int(0, height), uniform_int(0, width)
        top = (centre_y - cut_h // 2).clamp(0, height)
        bottom = (centre_y + (cut_h + 1) // 2).clamp(0, height)
        left = (centre_x - cut_w // 2).clamp(0, width)
        right = (centre_x + (cut_w + 1) // 2).clamp(0, width)
    else:
        sizes = []
        for side in (height, width):
            low, high = int(side * minmax[0]), int(side * minmax[1])
            if high <= low:
                raise ValueError(
                    f"cutmix_minmax={tuple(minmax)} leaves no box size for an image side "
                    f"of {side}: int({side} * {minmax[0]}) must be < int({side} * {minmax[1]})"
                )
            sizes.append(uniform_int(low, high))
        cut_h, cut_w = sizes
        top, left = uniform_int(0, height - cut_h + 1), uniform_int(0, width - cut_w + 1)
        bottom, right = top + cut_h, left + cut_w
    box = torch.stack((top, bottom, left, right), dim=-1)
    if correct_lam or minmax is not None:
        area = (bottom - top) * (right - left)
        return box, 1.0 - area.double() / (height * width)
    return box, lam
