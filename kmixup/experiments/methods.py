"""Training methods: each turns a batch of training indices into a loss.

Classification (soft-label cross-entropy on mixed batches):

* ``erm``: no mixing.
* ``mixup``: :class:`kmixup.Mixup`, one ``lam ~ Beta(alpha, alpha)`` per sample.
* ``regmixup``: Pinto et al. (2022): cross-entropy on the clean batch plus cross-entropy
  on a mixup batch with a large ``alpha`` (one ``lam`` per batch, as in their code).
* ``sk_input``: :class:`kmixup.KernelMixup`, similarity measured on the inputs.
* ``sk_embedding``: :class:`kmixup.KernelMixup`, similarity measured on the model's
  penultimate-layer embeddings from an extra no-grad forward pass (as the authors do).
* ``sk_bank``: as ``sk_embedding`` but without the extra forward: the embeddings come
  from a :class:`kmixup.FeatureBank` filled by the training forward itself (stale by up
  to an epoch, of the mixed row each sample anchored; ``dominant_anchor=True``); input
  similarity during the first epoch.
* ``sk_hidden``: :class:`kmixup.HiddenMixup` at the embedding layer: the embeddings of
  the clean batch are mixed (manifold mixup), similarity measured on them.

``sk_bank`` and ``sk_hidden`` are not in the default set (``MethodSpec.default``): they
answer a cost question rather than being baselines; select them with ``--methods``.

Regression (Gaussian NLL of a (mean, variance) head on standardised targets):

* ``erm``, ``mixup``: as above, targets mixed with the input coefficients.
* ``c_mixup``: Yao et al. (2022): each sample's partner is drawn from the whole training
  set with probability proportional to ``exp(-(y_i - y_j)**2 / (2 * bandwidth**2))``
  (itself included, as in their code); inputs and labels mixed with one
  ``lam ~ Beta(alpha, alpha)`` per batch.
* ``sk_label``: :class:`kmixup.KernelMixup` with a random pairing; the input coefficient
  from input-space similarity, the target coefficient from label-space similarity
  (``target_tau_max = tau_max``, ``target_tau_std = tau_std``, as in both of the
  authors' published regression commands).

Quick-mode defaults (``MethodSpec.defaults``) are the paper's reference settings, not
tuned here: ``alpha = 1`` for Mixup and SK Mixup (the same ``lam`` distribution, so the
two differ only by the warp), ``tau_max = 1``, ``tau_std = 0.25`` for classification
(the authors' CIFAR configs), ``alpha = 10`` for RegMixup (the authors' RegMixup
config; Pinto et al. use 10 to 20). ``warping = "beta_cdf"`` in quick mode because the
inverse warp costs about ten times more per step on the pure-PyTorch path. Regression
has no single reference value (the authors' settings range from ``tau_max = 1e-4`` to
5), so quick mode uses ``tau_max = 1``, ``tau_std = 1`` and C-Mixup's bandwidth 0.5
(in units of the target's standard deviation). ``--full`` searches ``MethodSpec.grid``
on the validation split instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

import kmixup

from .data import Dataset
from .models import MLP, gaussian_params

__all__ = [
    "CLASSIFICATION_METHODS",
    "REGRESSION_METHODS",
    "MethodSpec",
    "cmixup_partners",
    "grid_configs",
    "make_loss",
    "methods_for",
    "soft_cross_entropy",
]

WARPINGS = ["beta_cdf", "inverse_beta_cdf"]
_ALPHAS = [0.1, 0.2, 0.5, 1.0, 2.0]


@dataclass(frozen=True)
class MethodSpec:
    """A method: its key, table label, quick-mode defaults and full-mode search grid."""

    key: str
    label: str
    defaults: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)  # name -> values; the search is their product
    default: bool = True  # run when --methods is not given


_SK_CLS = {"alpha": 1.0, "tau_max": 1.0, "tau_std": 0.25, "warping": "beta_cdf"}
_SK_CLS_GRID = {
    "warping": WARPINGS,
    "tau_max": [0.1, 0.25, 0.5, 1.0, 2.0],
    "tau_std": [0.25, 0.5],
}

CLASSIFICATION_METHODS = {
    m.key: m
    for m in [
        MethodSpec("erm", "ERM"),
        MethodSpec("mixup", "Mixup", {"alpha": 1.0}, {"alpha": _ALPHAS}),
        MethodSpec("regmixup", "RegMixup", {"alpha": 10.0}, {"alpha": [5.0, 10.0, 20.0, 40.0]}),
        MethodSpec("sk_input", "SK Mixup (input)", _SK_CLS, _SK_CLS_GRID),
        MethodSpec("sk_embedding", "SK Mixup (embedding)", _SK_CLS, _SK_CLS_GRID),
        MethodSpec("sk_bank", "SK Mixup (embedding bank)", _SK_CLS, _SK_CLS_GRID, False),
        MethodSpec("sk_hidden", "SK Mixup (hidden layer)", _SK_CLS, _SK_CLS_GRID, False),
    ]
}

REGRESSION_METHODS = {
    m.key: m
    for m in [
        MethodSpec("erm", "ERM"),
        MethodSpec("mixup", "Mixup", {"alpha": 1.0}, {"alpha": _ALPHAS}),
        MethodSpec(
            "c_mixup",
            "C-Mixup",
            {"alpha": 1.0, "bandwidth": 0.5},
            {"alpha": [0.2, 0.5, 1.0, 2.0], "bandwidth": [0.03, 0.1, 0.5, 1.0]},
        ),
        MethodSpec(
            "sk_label",
            "SK Mixup (label)",
            {"alpha": 1.0, "tau_max": 1.0, "tau_std": 1.0, "warping": "beta_cdf"},
            {"warping": WARPINGS, "tau_max": [0.01, 0.1, 1.0, 5.0], "tau_std": [0.5, 1.0]},
        ),
    ]
}


def methods_for(task: str) -> dict[str, MethodSpec]:
    """The method registry for ``"classification"`` or ``"regression"``."""
    return CLASSIFICATION_METHODS if task == "classification" else REGRESSION_METHODS


def grid_configs(spec: MethodSpec) -> list[dict]:
    """Every hyperparameter setting of the full-mode search (defaults if no grid)."""
    names = list(spec.grid)
    combos = itertools.product(*(spec.grid[n] for n in names))
    return [{**spec.defaults, **dict(zip(names, values))} for values in combos]


def cmixup_partners(
    idx: Tensor, y: Tensor, bandwidth: float, generator: torch.Generator | None = None
) -> Tensor:
    """C-Mixup partners: for each ``i`` in ``idx``, an index ``j`` into ``y`` drawn with
    probability proportional to ``exp(-(y[i] - y[j])**2 / (2 * bandwidth**2))``.

    Computed per batch (``[B, N]`` weights) rather than as an ``N x N`` table.
    """
    d2 = (y[idx, None].double() - y[None, :].double()) ** 2
    # Subtracting each row's minimum (0, the sample itself) keeps the weights from
    # all underflowing; multinomial normalises them.
    w = torch.exp(-(d2 - d2.min(dim=1, keepdim=True).values) / (2 * bandwidth**2))
    return torch.multinomial(w, 1, generator=generator).squeeze(1)


def soft_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy against soft (mixed) targets, averaged over the batch."""
    return torch.sum(-target * torch.log_softmax(logits, dim=-1), dim=-1).mean()


