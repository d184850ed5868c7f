"""Throughput of kmixup's mixing ops against every mixup a user would pick instead.

    python -m benchmarks.throughput --quick          # 3 shapes, float32, ~1 min on a CPU
    python -m benchmarks.throughput                  # every shape, float32 and bfloat16
    python -m benchmarks.throughput --save-results   # write into benchmarks/results/

All methods run in one process on the same batch, interleaved: each round calls every
method once in a shuffled order, for ``--rounds`` rounds or until ``--budget`` seconds per
configuration are spent (see benchmarks/_harness.py for why). Per method: the minimum
(the estimate of its cost), median, IQR and IQR/median, and the flags (``noisy``: IQR/median
above ``--max-spread``; ``disturbed``: even the fastest call was kept off the CPU, see
``--min-cpu-share``). Ratios are between minima: against vanilla eager mixup with per-sample
lam (``lam*x + (1-lam)*x[perm]``) and against the method's matching floor, ``x.clone()``
for out-of-place methods and ``dst.copy_(x)`` into a preallocated tensor for in-place
ones (and ``out=``). Bandwidth is the bytes the computation needs at least (the cost
model in docs/design.md: 2 passes over the batch for a copy or a plain mix, 3 for SK
Mixup, whose distances need a pass of their own) over the minimum time; on a GPU also
its fraction of the device peak and the host syncs of one call.

In-place methods (timm's ``Mixup``, ``kernel_mix_``, ``KernelMixup(inplace=True)``) mix a
work buffer that is restored from the input before every call, outside the timer.

CPU runs repeat for each ``--threads`` value (default: 1 and all usable cores). Results:
JSON, markdown and a PNG per device, in ``benchmarks/out/`` unless ``--out`` or
``--save-results`` say otherwise.
"""

from __future__ import annotations

import argparse
import inspect
import textwrap
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import special as sp
from tqdm import tqdm

import kmixup
from kmixup import _torch_kernels
from kmixup import functional as F

from . import _harness as H

SHAPES = {
    "cifar 128x3x32x32": (128, 3, 32, 32),
    "stl 64x3x128x128": (64, 3, 128, 128),
    "imagenet 256x3x224x224": (256, 3, 224, 224),
    "embeddings 1024x2048": (1024, 2048),
    "sequences 64x512x768": (64, 512, 768),
}
QUICK_SHAPES = ["cifar 128x3x32x32", "stl 64x3x128x128", "embeddings 1024x2048"]
# HBM peak by device name, for the fraction of peak (GB/s); --peak-gbps overrides.
PEAK_GBPS = {"H100 SXM": 3350, "H100 PCIe": 2000, "H100": 3350, "H200": 4800, "A100": 2039}
NUM_CLASSES = 10
WARPINGS = ("beta_cdf", "inverse_beta_cdf", "none")

BASELINE = "vanilla eager (per-sample lam)"
CLONE = "floor: x.clone() (out-of-place)"
COPY = "floor: dst.copy_(x) (in-place)"
COMPILED = "vanilla torch.compile (per-sample lam)"
FAMILIES = ("floor", "baseline", "library", "kmixup")


