"""What mixing costs inside a training step: overhead over no mixup.

    python -m benchmarks.train_step            # CPU (and CUDA when available)
    python -m benchmarks.train_step --quick

A small ResNet (written here, no torchvision) on CIFAR-shaped random data; the median
step time (forward, backward, SGD update) with no mixup, vanilla eager mixup, SK Mixup
with input-space distances, SK Mixup with embedding distances from an extra no-grad
forward (what the authors do) or from a ``kmixup.FeatureBank`` filled by the training
forward (no extra forward), and SK Mixup at a hidden layer (``kmixup.HiddenMixup``).
Results: JSON, markdown and a PNG in benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import kmixup
from benchmarks.throughput import RESULTS, device_name, vanilla
from kmixup.experiments.methods import soft_cross_entropy


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


def run(device: torch.device, batch: int, steps: int) -> list[dict]:
    torch.manual_seed(0)
    model = SmallResNet().to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    times = {}
    for name, step in tqdm(make_steps(model, 10).items(), desc=f"train step ({device})"):
        for _ in range(3):
            step(x, y)
        samples = []
        for _ in range(steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            step(x, y)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            samples.append(time.perf_counter() - t0)
        times[name] = statistics.median(samples)
    base = times["no mixup"]
    return [{"device": device_name(device), "method": name, "median_ms": t * 1e3,
             "overhead_vs_no_mixup": t / base - 1} for name, t in times.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--devices", nargs="+")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    args.out.mkdir(parents=True, exist_ok=True)
    for dev in devices:
        device = torch.device(dev)
        rows = run(device, args.batch, 5 if args.quick else 20)
        lines = [f"**{rows[0]['device']}**, SmallResNet, batch {args.batch}x3x32x32", "",
                 "| method | median step ms | overhead vs no mixup |", "|---|---:|---:|"]
        lines += [f"| {r['method']} | {r['median_ms']:.1f} | "
                  f"{100 * r['overhead_vs_no_mixup']:+.1f}% |" for r in rows]
        table = "\n".join(lines) + "\n"
        print(table)
        stem = args.out / f"train_step_{device.type}{'_quick' if args.quick else ''}"
        meta = {"torch": torch.__version__, "backends": kmixup.backend_info(),
                "date": datetime.date.today().isoformat(), "batch": args.batch}
        stem.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
        stem.with_suffix(".md").write_text(table)
        _plot(rows, stem.with_suffix(".png"))
        print(f"wrote {stem}.json, .md and .png")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.barh([r["method"] for r in rows], [r["median_ms"] for r in rows], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("median step time (ms)")
    ax.set_title(f"training step, {rows[0]['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
