"""Throughput of kmixup's mixing ops against every mixup a user would pick instead.

    python -m benchmarks.throughput            # every shape and dtype on every device
    python -m benchmarks.throughput --quick    # three shapes, float32, < 1 min on CPU

Each method is timed side by side in one process on the same batch: warm-up, then the
median of repeated calls (CUDA events on a GPU). Reported: median time, ratio to vanilla
eager mixup with per-sample lam (``lam*x + (1-lam)*x[perm]``), achieved bandwidth (the
bytes the method must move at least, over its time) and its fraction of the device peak
on a GPU, and the host syncs one call makes (GPU; counted with
``torch.cuda.set_sync_debug_mode``). Results go to ``benchmarks/results/`` as JSON (with
device, torch version and date), a PNG per device and a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import special as sp
from tqdm import tqdm

import kmixup
from kmixup import _torch_kernels
from kmixup import functional as F

RESULTS = Path(__file__).resolve().parent / "results"
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
BASELINE = "vanilla eager (per-sample lam)"


def vanilla(x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The baseline: eager mixup as most training scripts write it."""
    lam = lam.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return lam * x + (1 - lam) * x[perm]


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


def _optional_methods(device: torch.device, num_classes: int) -> dict[str, Callable]:
    """timm's and torchvision's mixup, when they import (they mix targets too)."""
    methods = {}
    try:
        from timm.data import Mixup as TimmMixup

        timm_mixup = TimmMixup(mixup_alpha=1.0, cutmix_alpha=0.0, num_classes=num_classes,
                               mode="elem", label_smoothing=0.0)
        methods["timm Mixup (elem, with targets)"] = lambda x, y, perm, lam: timm_mixup(x, y)
    except Exception:  # not installed, or incompatible with this torch
        pass
    try:
        from torchvision.transforms import v2

        tv_mixup = v2.MixUp(alpha=1.0, num_classes=num_classes)
        methods["torchvision v2.MixUp (with targets)"] = lambda x, y, perm, lam: tv_mixup(x, y)
    except Exception:
        pass
    return methods


def methods_for(device: torch.device, num_classes: int, compile_pure: bool
                ) -> dict[str, tuple[Callable, int]]:
    """name -> (fn(x, y, perm, lam), passes over the batch it must make at least); perm and
    lam are drawn once, outside the timing. Interpolation reads both rows of a pair and
    writes one (3 passes); SK Mixup first reads both rows again for the distance (5)."""
    sk = kmixup.KernelMixup(num_classes=num_classes)
    plain = kmixup.Mixup(num_classes=num_classes)
    methods = {
        BASELINE: (lambda x, y, perm, lam: vanilla(x, perm, lam), 3),
        "vanilla eager (per-batch lam)": (lambda x, y, perm, lam: vanilla(x, perm, lam[:1]), 3),
    }
    for warping in ("beta_cdf", "inverse_beta_cdf", "none"):
        methods[f"kmixup kernel_mix {warping}"] = (
            lambda x, y, perm, lam, w=warping: F.kernel_mix(x, perm, lam, warping=w,
                                                            validate=False),
            3 if warping == "none" else 5,
        )
    methods["kmixup KernelMixup (with targets)"] = (lambda x, y, perm, lam: sk(x, y), 5)
    methods["kmixup Mixup (with targets)"] = (lambda x, y, perm, lam: plain(x, y), 3)
    methods["authors' scipy path"] = (
        lambda x, y, perm, lam: authors_scipy_path(x, perm, lam), 5
    )
    if compile_pure:
        compiled_pure = torch.compile(pure_sk_mixup, dynamic=False)
        methods["pure-PyTorch SK Mixup, torch.compile"] = (
            lambda x, y, perm, lam: compiled_pure(x, perm, lam), 5
        )
    methods.update({name: (fn, 3) for name, fn in _optional_methods(device, num_classes).items()})
    return methods


