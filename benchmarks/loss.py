"""Loss on a mixed batch: ``kmixup.mix_cross_entropy`` against dense soft targets.

    python -m benchmarks.loss                  # CPU (and CUDA when available)
    python -m benchmarks.loss --quick
    python -m benchmarks.loss --save-results   # write into benchmarks/results/

Forward and backward of the loss for logits ``[B, C]`` (float32, made fresh each step
from a leaf as a network's last layer makes them, so that what the loss keeps of them
counts) at C = 10, 1000 and 21843 (ImageNet-21k), label smoothing 0.1, for:

* ``integer CE (no mixing)``: ``F.cross_entropy(logits, y)``, the floor;
* ``kmixup.mix_cross_entropy``: from ``y``, ``perm`` and ``coeff``;
* ``dense: mix_targets + F.cross_entropy``: build the ``[B, C]`` mixed targets
  (``kmixup.functional.mix_targets``), then torch's soft-target cross-entropy;
* ``dense: mix_targets + SoftTargetCrossEntropy``: the same targets, timm's loss
  ``sum(-t * log_softmax(logits), -1).mean()``.

Value checks are off in both kmixup calls (``validate=False``), so the compute is timed.
Timing: interleaved rounds (benchmarks/_harness.py), ratios between minima. Peak memory:
the most bytes held at once during one forward+backward, above what was held before it
(the logits and their gradient, allocated by every method, included), and the memory held
after the forward: what a loss keeps beside the network's activations until the
backward (on the loss alone the peak falls in the backward, once the dense targets are
freed, so it hides their cost). On CUDA they come from ``torch.cuda.memory_allocated``
and ``max_memory_allocated``; on the CPU torch keeps no such statistic, so every
allocation and free of the call is recorded with ``torch.profiler`` (``profile_memory``)
and replayed in order, keeping the running total and its maximum. Results: JSON,
markdown and a PNG in ``benchmarks/out/`` unless ``--out`` or ``--save-results`` say
otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import kmixup
from kmixup.functional import mix_targets

from . import _harness as H
from .throughput import device_name

CLASSES = [10, 1000, 21843]
LABEL_SMOOTHING = 0.1
FLOOR = "integer CE (no mixing)"
KMIXUP = "kmixup.mix_cross_entropy"
DENSE = "dense: mix_targets + F.cross_entropy"
MEMORY_SOURCE = {True: "torch.cuda.memory_allocated",
                 False: "CPU allocations recorded by torch.profiler, replayed in order"}


def make_losses(batch: int, classes: int, device: torch.device
                ) -> tuple[dict[str, Callable[[], torch.Tensor]], Callable[[], None]]:
    """``(forwards, clear)``: method -> fn() computing the loss (the forward) from fixed
    logits, and a function that drops their gradient, to call before each step."""
    gen = torch.Generator(device=device).manual_seed(classes)
    head = torch.randn(batch, classes, device=device, generator=gen).requires_grad_()
    y = torch.randint(0, classes, (batch,), device=device, generator=gen)
    perm = torch.randperm(batch, device=device, generator=gen)
    coeff = torch.rand(batch, device=device, generator=gen)
    eps = LABEL_SMOOTHING

    def dense_targets():
        return mix_targets(y, perm, coeff, classes, eps, validate=False)

    def logits():
        # As a network's last layer: fresh logits each step that only the loss may keep
        # for the backward (multiplying by a number saves nothing).
        return head * 1.0

    def clear():
        head.grad = None

    return {
        FLOOR: lambda: F.cross_entropy(logits(), y, label_smoothing=eps),
        KMIXUP: lambda: kmixup.mix_cross_entropy(logits(), y, perm, coeff, eps, validate=False),
        DENSE: lambda: F.cross_entropy(logits(), dense_targets()),
        "dense: mix_targets + SoftTargetCrossEntropy": lambda: torch.sum(
            -dense_targets() * torch.log_softmax(logits(), dim=-1), dim=-1).mean(),
    }, clear


def _held_and_peak(fn: Callable[[], object], device: torch.device) -> tuple[object, int, int]:
    """``(fn(), bytes held after it, most bytes held during it)``, both above the start."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        value = fn()
        torch.cuda.synchronize(device)
        return (value, torch.cuda.memory_allocated(device) - before,
                torch.cuda.max_memory_allocated(device) - before)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                profile_memory=True) as prof:
        value = fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        held += event.nbytes()  # negative for a free
        peak = max(peak, held)
    return value, held, peak


def memory(forward: Callable[[], torch.Tensor], device: torch.device) -> tuple[int, int]:
    """Bytes held between the forward and the backward (what stays beside the network's
    activations), and the peak over forward + backward, both above the start."""
    loss, held, forward_peak = _held_and_peak(forward, device)
    _, _, backward_peak = _held_and_peak(loss.backward, device)
    return held, max(forward_peak, held + backward_peak)