def _gaussian_nll(out: Tensor, y: Tensor) -> Tensor:
    mean, var = gaussian_params(out)
    return F.gaussian_nll_loss(mean, y, var)


def make_loss(
    key: str, hp: dict, model: MLP, ds: Dataset, generator: torch.Generator
) -> Callable[[Tensor], Tensor]:
    """The training loss of method ``key`` with hyperparameters ``hp``.

    Returns:
        ``loss(idx)`` for a batch of indices into ``ds.train`` (at least 2 of them). All
        randomness (pairings, coefficients) comes from ``generator``.
    """
    x_all, y_all, nc = ds.train.x, ds.train.y, ds.num_classes
    if ds.task == "classification":
        if key == "erm":
            return lambda idx: F.cross_entropy(model(x_all[idx]), y_all[idx])
        if key in ("mixup", "regmixup"):
            mode = "batch" if key == "regmixup" else "elem"
            mixer = kmixup.Mixup(nc, alpha=hp["alpha"], mode=mode, generator=generator)
        elif key in ("sk_input", "sk_embedding", "sk_bank", "sk_hidden"):
            # hp: KernelMixup's args
            mixer = kmixup.KernelMixup(
                nc, **hp, generator=generator, dominant_anchor=key == "sk_bank"
            )
        else:
            raise ValueError(f"unknown classification method {key!r}")

        if key == "sk_hidden":
            hidden = kmixup.HiddenMixup(model, "body", mixer)
            return lambda idx: soft_cross_entropy(*hidden(x_all[idx], y_all[idx]))
        if key == "sk_bank":
            bank = kmixup.FeatureBank(len(y_all), model.head.in_features)

            def bank_loss(idx: Tensor) -> Tensor:
                x_mix, y_mix = mixer(x_all[idx], y_all[idx], feats=bank.lookup(idx))
                emb = model.features(x_mix)
                bank.update(idx, emb)
                return soft_cross_entropy(model.head(emb), y_mix)

            return bank_loss

        def loss(idx: Tensor) -> Tensor:
            x, y = x_all[idx], y_all[idx]
            feats = None
            if key == "sk_embedding":
                with torch.no_grad():
                    feats = model.features(x)
            x_mix, y_mix = mixer(x, y, feats=feats)
            if key == "regmixup":  # one forward pass for the clean and the mixed batch
                logits = model(torch.cat([x, x_mix]))
                clean, mixed = logits[: len(x)], logits[len(x) :]
                return F.cross_entropy(clean, y) + soft_cross_entropy(mixed, y_mix)
            return soft_cross_entropy(model(x_mix), y_mix)

        return loss

    if key == "erm":
        return lambda idx: _gaussian_nll(model(x_all[idx]), y_all[idx])
    if key == "c_mixup":
        lam_sampler = kmixup.Mixup(alpha=hp["alpha"], mode="batch", generator=generator)

        def c_mixup_loss(idx: Tensor) -> Tensor:
            partner = cmixup_partners(idx, y_all, hp["bandwidth"], generator)
            lam = lam_sampler.sample(len(idx), "cpu")[1].float()
            x_mix = lam * x_all[idx] + (1 - lam) * x_all[partner]
            y_mix = lam * y_all[idx] + (1 - lam) * y_all[partner]
            return _gaussian_nll(model(x_mix), y_mix)

        return c_mixup_loss
    if key == "mixup":
        mixer = kmixup.Mixup(alpha=hp["alpha"], generator=generator)
    elif key == "sk_label":
        mixer = kmixup.KernelMixup(
            **hp,
            target_tau_max=hp["tau_max"],
            target_tau_std=hp["tau_std"],
            generator=generator,
        )
    else:
        raise ValueError(f"unknown regression method {key!r}")

    def reg_loss(idx: Tensor) -> Tensor:
        x_mix, y_mix = mixer(x_all[idx], y_all[idx])
        return _gaussian_nll(model(x_mix), y_mix)

    return reg_loss
