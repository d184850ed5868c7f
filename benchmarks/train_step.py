"""What mixing costs inside a training step: overhead over no mixup.

    python -m benchmarks.train_step                  # CPU (and CUDA when available)
    python -m benchmarks.train_step --quick
    python -m benchmarks.train_step --save-results   # write into benchmarks/results/

A small ResNet (written here, no torchvision) on CIFAR-shaped random data; the
step time (forward, backward, SGD update) with no mixup, vanilla eager mixup, SK Mixup
with input-space distances, SK Mixup with embedding distances from an extra no-grad
forward (what the authors do) or from a ``kmixup.FeatureBank`` filled by the training
forward (no extra forward), and SK Mixup at a hidden layer (``kmixup.HiddenMixup``).
The steps are interleaved (each round runs one step of every method, in a shuffled
order; benchmarks/_harness.py) and the overhead is taken between minima. CPU runs repeat
for each ``--threads`` value. Results: JSON, markdown and a PNG in ``benchmarks/out/``
unless ``--out`` or ``--save-results`` say otherwise.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import kmixup
from kmixup.experiments.methods import soft_cross_entropy

from . import _harness as H
from .throughput import device_name, vanilla


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


class SmallResNet(nn.Module):
    """ResNet-8-like: three stages of one basic block; ``embed`` is the pooled feature."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        self.stages = nn.Sequential(Block(width, width, 1), Block(width, 2 * width, 2),
                                    Block(2 * width, 4 * width, 2))
        self.head = nn.Linear(4 * width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


def make_steps(model: nn.Module, num_classes: int) -> dict:
    """method -> fn(x, y) doing one optimisation step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sk = kmixup.KernelMixup(num_classes=num_classes)
    sk_anchored = kmixup.KernelMixup(num_classes=num_classes, dominant_anchor=True)
    hidden = kmixup.HiddenMixup(model, "stages.1", kmixup.KernelMixup(num_classes=num_classes))
    bank = None  # sized on the first call; the same batch is every step, so index = arange

    def optimise(loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def update(x, target):
        optimise(soft_cross_entropy(model(x), target))

    def no_mixup(x, y):
        update(x, torch.nn.functional.one_hot(y, num_classes).float())

    def vanilla_mixup(x, y):
        perm = torch.randperm(x.shape[0], device=x.device)
        lam = torch.distributions.Beta(1.0, 1.0).sample((x.shape[0],)).to(x.device)
        one_hot = torch.nn.functional.one_hot(y, num_classes).float()
        update(vanilla(x, perm, lam), vanilla(one_hot, perm, lam))

    def sk_input(x, y):
        update(*sk(x, y))

    def sk_embedding(x, y):
        with torch.no_grad():
            feats = model.embed(x)
        update(*sk(x, y, feats=feats))

    def sk_bank(x, y):
        nonlocal bank
        index = torch.arange(x.shape[0])
        if bank is None:
            bank = kmixup.FeatureBank(x.shape[0], model.head.in_features, device=x.device)
        x_mix, y_mix = sk_anchored(x, y, feats=bank.lookup(index))
        emb = model.embed(x_mix)
        bank.update(index, emb)
        optimise(soft_cross_entropy(model.head(emb), y_mix))

    def sk_hidden(x, y):
        optimise(soft_cross_entropy(*hidden(x, y)))

    return {"no mixup": no_mixup, "vanilla eager mixup": vanilla_mixup,
            "SK Mixup, input distances": sk_input,
            "SK Mixup, embedding distances (extra forward)": sk_embedding,
            "SK Mixup, embedding distances (FeatureBank)": sk_bank,
            "SK Mixup, hidden layer (HiddenMixup)": sk_hidden}


def run(device: torch.device, batch: int, threads: int, args: argparse.Namespace
        ) -> list[dict]:
    """Interleaved rounds of one step per method (benchmarks/_harness.py); rows with the
    minimum, median, IQR and the overhead over no mixup from the minima."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SmallResNet().to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    steps = make_steps(model, 10)
    cases = [H.Case(name, functools.partial(step, x, y)) for name, step in steps.items()]
    stats, load = H.time_cases(
        cases, device, args, desc=f"train step ({device}, {threads} thread{'s' * (threads > 1)})")
    base = stats["no mixup"]
    return [{"device": device_name(device), "device_type": device.type, "threads": threads,
             "method": name, **s, "overhead_vs_no_mixup": s["min_ms"] / base["min_ms"] - 1,
             "no_mixup_flagged": base["flagged"], **load} for name, s in stats.items()]


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# Training-step overhead of mixing: {result['device']}", "",
             f"Machine: {H.machine_line(result['machine'], result['threads'])}.", "",
             f"SmallResNet, batch {s['batch']}x3x32x32: forward, backward and SGD update. "
             f"Interleaved rounds (one step of every method per round, shuffled), up to "
             f"{s['rounds']} rounds or {s['budget']:g} s, at least {s['min_rounds']}; the "
             f"overhead is between minima. ⚠: not to be trusted (IQR/median above "
             f"{s['max_spread']:g}, or the fastest step kept the thread on a CPU for less "
             f"than {s['min_cpu_share']:g} of its wall time; on an overhead: for the row or "
             f"for no mixup).", ""]
    for threads in result["threads"]:
        mine = [r for r in result["rows"] if r["threads"] == threads]
        lines += [f"**{threads} thread{'s' * (threads > 1)}** ({mine[0]['samples']} rounds; "
                  f"load average {H.fmt_load(mine[0]['load_before'], mine[0]['load_after'])} "
                  f"on {result['machine']['usable_cpus']} CPUs)", "",
                  "| method | min step ms | median ms | IQR/median | CPU share | overhead vs "
                  "no mixup |", "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {H.fmt_ms(r['min_ms'])} | {H.fmt_ms(r['median_ms'])} | "
                  f"{H.fmt_spread(r)} | {H.fmt_share(r)} | "
                  f"{100 * r['overhead_vs_no_mixup']:+.1f}%"
                  f"{' ⚠' if r['flagged'] or r['no_mixup_flagged'] else ''} |" for r in mine]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds")
    parser.add_argument("--batch", type=int, default=128)
    H.add_device_args(parser)
    H.add_timing_args(parser, rounds=30, budget=90)
    H.add_output_args(parser)
    args = parser.parse_args(argv)
    H.resolve_device_args(args)
    args.rounds = args.rounds or (5 if args.quick else 30)
    args.budget = args.budget if args.budget is not None else (10 if args.quick else 90)

    def rows_for(device: torch.device, thread_list: list[int]) -> list[dict]:
        return [row for threads in tqdm(thread_list, desc=f"train step ({device})",
                                        disable=None)
                for row in run(device, args.batch, threads, args)]

    return H.run_devices(args, "train_step", rows_for, ("batch",), markdown, _plot)


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = result["threads"]
    fig, axes = plt.subplots(1, len(threads), squeeze=False, sharey=True,
                             figsize=(4 + 3.5 * len(threads), 3.4))
    for ax, t in zip(axes[0], threads):
        mine = [r for r in result["rows"] if r["threads"] == t]
        for k, r in enumerate(mine):
            ax.barh(k, r["min_ms"], color="tab:blue", alpha=0.35 if r["flagged"] else 0.9,
                    hatch="////" if r["flagged"] else None,
                    edgecolor="k" if r["flagged"] else "none", linewidth=0.5)
            ax.text(r["min_ms"], k, f" {r['min_ms']:.1f}{'?' if r['flagged'] else ''}",
                    va="center", fontsize=7)
        ax.set_yticks(range(len(mine)), [r["method"] for r in mine], fontsize=7)
        ax.margins(x=0.2)
        ax.set_xlabel("min step time (ms); hatched: not to be trusted", fontsize=8)
        ax.set_title(f"{t} thread{'s' * (t > 1)}", fontsize=9)
    axes[0][0].invert_yaxis()
    fig.suptitle(f"training step, batch {result['settings']['batch']}, {result['device']}\n"
                 f"{H.machine_line(result['machine'])}", fontsize=7)
    H.save_figure(fig, path)


if __name__ == "__main__":
    main()
