"""Figures: reliability diagrams, toy decision boundaries, regression coverage curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["plot_coverage", "plot_decision_boundaries", "plot_reliability"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(n, max_cols)
    return math.ceil(n / cols), cols


def plot_reliability(path: Path, title: str, panels: list[dict]) -> None:
    """One reliability diagram per method.

    Args:
        path: PNG to write.
        title: Figure title.
        panels: ``{"label", "raw", "ts", "ece", "ece_ts"}`` per method, where ``raw`` and
            ``ts`` are :func:`kmixup.experiments.metrics.reliability_bins` outputs of the
            test predictions before and after temperature scaling.
    """
    plt = _pyplot()
    rows, cols = _grid(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, p in zip(axes.flat, panels):
        raw, ts = p["raw"], p["ts"]
        width = 1.0 / len(raw["centre"])
        centre, count = np.asarray(raw["centre"]), np.asarray(raw["count"])
        acc = np.nan_to_num(np.asarray(raw["acc"]))
        # Shade by share of samples: most predictions sit in the top bin, and a nearly
        # empty bin should not catch the eye as much as a full one.
        shade = 0.2 + 0.8 * np.sqrt(count / max(count.max(), 1))
        colours = [(0.30, 0.45, 0.69, a) for a in shade]
        ax.bar(
            centre,
            acc,
            width=width,
            color=colours,
            edgecolor="white",
            lw=0.5,
            label="accuracy (raw; shade: share of samples)",
        )
        # The gap between each bar and the diagonal, hatched so that it reads the same
        # above a bar (over-confident) as inside it (under-confident).
        lo = np.minimum(acc, centre)
        gap = np.where(count > 0, np.abs(centre - acc), 0.0)
        ax.bar(
            centre,
            gap,
            bottom=lo,
            width=width,
            fill=False,
            hatch="///",
            edgecolor="#c44e52",
            lw=0,
            label="gap to diagonal",
        )
        keep = np.asarray(ts["count"]) >= 5  # a bin of 1-4 samples is mostly noise
        ax.plot(
            np.asarray(ts["conf"])[keep],
            np.asarray(ts["acc"])[keep],
            "o-",
            ms=3,
            color="black",
            lw=1,
            label="after temp. scaling",
        )
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(
            f"{p['label']}\nECE {100 * p['ece']:.2f}% -> {100 * p['ece_ts']:.2f}% (TS)", fontsize=9
        )
        ax.set_xlabel("confidence")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07 / rows, 1, 1))  # room for the legend below
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_decision_boundaries(path: Path, rows: list[dict]) -> None:
    """Predicted ``P(y = 1)`` over the plane, one row per toy set, one column per method.

    Args:
        path: PNG to write.
        rows: ``{"name", "x", "y", "xx", "yy", "panels": [(label, prob_grid, note)]}``:
            training points ``x`` ``[N, 2]``, ``y`` ``[N]``, the mesh ``xx``, ``yy`` and
            per method the probability of class 1 on the mesh.
    """
    plt = _pyplot()
    ncol = max(len(r["panels"]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(3.0 * ncol, 2.9 * len(rows)), squeeze=False)
    mesh = None
    for r, row in enumerate(rows):
        for c in range(ncol):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(row["panels"]):
                ax.axis("off")
                continue
            label, prob, note = row["panels"][c]
            mesh = ax.contourf(
                row["xx"],
                row["yy"],
                prob,
                levels=np.linspace(0, 1, 21),
                cmap="RdBu",
                vmin=0,
                vmax=1,
            )
            ax.contour(row["xx"], row["yy"], prob, levels=[0.5], colors="black", linewidths=1)
            # Class 1 dark blue, class 0 dark red: the colours of P(y = 1) = 1 and 0.
            colours = np.where(np.asarray(row["y"]) == 1, "#08306b", "#67000d")
            ax.scatter(
                row["x"][:, 0], row["x"][:, 1], c=colours, s=4, edgecolors="white", linewidths=0.2
            )
            ax.set_title(f"{label}\n{note}", fontsize=8)
            if c == 0:
                ax.set_ylabel(row["name"])
    if mesh is not None:
        cb = fig.colorbar(mesh, ax=axes, fraction=0.02)
        cb.set_label("predicted P(y = 1)")
    fig.suptitle("Decision boundary (black, P = 0.5) and confidence, training points on top")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_coverage(path: Path, title: str, levels: list[float], curves: list[dict]) -> None:
    """Observed coverage of central Gaussian intervals against the nominal level.

    Args:
        curves: ``{"label", "raw", "vs"}``: observed coverage per level before and after
            variance scaling.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, key, name in zip(axes, ("raw", "vs"), ("raw", "after variance scaling")):
        for c in curves:
            ax.plot(levels, c[key], marker="o", ms=3, label=c["label"])
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("nominal coverage")
    axes[0].set_ylabel("observed coverage (test)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