def vanilla(x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The baseline: eager mixup as most training scripts write it."""
    lam = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return lam * x + (1 - lam) * x[perm]


def timm_style_inplace(x: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
    """timm's in-place batch mix (``Mixup._mix_batch``), pairing by ``flip(0)``: the
    flipped copy is taken before ``x`` is scaled. A tensor ``lam`` ([B]) is per sample."""
    if isinstance(lam, torch.Tensor):
        lam = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    flipped = x.flip(0).mul_(1.0 - lam)
    return x.mul_(lam).add_(flipped)


def authors_scipy_path(x, perm, lam, tau_max=1.0, tau_std=0.25):
    """SK Mixup as the authors run it: distances on the device, the warp in scipy on the
    host (a device-to-host copy and back every step), the interpolation in eager torch."""
    d = (x.float() - x[perm].float()).pow(2).flatten(1).sum(1)
    dn = d / d.mean()
    tau = (tau_max * torch.exp(-(dn - 1) / (2 * tau_std**2))).cpu().numpy()
    with np.errstate(divide="ignore"):
        k = sp.betainc(1 / tau, 1 / tau, lam.cpu().numpy())
    k = torch.from_numpy(k).to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return k * x + (1 - k) * x[perm]


def pure_sk_mixup(x, perm, lam):
    """The pure-PyTorch SK Mixup kernel (what serves devices with no compiled kernel)."""
    return _torch_kernels.kernel_mix(x, perm, lam, x, 1.0, 0.25, "beta_cdf")


@dataclass
class Method:
    """``fn`` is timed; ``setup`` restores what an in-place ``fn`` overwrote (untimed).
    ``passes``: reads + writes of the batch the computation needs at least."""

    name: str
    family: str
    inplace: bool
    passes: int
    fn: Callable[[], object]
    setup: Callable[[], object] | None = None

    @property
    def floor(self) -> str:
        return COPY if self.inplace else CLONE


@dataclass
class Batch:
    x: torch.Tensor  # never modified
    y: torch.Tensor  # class indices
    perm: torch.Tensor
    lam: torch.Tensor  # [B] float32
    work: torch.Tensor  # mixed in place, restored from x before every call
    dst: torch.Tensor  # preallocated output (copy_ floor, out=)
    restore: Callable[[], object] = field(init=False)

    def __post_init__(self) -> None:
        self.restore = lambda: self.work.copy_(self.x)


def make_batch(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Batch:
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(shape, generator=gen, device=device).to(dtype)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=gen, device=device)
    perm = torch.randperm(shape[0], generator=gen, device=device)
    lam = torch.rand(shape[0], generator=gen, device=device)
    return Batch(x, y, perm, lam, x.clone(), torch.empty_like(x))


def _kwargs_for(fn: Callable, **kwargs) -> dict:
    """The keyword arguments ``fn`` accepts (for APIs that are still growing)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def optional_libraries() -> tuple[dict[str, Callable], dict[str, str]]:
    """timm's and torchvision's mixup, where they import: name -> factory(Batch) ->
    Method; and name -> why it is missing."""
    factories: dict[str, Callable[[Batch], Method]] = {}
    missing: dict[str, str] = {}
    timm_names = ["timm Mixup elem (in place, with targets)",
                  "timm Mixup batch (in place, with targets)"]
    try:
        from timm.data import Mixup as TimmMixup

        for name, mode in zip(timm_names, ("elem", "batch")):
            def factory(b: Batch, mode=mode, name=name) -> Method:
                mixer = TimmMixup(mixup_alpha=1.0, cutmix_alpha=0.0, prob=1.0, mode=mode,
                                  label_smoothing=0.0, num_classes=NUM_CLASSES)
                return Method(name, "library", True, 2, lambda: mixer(b.work, b.y), b.restore)
            factories[name] = factory
    except Exception as err:  # not installed, or incompatible with this torch
        for name in timm_names:
            missing[name] = f"timm does not import: {type(err).__name__}: {err}"
    tv_name = "torchvision v2.MixUp (with targets)"
    try:
        from torchvision.transforms import v2

        def tv_factory(b: Batch) -> Method:
            mixer = v2.MixUp(alpha=1.0, num_classes=NUM_CLASSES)
            return Method(tv_name, "library", False, 2, lambda: mixer(b.x, b.y))
        factories[tv_name] = tv_factory
    except Exception as err:
        missing[tv_name] = f"torchvision does not import: {type(err).__name__}: {err}"
    return factories, missing


def compiled_vanilla(b: Batch) -> tuple[Callable[[], object] | None, str]:
    """``torch.compile`` of :func:`vanilla`, compiled (first call) before any timing:
    (the call, "") or (None, why it failed)."""
    try:
        fn = torch.compile(vanilla, dynamic=False)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(b.x, b.perm, b.lam)
        tqdm.write(f"  torch.compile(vanilla): compiled in {time.perf_counter() - t0:.1f} s")
        return (lambda: fn(b.x, b.perm, b.lam)), ""
    except Exception as err:
        return None, f"torch.compile failed: {type(err).__name__}: {str(err).splitlines()[0]}"


def build_methods(b: Batch, compile_pure: bool, libraries: dict[str, Callable]
                  ) -> tuple[list[Method], dict[str, str]]:
    """Every method on batch ``b``, and the ones that could not be built (with why)."""
    x, y, perm, lam = b.x, b.y, b.perm, b.lam
    lam0 = float(lam[0])
    missing: dict[str, str] = {}
    methods = [
        Method(CLONE, "floor", False, 2, lambda: x.clone()),
        Method(COPY, "floor", True, 2, lambda: b.dst.copy_(x)),
        Method(BASELINE, "baseline", False, 2, lambda: vanilla(x, perm, lam)),
        Method("vanilla eager (per-batch lam)", "baseline", False, 2,
               lambda: vanilla(x, perm, lam[:1])),
        Method("timm-style in-place (per-batch lam)", "baseline", True, 2,
               lambda: timm_style_inplace(b.work, lam0), b.restore),
        Method("timm-style in-place (per-sample lam)", "baseline", True, 2,
               lambda: timm_style_inplace(b.work, lam), b.restore),
        Method("authors' scipy path", "baseline", False, 3,
               lambda: authors_scipy_path(x, perm, lam)),
    ]
    compiled, why = compiled_vanilla(b)
    if compiled is not None:
        methods.insert(4, Method(COMPILED, "baseline", False, 2, compiled))
    else:
        missing[COMPILED] = why
    for factory in libraries.values():
        methods.append(factory(b))

    def sk_passes(warping: str) -> int:
        return 2 if warping == "none" else 3

    for w in WARPINGS:
        methods.append(Method(f"kmixup kernel_mix {w}", "kmixup", False, sk_passes(w),
                              lambda w=w: F.kernel_mix(x, perm, lam, warping=w, validate=False)))
    # In-place and out= forms, where this kmixup has them.
    inplace_fn = getattr(F, "kernel_mix_", None)
    for w in WARPINGS:
        name = f"kmixup kernel_mix_ {w} (in place)"
        if inplace_fn is None:
            missing[name] = "kmixup.functional has no kernel_mix_"
            continue
        kw = _kwargs_for(inplace_fn, warping=w, validate=False)
        methods.append(Method(name, "kmixup", True, sk_passes(w),
                              lambda kw=kw: inplace_fn(b.work, perm, lam, **kw), b.restore))
    if inplace_fn is not None:
        # timm's batch mode pairs the batch with its reverse: cycles of two rows.
        flip = torch.arange(x.shape[0] - 1, -1, -1, device=x.device)
        kw = _kwargs_for(inplace_fn, warping="beta_cdf", validate=False)
        methods.append(Method("kmixup kernel_mix_ beta_cdf (in place, perm = flip(0))", "kmixup",
                              True, 3, lambda: inplace_fn(b.work, flip, lam, **kw), b.restore))
    for w in WARPINGS:
        name = f"kmixup kernel_mix {w} (out=)"
        if not _accepts(F.kernel_mix, "out"):
            missing[name] = "kmixup.functional.kernel_mix takes no out="
            continue
        methods.append(Method(name, "kmixup", True, sk_passes(w), lambda w=w: F.kernel_mix(
            x, perm, lam, warping=w, validate=False, out=b.dst)))
    transforms = [
        ("kmixup KernelMixup beta_cdf (with targets)", kmixup.KernelMixup, {}, "beta_cdf"),
        ("kmixup KernelMixup inverse_beta_cdf (paper CIFAR, with targets)",
         kmixup.KernelMixup, {"warping": "inverse_beta_cdf"}, "inverse_beta_cdf"),
        ("kmixup Mixup (with targets)", kmixup.Mixup, {}, "none"),
    ]
    for name, cls, kwargs, w in transforms:
        mixer = cls(num_classes=NUM_CLASSES, **kwargs)
        methods.append(Method(name, "kmixup", False, sk_passes(w), lambda m=mixer: m(x, y)))
        inplace_name = name.replace(" (", " inplace=True (", 1)
        if not _accepts(cls.__init__, "inplace"):
            missing[inplace_name] = f"kmixup.{cls.__name__} takes no inplace="
            continue
        mixer_ = cls(num_classes=NUM_CLASSES, inplace=True, **kwargs)
        methods.append(Method(inplace_name, "kmixup", True, sk_passes(w),
                              lambda m=mixer_: m(b.work, y), b.restore))
    if compile_pure:
        compiled_pure = torch.compile(pure_sk_mixup, dynamic=False)
        methods.append(Method("pure-PyTorch SK Mixup, torch.compile", "kmixup", False, 3,
                              lambda: compiled_pure(x, perm, lam)))
    return methods, missing


def count_syncs(fn: Callable[[], object], setup: Callable | None, device: torch.device
                ) -> int | None:
    """Host syncs in one call, on a GPU (None on CPU, where the question does not arise)."""
    if device.type != "cuda":
        return None
    if setup is not None:
        setup()
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{H.cpu_model()} CPU"


def peak_gbps(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_GBPS.items() if k in name), None)