def time_call(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of fn() after warm-up."""
    for _ in range(3):
        fn()
    samples = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def count_syncs(fn: Callable[[], object], device: torch.device) -> int | None:
    """Host syncs in one call, on a GPU (None on CPU, where the question does not arise)."""
    if device.type != "cuda":
        return None
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
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def peak_gbps(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_GBPS.items() if k in name), None)


def run(devices: list[str], shapes: list[str], dtypes: list[str], repeats: int,
        peak_override: float | None, compile_pure: bool) -> list[dict]:
    rows = []
    jobs = [(d, s, t) for d in devices for s in shapes for t in dtypes]
    for dev_name, shape_name, dtype_name in tqdm(jobs, desc="benchmark", unit="config"):
        device, dtype = torch.device(dev_name), getattr(torch, dtype_name)
        shape = SHAPES[shape_name]
        gen = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(shape, generator=gen, device=device).to(dtype)
        y = torch.randint(0, 10, (shape[0],), generator=gen, device=device)
        perm = torch.randperm(shape[0], generator=gen, device=device)
        lam = torch.rand(shape[0], generator=gen, device=device)
        results = {}
        for name, (method, passes) in methods_for(device, 10, compile_pure).items():
            call = functools.partial(method, x, y, perm, lam)
            try:
                seconds = time_call(call, device, repeats)
                syncs = count_syncs(call, device)
            except Exception as err:  # e.g. a library that rejects this dtype
                tqdm.write(f"skipped {name} on {shape_name} {dtype_name}: {err}")
                continue
            results[name] = (seconds, syncs, passes * x.numel() * x.element_size())
        base = results[BASELINE][0]
        peak = peak_gbps(device, peak_override)
        for name, (seconds, syncs, min_bytes) in results.items():
            gbps = min_bytes / seconds / 1e9
            rows.append({
                "device": device_name(device), "device_type": device.type, "shape": shape_name,
                "dtype": dtype_name, "method": name, "median_ms": seconds * 1e3,
                "ratio_to_vanilla": seconds / base, "gbps": gbps,
                "fraction_of_peak": gbps / peak if peak else None, "host_syncs": syncs,
            })
    return rows


def markdown(rows: list[dict]) -> str:
    lines = []
    for (device, shape, dtype) in dict.fromkeys((r["device"], r["shape"], r["dtype"])
                                                for r in rows):
        lines += [f"**{device}**, {shape}, {dtype}", "",
                  "| method | median ms | × vanilla | GB/s | % peak | host syncs |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            if (r["device"], r["shape"], r["dtype"]) != (device, shape, dtype):
                continue
            peak = f"{100 * r['fraction_of_peak']:.0f}" if r["fraction_of_peak"] else "–"
            syncs = "–" if r["host_syncs"] is None else str(r["host_syncs"])
            lines.append(f"| {r['method']} | {r['median_ms']:.3f} | {r['ratio_to_vanilla']:.2f} "
                         f"| {r['gbps']:.1f} | {peak} | {syncs} |")
        lines.append("")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys((r["shape"], r["dtype"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(configs)), 0.35 * len(methods) + 3))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        ratios = [next((r["ratio_to_vanilla"] for r in rows if r["method"] == method
                        and (r["shape"], r["dtype"]) == c), np.nan) for c in configs]
        ax.bar(np.arange(len(configs)) + i * width, ratios, width, label=method)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(configs)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{s}\n{d}" for s, d in configs], fontsize=8)
    ax.set_ylabel("time / vanilla eager mixup (log; lower is faster)")
    ax.set_title(f"kmixup throughput on {rows[0]['device']}")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three shapes, float32, fewer repeats")
    parser.add_argument("--devices", nargs="+", help="default: cpu, and cuda when available")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), help="default: all")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, help="timed calls per method (median)")
    parser.add_argument("--peak-gbps", type=float, help="device peak bandwidth, GB/s")
    parser.add_argument("--compile-pure", action="store_true",
                        help="also time the pure-PyTorch SK Mixup under torch.compile (its "
                        "unrolled special functions take minutes to compile on a CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    shapes = args.shapes or (QUICK_SHAPES if args.quick else list(SHAPES))
    dtypes = args.dtypes or (["float32"] if args.quick else ["float32", "bfloat16"])
    repeats = args.repeats or (10 if args.quick else 30)
    print(f"kmixup {kmixup.__version__}, torch {torch.__version__}, backends "
          f"{kmixup.backend_info()}")
    rows = run(devices, shapes, dtypes, repeats, args.peak_gbps, args.compile_pure)
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(rows)
    print(table)
    for device_type in dict.fromkeys(r["device_type"] for r in rows):
        mine = [r for r in rows if r["device_type"] == device_type]
        stem = f"throughput_{device_type}{'_quick' if args.quick else ''}"
        meta = {"torch": torch.__version__, "kmixup": kmixup.__version__,
                "backends": kmixup.backend_info(), "device": mine[0]["device"],
                "date": datetime.date.today().isoformat(), "repeats": repeats}
        (args.out / f"{stem}.json").write_text(json.dumps({**meta, "rows": mine}, indent=1))
        (args.out / f"{stem}.md").write_text(markdown(mine))
        plot(mine, args.out / f"{stem}.png")
        print(f"wrote {args.out / stem}.json, .md and .png")


if __name__ == "__main__":
    main()
