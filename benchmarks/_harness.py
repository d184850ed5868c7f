"""What every benchmark here shares: interleaved timing, robust statistics, the machine
description and where results go.

Timing on a shared machine. CPU time is stolen at random (another build, the hypervisor),
so two methods timed one after the other see different machines. Here every method is
called once per *round*, in a freshly shuffled order, for many rounds: a burst of
interference hits all methods alike rather than one. Noise on a timing is additive
(a call never runs faster than its cost), so the minimum over the rounds is the best
estimate of the cost and ratios are taken between minima; the median and the
interquartile range (IQR) say how disturbed the run was. Two flags mark a row that is
not to be trusted, wherever it is reported (⚠ in markdown, hatched in plots):

* ``noisy``: IQR/median above ``--max-spread`` (the calls disagree);
* ``disturbed`` (CPU): even the fastest call was not on a CPU the whole time. Each call
  also reads the calling thread's CPU time; on an idle machine it tracks the wall time
  (the thread computes, or spins at a barrier, throughout), while a thread that was
  descheduled, or slept waiting for a descheduled worker, gets less. Below
  ``--min-cpu-share`` of the wall time, the minimum itself is inflated. This catches what
  the spread cannot: a loaded machine that slows *every* call alike (seen here: two
  threads on two busy cores, every call a few scheduler slices long, IQR/median 0.01).

The 1-minute load average before and after each configuration is recorded too.

Output. By default results go to a scratch folder (``benchmarks/out/``, ignored by git);
``--save-results`` writes to ``benchmarks/results/``, which is committed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"  # committed: written only with --save-results
SCRATCH = HERE / "out"  # the default; in .gitignore
MAX_SPREAD = 0.5  # IQR/median above which a row is flagged as noisy
MIN_CPU_SHARE = 0.8  # thread CPU time / wall time of the fastest call, below: disturbed


@dataclass
class Case:
    """One thing to time. ``fn`` is timed; ``setup`` (e.g. restoring an input that ``fn``
    overwrites) runs before every timed call, outside the timer."""

    name: str
    fn: Callable[[], object]
    setup: Callable[[], object] | None = None


@dataclass
class Timings:
    """Per timed call: wall seconds and the calling thread's CPU time over the wall time
    (None on a GPU, where the host waits by design)."""

    seconds: list[float] = field(default_factory=list)
    cpu_share: list[float | None] = field(default_factory=list)


def add_output_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", type=Path, default=None,
                       help=f"folder for the JSON, markdown and PNG (default: {SCRATCH})")
    group.add_argument("--save-results", action="store_true",
                       help=f"write into the committed {RESULTS} instead of the scratch folder")


def output_dir(args: argparse.Namespace) -> Path:
    out = RESULTS if args.save_results else (args.out or SCRATCH)
    out.mkdir(parents=True, exist_ok=True)
    return out


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", nargs="+", help="default: cpu, and cuda when available")
    parser.add_argument("--threads", nargs="+", type=int,
                        help=f"torch.set_num_threads values for CPU runs, each reported "
                        f"separately (default here: {default_threads()})")


def resolve_device_args(args: argparse.Namespace) -> None:
    """Fills in the defaults of :func:`add_device_args`' options."""
    args.devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    args.threads = args.threads or default_threads()


def add_timing_args(parser: argparse.ArgumentParser, rounds: int, budget: float) -> None:
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"rounds per configuration; each round calls every method once "
                        f"in a shuffled order (default {rounds}, fewer with --quick)")
    parser.add_argument("--repeats", dest="rounds", type=int, help=argparse.SUPPRESS)  # old
    parser.add_argument("--min-rounds", type=int, default=5,
                        help="rounds run even when the time budget is spent (default 5)")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds of timing per configuration: stop after this many "
                        f"seconds once --min-rounds are done (default {budget:g})")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per method first")
    parser.add_argument("--max-spread", type=float, default=MAX_SPREAD,
                        help="IQR/median above which a row is flagged as noisy (default 0.5)")
    parser.add_argument("--min-cpu-share", type=float, default=MIN_CPU_SHARE,
                        help="flag a row as disturbed when its fastest call kept the thread "
                        "on a CPU for less than this share of the wall time (default 0.8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the round orders")


CPUINFO = Path("/proc/cpuinfo")


def cpuinfo_field(name: str) -> str | None:
    """The first value of ``name`` in /proc/cpuinfo (Linux), or None."""
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


# The x86 features that pick kmixup's CPU row loops (AVX2, AVX-512, AVX512-BF16): the same
# model name covers CPUs with and without AVX-512, and the 2-byte rows depend on it.
VECTOR_FEATURES = ("avx2", "f16c", "avx512f", "avx512bw", "avx512_bf16")


