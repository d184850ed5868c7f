"""Metrics and post-hoc recalibration.

Classification (from logits): accuracy, mean top-label confidence (above the accuracy
means overconfident), ECE (15 equal-width confidence bins, L1, the top-label
confidence), adaptive ECE (15 equal-mass bins), NLL and the multi-class Brier
score ``mean_i sum_c (p_ic - 1[y_i = c])**2`` (range [0, 2]). Accuracy and ECE come from
torchmetrics; adaptive ECE and Brier are computed here (torchmetrics has neither).

Regression (from a Gaussian mean and variance): RMSE, MAPE (%) (torchmetrics), Gaussian
NLL (with the ``log(2 pi)`` constant) and a calibration error: the mean absolute gap
between the nominal level ``p`` and the observed coverage of the central interval
``mean +- z_{(1+p)/2} * std`` over ``p`` in 0.05, 0.10, ..., 0.95.

Recalibration, fitted on the validation split: temperature scaling for classification
(one scalar ``T``, logits / T, LBFGS on the NLL) and variance scaling for regression (one
scalar on the variance, whose NLL optimum has the closed form ``mean(r**2 / var)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional import mean_absolute_percentage_error, mean_squared_error
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
)

__all__ = [
    "COVERAGE_LEVELS",
    "N_BINS",
    "adaptive_ece",
    "brier_score",
    "classification_metrics",
    "coverage",
    "fit_temperature",
    "fit_variance_scale",
    "regression_calibration_error",
    "regression_metrics",
    "reliability_bins",
]

N_BINS = 15
COVERAGE_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def adaptive_ece(probs: Tensor, y: Tensor, n_bins: int = N_BINS) -> float:
    """ECE over ``n_bins`` equal-mass bins of the top-label confidence.

    Samples are sorted by confidence and cut into ``n_bins`` consecutive groups whose
    sizes differ by at most one; the result is ``sum_b n_b / N * |acc_b - conf_b|``.
    """
    conf, pred = probs.max(dim=1)
    order = conf.argsort()
    conf, correct = conf[order].double(), (pred[order] == y[order]).double()
    total = 0.0
    for c, a in zip(conf.tensor_split(n_bins), correct.tensor_split(n_bins)):
        if len(c):
            total += len(c) * abs(float(a.mean() - c.mean()))
    return total / len(conf)


def brier_score(probs: Tensor, y: Tensor) -> float:
    """Multi-class Brier score ``mean_i sum_c (p_ic - onehot_ic)**2``, in [0, 2]."""
    onehot = F.one_hot(y, probs.shape[1]).to(probs.dtype)
    return float((probs - onehot).pow(2).sum(1).mean())


def classification_metrics(logits: Tensor, y: Tensor) -> dict[str, float]:
    """``acc``, ``conf``, ``ece``, ``aece`` (fractions in [0, 1]), ``nll`` and ``brier``.

    ``conf`` is the mean top-label confidence: ``conf > acc`` means overconfident.
    """
    logits = logits.double()
    probs = logits.softmax(dim=1)
    c = logits.shape[1]
    return {
        "acc": float(multiclass_accuracy(probs, y, num_classes=c, average="micro")),
        "conf": float(probs.max(dim=1).values.mean()),
        "ece": float(
            multiclass_calibration_error(probs, y, num_classes=c, n_bins=N_BINS, norm="l1")
        ),
        "aece": adaptive_ece(probs, y),
        "nll": float(F.cross_entropy(logits, y)),
        "brier": brier_score(probs, y),
    }


def fit_temperature(logits: Tensor, y: Tensor) -> float:
    """Temperature ``T`` minimising the NLL of ``logits / T`` (fit on validation data).

    Optimised over ``log T`` so that ``T`` stays positive without constraints.
    """
    logits = logits.detach().double()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def reliability_bins(probs: Tensor, y: Tensor, n_bins: int = N_BINS) -> dict[str, list[float]]:
    """Per equal-width confidence bin: its centre, sample count, accuracy and mean confidence.

    Empty bins have count 0 and NaN accuracy and confidence.
    """
    conf, pred = probs.double().max(dim=1)
    correct = (pred == y).double()
    # Bin b holds conf in (b/n, (b+1)/n], as torchmetrics bins it; conf > 0 always.
    which = (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)
    count = torch.bincount(which, minlength=n_bins).double()
    acc = torch.bincount(which, weights=correct, minlength=n_bins) / count
    mean_conf = torch.bincount(which, weights=conf, minlength=n_bins) / count
    centre = (torch.arange(n_bins, dtype=torch.float64) + 0.5) / n_bins
    return {
        "centre": centre.tolist(),
        "count": count.tolist(),
        "acc": acc.tolist(),
        "conf": mean_conf.tolist(),
    }


def coverage(mean: Tensor, var: Tensor, y: Tensor, levels=COVERAGE_LEVELS) -> Tensor:
    """Observed coverage of the central Gaussian interval at each nominal level."""
    p = torch.tensor(levels, dtype=torch.float64)
    z = torch.special.ndtri((1 + p) / 2)  # half-width in standard deviations
    err = (y.double() - mean.double()).abs() / var.double().sqrt()
    return (err[None, :] <= z[:, None]).double().mean(dim=1)


def regression_calibration_error(
    mean: Tensor, var: Tensor, y: Tensor, levels=COVERAGE_LEVELS
) -> float:
    """Mean over ``levels`` of ``|observed coverage - nominal level|`` (0 is perfect)."""
    p = torch.tensor(levels, dtype=torch.float64)
    return float((coverage(mean, var, y, levels) - p).abs().mean())


def regression_metrics(mean: Tensor, var: Tensor, y: Tensor) -> dict[str, float]:
    """``rmse``, ``mape`` (%), ``nll`` (Gaussian, per sample) and ``cal`` (coverage gap).

    All in the units of ``y``: pass de-standardised predictions.
    """
    mean, var, y = mean.double(), var.double(), y.double()
    return {
        "rmse": float(mean_squared_error(mean, y, squared=False)),
        "mape": 100.0 * float(mean_absolute_percentage_error(mean, y)),
        "nll": float(F.gaussian_nll_loss(mean, y, var, full=True, eps=1e-12)),
        "cal": regression_calibration_error(mean, var, y),
    }


def fit_variance_scale(mean: Tensor, var: Tensor, y: Tensor) -> float:
    """The factor ``s`` on the variance minimising the Gaussian NLL of ``(mean, s * var)``.

    ``d/ds sum(log(s var) + r**2 / (s var)) = 0`` gives ``s = mean(r**2 / var)``.
    """
    return float(((y.double() - mean.double()) ** 2 / var.double()).mean())