def measure(device: torch.device, shape_name: str, dtype_name: str, threads: int,
            args: argparse.Namespace, libraries: dict[str, Callable]
            ) -> tuple[list[dict], list[dict], dict[str, dict], dict]:
    """One configuration: (rows, skipped, method descriptions, its conditions)."""
    torch.set_num_threads(threads)
    torch._dynamo.reset()  # compile afresh for this shape and thread count
    b = make_batch(SHAPES[shape_name], getattr(torch, dtype_name), device)
    methods, missing = build_methods(b, args.compile_pure, libraries)
    cases = [H.Case(m.name, m.fn, m.setup) for m in methods]
    load_before = H.load_average()
    samples, failed = H.interleave(
        cases, device, args.rounds, args.budget, args.min_rounds, args.warmup, args.seed,
        desc=f"{shape_name} {dtype_name} {threads}t")
    where = {"device_type": device.type, "shape": shape_name, "dtype": dtype_name,
             "threads": threads}
    skipped = [{**where, "method": n, "reason": r} for n, r in {**missing, **failed}.items()]
    load_after = H.load_average()
    stats = {n: H.summarize(s, args.max_spread, args.min_cpu_share) for n, s in samples.items()}
    batch_bytes = b.x.numel() * b.x.element_size()
    peak = peak_gbps(device, args.peak_gbps)
    rows = []
    for m in methods:
        if m.name not in stats:
            continue
        s, floor, base = stats[m.name], stats.get(m.floor), stats.get(BASELINE)
        gbps = m.passes * batch_bytes / (s["min_ms"] * 1e-3) / 1e9
        rows.append({
            "device": device_name(device), **where, "method": m.name, "family": m.family,
            "inplace": m.inplace, "floor": m.floor, **s,
            "ratio_to_vanilla": s["min_ms"] / base["min_ms"] if base else None,
            "vanilla_flagged": base["flagged"] if base else None,
            "ratio_to_floor": s["min_ms"] / floor["min_ms"] if floor else None,
            "floor_flagged": floor["flagged"] if floor else None,
            "min_bytes": m.passes * batch_bytes, "gbps": gbps,
            "fraction_of_peak": gbps / peak if peak else None,
            "host_syncs": count_syncs(m.fn, m.setup, device),
        })
    descriptions = {m.name: {"family": m.family, "inplace": m.inplace, "floor": m.floor,
                             "passes": m.passes} for m in methods}
    conditions = {**where, "rounds": max((v["samples"] for v in stats.values()), default=0),
                  "load_before": load_before, "load_after": load_after}
    return rows, skipped, descriptions, conditions