def cpu_vector_features() -> list[str]:
    flags = set((cpuinfo_field("flags") or "").split())
    return [f for f in VECTOR_FEATURES if f in flags]


def machine_info(devices: list[str] | None = None) -> dict:
    """The machine and software a result belongs to (no host names)."""
    import kmixup

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_vector_features": cpu_vector_features(),
        "cpu_arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "os": platform.platform(terse=True),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "kmixup": kmixup.__version__,
        "backends": kmixup.backend_info(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if torch.cuda.is_available() and any(d.startswith("cuda") for d in devices or []):
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = props.name
        info["gpu_capability"] = f"{props.major}.{props.minor}"
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def machine_line(info: dict, threads: list[int] | None = None) -> str:
    features = " ".join(info.get("cpu_vector_features", [])) or "none listed"
    line = (f"{info['cpu']} ({info['usable_cpus']} usable of {info['logical_cpus']} logical "
            f"CPUs, vector features {features}, torch CPU capability "
            f"{info['torch_cpu_capability']})")
    if "gpu" in info:
        line += f", {info['gpu']} (sm {info['gpu_capability']}, CUDA {info['cuda']})"
    if threads:
        line += f"; torch threads {', '.join(map(str, threads))}"
    return (f"{line}; torch {info['torch']}, kmixup {info['kmixup']} "
            f"({', '.join(f'{k}: {v}' for k, v in info['backends'].items())}); {info['date']}")


def default_threads() -> list[int]:
    """1, and every usable core when there are more (reported separately)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return sorted({1, usable})


def thread_counts(device: torch.device, threads: list[int]) -> list[int]:
    """The torch thread counts to run on ``device``: each of ``threads`` on a CPU; a GPU
    run is not a CPU-thread experiment, so it runs once, with the most threads."""
    return threads if device.type == "cpu" else [max(threads)]


@contextlib.contextmanager
def keep_threads() -> Iterator[None]:
    """Restores torch's thread count, which the benchmarks change per configuration."""
    initial = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(initial)


def write_results(stem: Path, result: dict, table: str,
                  plot: Callable[[dict, Path], None]) -> None:
    """``stem``.json, .md and .png: the data, the table and the picture of one run."""
    print(table)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(table)
    plot(result, stem.with_suffix(".png"))
    print(f"wrote {stem}.json, .md and .png")


TIMING_SETTINGS = ("rounds", "min_rounds", "budget", "warmup", "max_spread", "min_cpu_share",
                   "seed")


def run_devices(args: argparse.Namespace, name: str,
                rows_for: Callable[[torch.device, list[int]], list[dict]],
                setting_names: tuple[str, ...], markdown: Callable[[dict], str],
                plot: Callable[[dict, Path], None], extra: dict | None = None
                ) -> dict[str, dict]:
    """The loop every benchmark shares: for each of ``args.devices``, the rows of
    ``rows_for(device, thread counts)``, with the machine and the settings (``quick``,
    ``setting_names`` and the timing options), written to
    ``<out>/<name>_<device type>[_quick].{json,md,png}``. Returns the results by device
    type."""
    out = output_dir(args)
    machine = machine_info(args.devices)
    print(machine_line(machine, args.threads))
    results = {}
    with keep_threads():
        for dev in args.devices:
            device = torch.device(dev)
            thread_list = thread_counts(device, args.threads)
            rows = rows_for(device, thread_list)
            settings = {k: getattr(args, k) for k in ("quick", *setting_names, *TIMING_SETTINGS)}
            result = {"device": rows[0]["device"], "device_type": device.type,
                      "torch": machine["torch"], "date": machine["date"], "machine": machine,
                      "threads": thread_list, **(extra or {}), "settings": settings,
                      "rows": rows}
            results[device.type] = result
            stem = out / f"{name}_{device.type}{'_quick' if args.quick else ''}"
            write_results(stem, result, markdown(result), plot)
    return results


def save_figure(fig, path: Path) -> None:
    """Writes a benchmark's matplotlib figure as a PNG and frees it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def summarize(timings: Timings, max_spread: float, min_cpu_share: float = MIN_CPU_SHARE
              ) -> dict:
    """Seconds -> milliseconds: min (the estimate), quartiles, IQR/median, the CPU share
    of the fastest call and the flags (``flagged``: noisy or disturbed)."""
    samples = timings.seconds
    q1, median, q3 = (statistics.quantiles(samples, n=4, method="inclusive")
                      if len(samples) > 1 else samples * 3)
    iqr = q3 - q1
    spread = iqr / median if median > 0 else float("inf")
    fastest = min(range(len(samples)), key=samples.__getitem__)
    share = timings.cpu_share[fastest] if timings.cpu_share else None
    shares = [s for s in timings.cpu_share if s is not None]
    cpu = [t * s for t, s in zip(samples, timings.cpu_share) if s is not None]
    noisy = bool(spread > max_spread)
    disturbed = share is not None and share < min_cpu_share
    return {"min_ms": samples[fastest] * 1e3, "p25_ms": q1 * 1e3, "median_ms": median * 1e3,
            "p75_ms": q3 * 1e3, "iqr_ms": iqr * 1e3, "spread": spread,
            "cpu_share_at_min": share,
            "cpu_share_median": statistics.median(shares) if shares else None,
            # The calling thread's CPU time: with one thread, a second estimate of the
            # cost that preemption does not inflate (cache refills after it still count).
            "min_thread_cpu_ms": min(cpu) * 1e3 if cpu else None,
            "noisy": noisy, "disturbed": disturbed, "flagged": noisy or disturbed,
            "samples": len(samples)}


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reason(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"


def _time_one(case: Case, device: torch.device, cuda: bool) -> tuple[float, float | None]:
    """Seconds of one call of ``case.fn`` (its setup runs first, untimed), and the calling
    thread's CPU time over them (CPU only; read outside the wall-clock interval)."""
    if case.setup is not None:
        case.setup()
    if cuda:
        torch.cuda.synchronize(device)
        begin = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        begin.record()
        case.fn()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / 1e3, None
    c0 = time.thread_time()
    t0 = time.perf_counter()
    case.fn()
    t1 = time.perf_counter()
    c1 = time.thread_time()
    return t1 - t0, (c1 - c0) / max(t1 - t0, 1e-9)


def interleave(cases: list[Case], device: torch.device, rounds: int, budget_s: float,
               min_rounds: int = 5, warmup: int = 2, seed: int = 0, desc: str = "rounds",
               ) -> tuple[dict[str, Timings], dict[str, str]]:
    """Time ``cases`` round-robin: every round calls each case once, in a shuffled order.

    Returns ``(samples, skipped)``: :class:`Timings` by case name, and the cases that
    failed during warm-up with the reason (e.g. a library that rejects this dtype).
    Stops after ``rounds`` rounds, or once ``budget_s`` seconds of rounds have passed and
    at least ``min_rounds`` are done. CUDA calls are timed with events, one call at a time.
    """
    skipped: dict[str, str] = {}
    live = []
    for case in cases:
        try:
            for _ in range(max(warmup, 1)):  # at least one call: failures show up here
                if case.setup is not None:
                    case.setup()
                case.fn()
            _sync(device)
        except Exception as err:  # reported, never fatal
            skipped[case.name] = _reason(err)
            continue
        live.append(case)
    samples = {case.name: Timings() for case in live}
    order = list(live)
    rng = random.Random(seed)
    cuda = device.type == "cuda"
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # a collection inside one call would be charged to that method
    start = time.perf_counter()
    try:
        with tqdm(total=rounds, desc=desc, unit="round", leave=False, disable=None) as bar:
            for done in range(rounds):
                rng.shuffle(order)
                for case in list(order):
                    try:
                        seconds, share = _time_one(case, device, cuda)
                        samples[case.name].seconds.append(seconds)
                        samples[case.name].cpu_share.append(share)
                    except Exception as err:  # e.g. out of memory in a later round
                        skipped[case.name] = _reason(err)
                        del samples[case.name]
                        order.remove(case)
                bar.update()
                if done + 1 >= min_rounds and time.perf_counter() - start > budget_s:
                    break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, skipped


def time_cases(cases: list[Case], device: torch.device, args: argparse.Namespace, desc: str
               ) -> tuple[dict[str, dict], dict]:
    """:func:`interleave` with the timing options of ``args``; prints the cases that could
    not be timed. Returns the :func:`summarize` of each case by name, and the load
    averages before and after."""
    load_before = load_average()
    samples, skipped = interleave(cases, device, args.rounds, args.budget, args.min_rounds,
                                  args.warmup, args.seed, desc=desc)
    for name, why in skipped.items():
        tqdm.write(f"not timed: {name}: {why}")
    load = {"load_before": load_before, "load_after": load_average()}
    return {name: summarize(s, args.max_spread, args.min_cpu_share)
            for name, s in samples.items()}, load


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def fmt_spread(row: dict) -> str:
    return f"{row['spread']:.2f}{' ⚠' if row['noisy'] else ''}"


def fmt_share(row: dict) -> str:
    share = row["cpu_share_at_min"]
    return "–" if share is None else f"{share:.2f}{' ⚠' if row['disturbed'] else ''}"


def fmt_cpu(row: dict) -> str:
    ms = row["min_thread_cpu_ms"]
    return "–" if ms is None else fmt_ms(ms)


def fmt_load(before: float | None, after: float | None) -> str:
    return "?" if before is None or after is None else f"{before:.1f} → {after:.1f}"