def run(device: torch.device, batch: int, classes: int, threads: int,
        args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(threads)
    forwards, clear = make_losses(batch, classes, device)
    steps = {name: (lambda f=forward: f().backward()) for name, forward in forwards.items()}
    held, peaks = {}, {}
    for name, forward in forwards.items():
        clear()
        steps[name]()  # warm-up
        clear()
        held[name], peaks[name] = memory(forward, device)
        clear()
    stats, load = H.time_cases(
        [H.Case(n, step, clear) for n, step in steps.items()], device, args,
        desc=f"loss C={classes} ({device}, {threads} thread{'s' * (threads > 1)})")
    dense = stats[DENSE]
    return [{"device": device_name(device), "device_type": device.type, "threads": threads,
             "batch": batch, "classes": classes, "method": name, **s,
             "time_vs_dense": s["min_ms"] / dense["min_ms"], "dense_flagged": dense["flagged"],
             "held_after_forward_mib": held[name] / 2**20, "peak_mib": peaks[name] / 2**20,
             "peak_vs_dense": peaks[name] / peaks[DENSE], **load}
            for name, s in stats.items()]


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [f"# Loss on a mixed batch, forward + backward: {result['device']}", "",
             f"Machine: {H.machine_line(result['machine'], result['threads'])}.", "",
             f"Logits [{s['batch']}, C] float32, label smoothing {LABEL_SMOOTHING}. "
             f"Interleaved rounds (every method once per round, shuffled), up to {s['rounds']} "
             f"rounds or {s['budget']:g} s, at least {s['min_rounds']}; ratios between minima. "
             f"Memory, above what was held before the call: held after the forward (what "
             f"stays beside a network's activations until the backward) and the peak over "
             f"forward + backward (the logits' gradient included; "
             f"{MEMORY_SOURCE[result['device_type'] == 'cuda']}). "
             f"⚠: not to be trusted (IQR/median above {s['max_spread']:g}, or the fastest call "
             f"kept the thread on a CPU for less than {s['min_cpu_share']:g} of its wall "
             f"time; on a ratio: for the row or for the dense row).", ""]
    for threads in result["threads"]:
        lines += [f"**{threads} thread{'s' * (threads > 1)}**", "",
                  "| C | method | min ms | median ms | IQR/median | CPU share | time vs dense "
                  "| held after forward MiB | peak MiB |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in (r for r in result["rows"] if r["threads"] == threads):
            lines.append(
                f"| {r['classes']} | {r['method']} | {H.fmt_ms(r['min_ms'])} | "
                f"{H.fmt_ms(r['median_ms'])} | {H.fmt_spread(r)} | {H.fmt_share(r)} | "
                f"{r['time_vs_dense']:.2f}{' ⚠' if r['flagged'] or r['dense_flagged'] else ''}"
                f" | {r['held_after_forward_mib']:.2f} | {r['peak_mib']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["threads"] == result["threads"][0]]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    classes = list(dict.fromkeys(r["classes"] for r in rows))
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    width = 0.8 / len(methods)
    for m, method in enumerate(methods):
        mine = {r["classes"]: r for r in rows if r["method"] == method}
        xs = [k + m * width for k in range(len(classes)) if classes[k] in mine]
        for ax, key in zip(axes, ("min_ms", "held_after_forward_mib", "peak_mib")):
            values = [mine[c][key] for c in classes if c in mine]
            flagged = [mine[c]["flagged"] and key == "min_ms" for c in classes if c in mine]
            ax.bar(xs, values, width, label=method, color=f"C{m}",
                   hatch=["////" if f else None for f in flagged], edgecolor="k", linewidth=0.3)
    for ax, label in zip(axes, ("min time, forward + backward (ms); hatched: not to be "
                                "trusted", "held after the forward (MiB)",
                                "peak over forward + backward (MiB)")):
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(classes))],
                      [f"C = {c}" for c in classes])
        ax.set_yscale("log")
        ax.set_ylabel(label, fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"loss on a mixed batch, logits [{result['settings']['batch']}, C], "
                 f"{result['device']}, {result['threads'][0]} thread(s)\n"
                 f"{H.machine_line(result['machine'])}", fontsize=7)
    H.save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--classes", nargs="+", type=int, default=CLASSES)
    H.add_device_args(parser)
    H.add_timing_args(parser, rounds=50, budget=20)
    H.add_output_args(parser)
    args = parser.parse_args(argv)
    H.resolve_device_args(args)
    args.rounds = args.rounds or (5 if args.quick else 50)
    args.budget = args.budget if args.budget is not None else (2 if args.quick else 20)

    def rows_for(device: torch.device, thread_list: list[int]) -> list[dict]:
        return [row for threads in thread_list
                for classes in tqdm(args.classes, desc=f"loss ({device}, {threads} threads)",
                                    disable=None)
                for row in run(device, args.batch, classes, threads, args)]

    return H.run_devices(args, "loss", rows_for, ("batch", "classes"), markdown, plot,
                         extra={"label_smoothing": LABEL_SMOOTHING})


if __name__ == "__main__":
    main()
