"""Figures for the README, written next to this file.

    python docs/make_figures.py [--out DIR]

``kernel_warps.png``: the mixing coefficient ``k`` of a pair against its normalised
squared distance ``dn = d / mean(d)``, for a drawn ``lam = 0.25`` and a few
``(tau_max, tau_std)`` settings, under each warp (``kmixup.functional.warp`` on
``tau = tau_max * exp(-(dn - 1) / (2 * tau_std**2))``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from kmixup import functional as F

HERE = Path(__file__).resolve().parent
LAM = 0.25
# (tau_max, tau_std): the classification default, a wider kernel, the README's regression
# example, the setting the experiments' search chose, an authors' regression config.
SETTINGS = [(1.0, 0.25), (1.0, 0.5), (5.0, 1.0), (0.1, 0.5), (1e-4, 0.5)]
WARPINGS = ["beta_cdf", "inverse_beta_cdf"]


def kernel_curves(dn: torch.Tensor) -> dict[tuple[str, float, float], torch.Tensor]:
    """``(warping, tau_max, tau_std) -> k`` at the normalised distances ``dn``."""
    curves = {}
    for warping in WARPINGS:
        for tau_max, tau_std in SETTINGS:
            tau = tau_max * torch.exp(-(dn - 1) / (2 * tau_std**2))
            curves[(warping, tau_max, tau_std)] = F.warp(LAM, tau, warping)
    return curves


def plot_kernel_warps(path: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dn = torch.linspace(0, 3, 301, dtype=torch.float64)
    curves = kernel_curves(dn)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.1), sharey=True)
    for ax, warping in zip(axes, WARPINGS):
        for i, (tau_max, tau_std) in enumerate(SETTINGS):
            ax.plot(dn, curves[(warping, tau_max, tau_std)], color=f"C{i}",
                    label=f"tau_max={tau_max:g}, tau_std={tau_std:g}")
        for level, text in ((0.5, "even blend"), (LAM, "plain mixup (k = lam)"),
                            (0.0, "no mixing")):
            ax.axhline(level, color="grey", lw=0.6, ls=":")
            ax.text(3, level, text, ha="right", va="bottom", fontsize=7, color="grey")
        ax.axvline(1, color="grey", lw=0.6, ls="--")
        ax.set_title(f'warping="{warping}"', fontsize=9)
        ax.set_xlabel("normalised squared pair distance dn = d / mean(d)")
    axes[0].set_ylabel(f"coefficient k for lam = {LAM}")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(SETTINGS),
               fontsize=7, frameon=False)
    fig.suptitle("SK Mixup: how tau_max and tau_std act (same direction under both warps: "
                 "small tau -> no mixing, large tau -> even blend)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return curves


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "kernel_warps.png"
    plot_kernel_warps(path)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
