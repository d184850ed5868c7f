"""Data sets: scikit-learn's built-in sets (nothing is downloaded) and user ``.npz`` files.

Every set is split once into train / validation / test (60 / 20 / 20 %, stratified for
classification) with the fixed seed :data:`SPLIT_SEED`, so all methods and all training
seeds see the same split. Inputs are float32 ``[N, D]``; class labels int64 ``[N]``;
regression targets float32 ``[N]``, standardised with the training mean and standard
deviation (``y_mean``, ``y_std`` undo it, so that metrics are reported in the original
units).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["BUILTIN", "SPLIT_SEED", "Dataset", "Split", "load_dataset"]

SPLIT_SEED = 0
BUILTIN = ("digits", "moons", "circles", "overlap", "diabetes")


@dataclass
class Split:
    """One split: inputs ``x`` ``[N, D]`` float32 and targets ``y`` ``[N]``."""

    x: Tensor
    y: Tensor


@dataclass
class Dataset:
    """A data set split three ways, with what training and plotting need to know."""

    name: str
    task: str  # "classification" or "regression"
    train: Split
    val: Split
    test: Split
    num_classes: int | None = None
    y_mean: float = 0.0  # regression: y_original = y * y_std + y_mean
    y_std: float = 1.0
    toy_2d: bool = False  # a 2-D toy set: its decision boundaries are drawn


def _split_indices(y: np.ndarray, stratify: bool) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    strat = y if stratify else None
    train, rest = train_test_split(idx, test_size=0.4, random_state=SPLIT_SEED, stratify=strat)
    strat = y[rest] if stratify else None
    val, test = train_test_split(rest, test_size=0.5, random_state=SPLIT_SEED, stratify=strat)
    return train, val, test


def _build(
    name: str, x: np.ndarray, y: np.ndarray, task: str, standardise_x: bool, toy_2d: bool = False
) -> Dataset:
    x = x.reshape(len(x), -1).astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: X has NaN or infinite values")
    parts = _split_indices(y, stratify=task == "classification")
    tr = parts[0]
    if standardise_x:  # statistics of the training split only: nothing leaks from val/test
        mu, sd = x[tr].mean(0), x[tr].std(0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
    num_classes, y_mean, y_std = None, 0.0, 1.0
    if task == "classification":
        y_t = torch.from_numpy(y.astype(np.int64))
        num_classes = int(y.max()) + 1
    else:
        y_mean, y_std = float(y[tr].mean()), float(y[tr].std()) or 1.0
        y_t = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
    x_t = torch.from_numpy(x.astype(np.float32))
    splits = [Split(x_t[p], y_t[p]) for p in parts]
    return Dataset(name, task, *splits, num_classes, y_mean, y_std, toy_2d)


def load_npz(path: str | Path) -> Dataset:
    """A user data set from a ``.npz`` file with arrays ``X`` ``[N, ...]`` and ``y`` ``[N]``.

    Integer ``y`` means classification (labels are re-indexed to ``0..C-1``), floating
    ``y`` regression. ``X`` is flattened to ``[N, D]`` and standardised with the training
    split's statistics.
    """
    path = Path(path)
    with np.load(path) as f:
        if "X" not in f or "y" not in f:
            raise ValueError(f"{path}: expected arrays 'X' and 'y', found {sorted(f.files)}")
        x, y = np.asarray(f["X"]), np.asarray(f["y"])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(x) != len(y) or len(y) < 10:
        raise ValueError(
            f"{path}: need X [N, ...] and y [N] with the same N >= 10, "
            f"got X {list(x.shape)} and y {list(y.shape)}"
        )
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        labels, y = np.unique(y, return_inverse=True)
        if len(labels) < 2:
            raise ValueError(f"{path}: classification needs at least 2 classes")
        return _build(path.stem, x, y, "classification", standardise_x=True)
    if not np.issubdtype(y.dtype, np.floating) or not np.isfinite(y).all():
        raise ValueError(f"{path}: y must be integer (classes) or finite floats (regression)")
    return _build(path.stem, x, y.astype(np.float64), "regression", standardise_x=True)


def load_dataset(name: str) -> Dataset:
    """Load a built-in set (:data:`BUILTIN`) by name, or a user set from a ``.npz`` path.

    * ``digits``: scikit-learn's 1797 8x8 handwritten digits, 10 classes, pixels / 16.
    * ``moons``: 1000 points of two interleaving half circles, noise 0.2.
    * ``circles``: 1000 points of two concentric circles, noise 0.1, factor 0.5.
    * ``overlap``: 1000 points in 10-D, 4 overlapping classes (scikit-learn's
      ``make_classification``: 5 informative and 5 noise features, two Gaussian
      clusters per class at ``class_sep=1``) with 10 % of the labels drawn at random.
      No classifier can be sure here (the random labels alone cost 7.5 % accuracy),
      so a network that fits its training set is overconfident: the paper's regime.
    * ``diabetes``: scikit-learn's 442 patients, 10 features, disease progression
      (regression), features standardised.
    """
    from sklearn import datasets as skd

    if name == "digits":
        d = skd.load_digits()
        # Raw pixels in [0, 1], not standardised: input-space distances stay pixel distances.
        return _build(name, d.data / 16.0, d.target, "classification", standardise_x=False)
    if name == "moons":
        x, y = skd.make_moons(n_samples=1000, noise=0.2, random_state=SPLIT_SEED)
        return _build(name, x, y, "classification", standardise_x=False, toy_2d=True)
    if name == "circles":
        x, y = skd.make_circles(n_samples=1000, noise=0.1, factor=0.5, random_state=SPLIT_SEED)
        return _build(name, x, y, "classification", standardise_x=False, toy_2d=True)
    if name == "overlap":
        x, y = skd.make_classification(
            n_samples=1000,
            n_features=10,
            n_informative=5,
            n_redundant=0,
            n_classes=4,
            n_clusters_per_class=2,
            class_sep=1.0,
            flip_y=0.1,
            random_state=SPLIT_SEED,
        )
        return _build(name, x, y, "classification", standardise_x=False)
    if name == "diabetes":
        d = skd.load_diabetes()
        return _build(name, d.data, d.target.astype(np.float64), "regression", True)
    if name.endswith(".npz"):
        return load_npz(name)
    raise ValueError(f"unknown data set {name!r}: use one of {BUILTIN} or a path to a .npz file")