# ----------------------------------------------------------------------------- report


def _ratio_cell(value: float | None, *noisy: bool | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}{' ⚠' if any(noisy) else ''}"


def _configs(rows: list[dict]) -> list[tuple]:
    return list(dict.fromkeys((r["threads"], r["dtype"], r["shape"]) for r in rows))


def markdown(result: dict) -> str:
    rows, settings = result["rows"], result["settings"]
    lines = [
        f"# kmixup throughput: {result['device']}", "",
        f"Machine: {H.machine_line(result['machine'], result['threads'])}.", "",
        f"Interleaved rounds (each calls every method once, shuffled): up to "
        f"{settings['rounds']} rounds or {settings['budget']:g} s per configuration, at "
        f"least {settings['min_rounds']}; {settings['warmup']} warm-up calls. Times are "
        f"the minimum over the rounds (ms); ratios are between minima (lower is faster). "
        f"**Floor**: `x.clone()` for out-of-place methods, `dst.copy_(x)` into a "
        f"preallocated tensor for in-place ones. ⚠ (on a ratio: on the row or its "
        f"reference): not to be trusted, because the row is *noisy* (IQR/median above "
        f"{settings['max_spread']:g}) or *disturbed* (its fastest call kept the thread on "
        f"a CPU for less than {settings['min_cpu_share']:g} of the wall time; column "
        f"'CPU share'). 'min CPU ms': the least CPU time of the calling thread over the "
        f"calls, an estimate that preemption does not inflate (with one thread).", "",
    ]
    for threads, dtype in dict.fromkeys((t, d) for t, d, _ in _configs(rows)):
        mine = [r for r in rows if (r["threads"], r["dtype"]) == (threads, dtype)]
        shapes = list(dict.fromkeys(r["shape"] for r in mine))
        methods = list(dict.fromkeys(r["method"] for r in mine))
        for title, key, ref in (("time / matching floor", "ratio_to_floor", "floor_flagged"),
                                ("time / vanilla eager mixup (per-sample lam)",
                                 "ratio_to_vanilla", "vanilla_flagged")):
            lines += [f"## {title}: {threads} thread{'s' * (threads > 1)}, {dtype}", "",
                      "| method | " + " | ".join(shapes) + " |",
                      "|---|" + "---:|" * len(shapes)]
            for method in methods:
                cells = []
                for shape in shapes:
                    r = next((r for r in mine if (r["method"], r["shape"]) == (method, shape)),
                             None)
                    cells.append("n/a" if r is None else
                                 _ratio_cell(r[key], r["flagged"], r[ref]))
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Details", ""]
    for threads, dtype, shape in _configs(rows):
        mine = [r for r in rows if (r["threads"], r["dtype"], r["shape"]) == (threads, dtype,
                                                                             shape)]
        cond = next((c for c in result["conditions"] if (c["threads"], c["dtype"], c["shape"])
                     == (threads, dtype, shape)), {})
        lines += [f"**{shape}, {dtype}, {threads} thread{'s' * (threads > 1)}** "
                  f"({cond.get('rounds')} rounds; load average "
                  f"{H.fmt_load(cond.get('load_before'), cond.get('load_after'))} on "
                  f"{result['machine']['usable_cpus']} CPUs)", "",
                  "| method | min ms | median ms | IQR/median | CPU share | min CPU ms | × floor "
                  "| × vanilla | GB/s | % peak | host syncs |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in mine:
            peak = f"{100 * r['fraction_of_peak']:.0f}" if r["fraction_of_peak"] else "–"
            syncs = "–" if r["host_syncs"] is None else str(r["host_syncs"])
            lines.append(
                f"| {r['method']} | {H.fmt_ms(r['min_ms'])} | {H.fmt_ms(r['median_ms'])} | "
                f"{H.fmt_spread(r)} | {H.fmt_share(r)} | {H.fmt_cpu(r)} | "
                f"{_ratio_cell(r['ratio_to_floor'], r['flagged'], r['floor_flagged'])} | "
                f"{_ratio_cell(r['ratio_to_vanilla'], r['flagged'], r['vanilla_flagged'])} | "
                f"{r['gbps']:.1f} | {peak} | {syncs} |")
        lines.append("")
    reasons = dict.fromkeys((s["method"], s["reason"]) for s in result["skipped"])
    if reasons:
        lines += ["## Not timed", ""]
        lines += [f"- {method}: {reason}" for method, reason in reasons]
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Ratio to the matching floor: one panel per (threads, dtype, shape), one horizontal
    bar per method; hatched and pale where the row or its floor is flagged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = result["rows"]
    panel_rows = list(dict.fromkeys((r["threads"], r["dtype"]) for r in rows))
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    colors = dict(zip(FAMILIES, ("0.45", "tab:orange", "tab:green", "tab:blue")))
    fig, axes = plt.subplots(
        len(panel_rows), len(shapes), sharey=True, squeeze=False,
        figsize=(3.3 * len(shapes) + 0.065 * max(map(len, methods)) + 0.6,
                 (0.26 * len(methods) + 1.2) * len(panel_rows) + 1.2))
    ypos = np.arange(len(methods))
    for i, (threads, dtype) in enumerate(panel_rows):
        for j, shape in enumerate(shapes):
            ax = axes[i][j]
            for k, method in enumerate(methods):
                r = next((r for r in rows if (r["threads"], r["dtype"], r["shape"],
                                              r["method"]) == (threads, dtype, shape, method)),
                         None)
                if r is None or r["ratio_to_floor"] is None:
                    ax.text(1.0, k, " n/a", va="center", fontsize=7, color="0.5")
                    continue
                doubtful = r["flagged"] or r["floor_flagged"]
                ax.barh(k, r["ratio_to_floor"], color=colors[r["family"]],
                        alpha=0.35 if doubtful else 0.9, hatch="////" if doubtful else None,
                        edgecolor="k" if doubtful else "none", linewidth=0.5)
                ax.text(r["ratio_to_floor"], k, f" {r['ratio_to_floor']:.2f}"
                        f"{'?' if doubtful else ''}", va="center", fontsize=7)
            ax.axvline(1.0, color="k", lw=0.8)
            ax.set_xscale("log")
            ax.margins(x=0.25)
            ax.set_title(f"{shape}\n{dtype}, {threads} thread{'s' * (threads > 1)}",
                         fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
            ax.tick_params(axis="y", labelsize=7)
            if i == len(panel_rows) - 1:
                ax.set_xlabel("time / floor (log; 1 = a copy)", fontsize=8)
    axes[0][0].set_yticks(ypos, methods)
    axes[0][0].invert_yaxis()
    handles = [Patch(color=colors[f], label=f) for f in FAMILIES]
    handles.append(Patch(facecolor="white", edgecolor="k", hatch="////",
                         label=f"not to be trusted: IQR/median > "
                         f"{result['settings']['max_spread']:g} or CPU share < "
                         f"{result['settings']['min_cpu_share']:g}"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    title = (f"kmixup throughput, {result['device']}: minimum over interleaved rounds, "
             f"relative to x.clone() (out-of-place methods) or dst.copy_(x) (in-place "
             f"methods); lower is faster. {H.machine_line(result['machine'])}")
    width = int(fig.get_figwidth() * 14)
    lines = textwrap.wrap(title, width)
    fig.suptitle("\n".join(lines), fontsize=8)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, 0.45 / height, 1, 1 - (0.15 * len(lines) + 0.1) / height))
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


# ------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="three shapes, float32, a short budget (about a minute on a CPU)")
    H.add_device_args(parser)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), help="default: all")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16", "float16",
                                                        "float64"],
                        help="default: float32 and bfloat16 (float32 with --quick)")
    parser.add_argument("--peak-gbps", type=float, help="device peak bandwidth, GB/s")
    parser.add_argument("--compile-pure", action="store_true",
                        help="also time the pure-PyTorch SK Mixup under torch.compile (its "
                        "unrolled special functions take minutes to compile on a CPU)")
    H.add_timing_args(parser, rounds=200, budget=20)
    H.add_output_args(parser)
    args = parser.parse_args(argv)
    H.resolve_device_args(args)
    args.shapes = args.shapes or (QUICK_SHAPES if args.quick else list(SHAPES))
    args.dtypes = args.dtypes or (["float32"] if args.quick else ["float32", "bfloat16"])
    args.rounds = args.rounds or (40 if args.quick else 200)
    args.budget = args.budget if args.budget is not None else (2.5 if args.quick else 20)
    return args


