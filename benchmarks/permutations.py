"""What the shape of ``perm`` costs: in-place SK Mixup by the cycles of the permutation.

    python -m benchmarks.permutations                  # 256x3x224x224, float32 and bfloat16
    python -m benchmarks.permutations --quick
    python -m benchmarks.permutations --save-results   # write into benchmarks/results/

The CPU kernels walk the pairs in the cycle order of ``perm`` (docs/design.md): runs of
four pairs along long cycles, short cycles (up to four rows) swept whole, and in place a
copy of the first row of each longer cycle. This times ``kernel_mix_`` (beta_cdf) in place
with permutations of every kind of cycle structure, against ``dst.copy_(x)`` into a
preallocated tensor, interleaved in one loop (benchmarks/_harness.py), ratios between
minima. Results: JSON, markdown and a PNG in ``benchmarks/out/`` unless ``--out`` or
``--save-results`` say otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from kmixup import functional as F

from . import _harness as H
from .throughput import COPY, device_name, make_batch


def consecutive_cycles(batch: int, length: int, device: torch.device) -> torch.Tensor:
    """Rows cut into consecutive cycles of ``length`` rows (the remainder fixed)."""
    perm = torch.arange(batch, device=device)
    whole = batch - batch % length
    perm[:whole] = perm[:whole].view(-1, length).roll(-1, 1).flatten()
    return perm


def permutations(batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Permutations with the cycle structures a user meets, by name."""
    gen = torch.Generator(device=device).manual_seed(1)
    blocks = [start + torch.randperm(min(8, batch - start), generator=gen, device=device)
              for start in range(0, batch, 8)]
    return {
        "random (torch.randperm)": torch.randperm(batch, generator=gen, device=device),
        "one cycle (roll(1), torchvision)": torch.arange(batch, device=device).roll(1),
        "flip(0) (timm's batch pairing)": torch.arange(batch - 1, -1, -1, device=device),
        "random within blocks of 8": torch.cat(blocks),
        **{f"cycles of {n} rows": consecutive_cycles(batch, n, device) for n in (2, 3, 5)},
    }


def run(device: torch.device, shape: tuple[int, ...], dtype: torch.dtype, threads: int,
        args: argparse.Namespace) -> list[dict]:
    if device.type == "cpu":
        torch.set_num_threads(threads)
    b = make_batch(shape, dtype, device)
    cases = [H.Case(COPY, lambda: b.dst.copy_(b.x))]
    for name, perm in permutations(shape[0], device).items():
        cases.append(H.Case(name, lambda perm=perm: F.kernel_mix_(
            b.work, perm, b.lam, warping="beta_cdf", validate=False), b.restore))
    stats, load = H.time_cases(
        cases, device, args, desc=f"{dtype} ({device}, {threads} thread{'s' * (threads > 1)})")
    floor = stats[COPY]
    return [{"device": device_name(device), "device_type": device.type,
             "dtype": str(dtype).removeprefix("torch."), "threads": threads, "perm": name,
             **s, "x_copy": s["min_ms"] / floor["min_ms"], "copy_flagged": floor["flagged"],
             **load} for name, s in stats.items() if name != COPY]


def _configs(rows: list[dict]) -> list[tuple[str, int]]:
    return list(dict.fromkeys((r["dtype"], r["threads"]) for r in rows))


def _row(rows: list[dict], perm: str, dtype: str, threads: int) -> dict | None:
    return next((r for r in rows if (r["perm"], r["dtype"], r["threads"])
                 == (perm, dtype, threads)), None)


def _flagged(row: dict) -> bool:
    return row["flagged"] or row["copy_flagged"]


def markdown(result: dict) -> str:
    s, rows = result["settings"], result["rows"]
    configs = _configs(rows)
    lines = [f"# In-place SK Mixup by permutation shape: {result['device']}", "",
             f"Machine: {H.machine_line(result['machine'], result['threads'])}.", "",
             f"`kernel_mix_(x, perm, lam, warping=\"beta_cdf\")` on a {s['shape']} batch, "
             f"restored before every call outside the timer, against `dst.copy_(x)` into a "
             f"preallocated tensor. Interleaved rounds (every method once per round, "
             f"shuffled), up to {s['rounds']} rounds or {s['budget']:g} s, at least "
             f"{s['min_rounds']}; time ÷ `copy_`'s, between minima (milliseconds in "
             f"brackets). ⚠: not to be trusted (IQR/median above {s['max_spread']:g}, or the "
             f"fastest call kept the thread on a CPU for less than {s['min_cpu_share']:g} of "
             f"its wall time; for the row or for `copy_`).", "",
             "| perm | " + " | ".join(f"{d}, {t} thread{'s' * (t > 1)}" for d, t in configs)
             + " |", "|---|" + "---:|" * len(configs)]
    for perm in dict.fromkeys(r["perm"] for r in rows):
        cells = []
        for dtype, threads in configs:
            row = _row(rows, perm, dtype, threads)
            cells.append("–" if row is None else f"{row['x_copy']:.2f}"
                         f"{' ⚠' if _flagged(row) else ''} ({H.fmt_ms(row['min_ms'])})")
        lines.append(f"| {perm} | " + " | ".join(cells) + " |")
    copies = {(r["dtype"], r["threads"]): r["min_ms"] / r["x_copy"] for r in rows}
    lines += ["", "`copy_` itself: " + "; ".join(
        f"{d}, {t} thread{'s' * (t > 1)}: {H.fmt_ms(copies[d, t])} ms" for d, t in configs), ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    configs = _configs(rows)
    perms = list(dict.fromkeys(r["perm"] for r in rows))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.55 * len(perms)))
    height = 0.8 / len(configs)
    for c, (dtype, threads) in enumerate(configs):
        for k, perm in enumerate(perms):
            row = _row(rows, perm, dtype, threads)
            if row is None:
                continue
            flagged = _flagged(row)
            ax.barh(k + c * height, row["x_copy"], height, color=f"C{c}",
                    alpha=0.35 if flagged else 0.9, hatch="////" if flagged else None,
                    label=f"{dtype}, {threads} thread{'s' * (threads > 1)}" if k == 0 else None)
    ax.axvline(1.0, color="k", linewidth=0.8)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(perms))], perms, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("kernel_mix_ in place ÷ dst.copy_(x) (min over rounds); hatched: noisy",
                  fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(f"in-place SK Mixup by permutation, {result['settings']['shape']}, "
                 f"{result['device']}\n{H.machine_line(result['machine'])}", fontsize=7)
    H.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller batch, a few rounds")
    parser.add_argument("--shape", default=None,
                        help="batch shape, e.g. 256x3x224x224 (the default; --quick: 32x3x64x64)")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    H.add_device_args(parser)
    H.add_timing_args(parser, rounds=40, budget=20)
    H.add_output_args(parser)
    args = parser.parse_args(argv)
    H.resolve_device_args(args)
    args.shape = args.shape or ("32x3x64x64" if args.quick else "256x3x224x224")
    shape = tuple(int(n) for n in args.shape.split("x"))
    args.rounds = args.rounds or (5 if args.quick else 40)
    args.budget = args.budget if args.budget is not None else (2 if args.quick else 20)

    def rows_for(device: torch.device, thread_list: list[int]) -> list[dict]:
        configs = [(d, t) for d in args.dtypes for t in thread_list]
        return [row for dtype, threads in tqdm(configs, desc=f"permutations ({device})",
                                               disable=None)
                for row in run(device, shape, getattr(torch, dtype), threads, args)]

    return H.run_devices(args, "permutations", rows_for, ("shape", "dtypes"), markdown, plot)


if __name__ == "__main__":
    main()
