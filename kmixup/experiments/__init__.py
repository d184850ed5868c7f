"""Calibration experiments: ERM, Mixup, RegMixup / C-Mixup and SK Mixup on small data sets.

Run ``python -m kmixup.experiments [--quick | --full] [--data NAME|PATH.npz ...]
[--methods KEYS] [--seeds S,S,...] [--epochs N] [--out DIR]`` (``--help`` for all).

It trains small MLPs with each mixing method and several fixed seeds, fits temperature
scaling (classification) or variance scaling (regression) on the validation split, and
reports on the test split, mean ± std over seeds:

* classification: accuracy, ECE (15 bins), adaptive ECE (15 equal-mass bins), NLL,
  Brier, each calibration metric before and after temperature scaling;
* regression: RMSE, MAPE, Gaussian NLL and the coverage calibration error, the last two
  before and after variance scaling.

Data: ``digits``, ``moons``, ``circles`` (classification), ``diabetes`` (regression),
all built into scikit-learn (nothing is downloaded), or ``PATH.npz`` with arrays ``X``
``[N, ...]`` and ``y`` ``[N]``: integer ``y`` is classification, floating ``y``
regression. Each set is split 60/20/20 (train/val/test) with a fixed seed.

``--quick`` (what ``make demo`` runs): seeds 0, 1, 2, few epochs, the documented default
hyperparameters (see :mod:`kmixup.experiments.methods`). ``--full``: seeds 0-9, twice the
epochs, and each method's hyperparameters searched on the validation split (lowest
validation NLL; the test split is never used to choose anything).

Outputs in ``--out`` (default ``demo_output/experiments``): ``results.md``,
``results.json``, ``reliability_<data>.png`` (one panel per method),
``decision_boundaries.png`` (toy sets) and ``coverage_<data>.png`` (regression).

Only kmixup's public API is used (:class:`kmixup.KernelMixup`, :class:`kmixup.Mixup`).
"""

from __future__ import annotations

from .run import main

__all__ = ["main"]