def main(argv: list[str] | None = None) -> dict[str, dict]:
    args = parse_args(argv)
    out = H.output_dir(args)
    machine = H.machine_info(args.devices)
    print(H.machine_line(machine, args.threads))
    libraries, library_missing = optional_libraries()
    for name, why in library_missing.items():
        print(f"not timed: {name}: {why}")
    results = {}
    with H.keep_threads():
        for dev in args.devices:
            device = torch.device(dev)
            thread_list = H.thread_counts(device, args.threads)
            jobs = [(s, d, t) for s in args.shapes for d in args.dtypes for t in thread_list]
            rows, skipped, descriptions, conditions = [], [], {}, []
            for shape, dtype, threads in tqdm(jobs, desc=f"throughput ({dev})", unit="config",
                                              disable=None):
                r, s, d, c = measure(device, shape, dtype, threads, args, libraries)
                rows += r
                skipped += s
                descriptions.update(d)
                conditions.append(c)
            skipped += [{"device_type": device.type, "method": n, "reason": r}
                        for n, r in library_missing.items()]
            settings = {k: getattr(args, k) for k in (
                "quick", "rounds", "min_rounds", "budget", "warmup", "max_spread",
                "min_cpu_share", "seed")}
            results[device.type] = {
                "device": device_name(device), "device_type": device.type,
                "torch": machine["torch"], "date": machine["date"], "machine": machine,
                "threads": thread_list, "shapes": args.shapes, "dtypes": args.dtypes,
                "settings": settings, "methods": descriptions, "conditions": conditions,
                "rows": rows, "skipped": skipped,
            }
    for device_type, result in results.items():
        stem = out / f"throughput_{device_type}{'_quick' if args.quick else ''}"
        H.write_results(stem, result, markdown(result), plot)
    return results


if __name__ == "__main__":
    main()
