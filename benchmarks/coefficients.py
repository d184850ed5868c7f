"""What one SK Mixup coefficient costs on the CPU: time and instructions per pair.

    python -m benchmarks.coefficients                   # wall time, one thread
    python -m benchmarks.coefficients --mode callgrind  # instructions, under valgrind
    python -m benchmarks.coefficients --mode both --save-results

Each SK Mixup step evaluates B special functions (``I(lam; 1/tau, 1/tau)`` for
``beta_cdf``, ``I^-1(lam; tau, tau)`` for ``inverse_beta_cdf``); at small batches that is
most of the op's cost on the CPU (docs/design.md, "Cost model"). Two ways to isolate it,
in float32 and float64, with one torch thread:

* ``kernel_mix - none``: ``kmixup.functional.kernel_mix`` on ``[B, D]`` features with
  a tiny row (``D = 1`` by default, so the rows cost next to nothing) minus the same call
  with ``warping="none"`` (which computes no distance and no coefficient), over B. This
  is what the fused op pays per pair: distance, ``tau`` and the warp.
* ``op - empty``: the special-function op itself (``torch.ops.kmixup.betainc`` /
  ``betaincinv``) on the same ``(lam, tau)`` pairs, with symmetric shapes ``a = b``,
  minus the same op on empty tensors (its fixed call cost), over B.

Wall time (``--mode wall``): the cases are interleaved round-robin (benchmarks/_harness.py);
per pair from the minima (and from the medians, for comparison). Instructions
(``--mode callgrind``): the script reruns itself under ``valgrind --tool=callgrind`` with
instrumentation off, switches it on (callgrind client requests, from a small C helper
compiled on the spot with the system compiler) only around ``--calls`` calls of each
case, and reads the instruction counts (Ir) of each; repeatable on a noisy machine, but
valgrind hides AVX-512, so torch's own kernels take their AVX2 path there.

The cost depends on ``tau``: the JSON records the distribution of ``tau`` these features
give (``D = 1``: wide, every regime of the special functions is hit; raise
``--feature-dim`` for the near-1 ``tau`` of high-dimensional data).

Results: ``coefficients_cpu[_quick].{json,md}`` in ``benchmarks/out/`` unless ``--out``
or ``--save-results`` say otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import kmixup
from kmixup import functional as F

from . import _harness as H

COEFFICIENTS = ("beta_cdf", "inverse_beta_cdf")
REFERENCE = {"kernel_mix": "kernel_mix none", "op": "op empty"}
CALLGRIND_HELPER = r"""
#include <valgrind/callgrind.h>
void kmx_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void kmx_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void kmx_zero(void) { CALLGRIND_ZERO_STATS; }
void kmx_dump(const char* label) { CALLGRIND_DUMP_STATS_AT(label); }
"""


def make_inputs(batch: int, feature_dim: int, dtype: torch.dtype) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, feature_dim, generator=gen).to(dtype)
    perm = torch.randperm(batch, generator=gen)
    lam = torch.rand(batch, generator=gen, dtype=torch.float64).to(dtype)
    tau = F.similarity_tau(F.pair_sq_dist(x, perm), 1.0, 0.25).to(dtype)
    return {"x": x, "perm": perm, "lam": lam, "tau": tau}


def cases(inp: dict) -> dict:
    """name -> call. ``kernel_mix <warping>`` and ``op <coefficient>`` with references."""
    x, perm, lam, tau = inp["x"], inp["perm"], inp["lam"], inp["tau"]
    inv = 1.0 / tau
    empty = tau[:0]
    ops = torch.ops.kmixup
    calls = {f"kernel_mix {w}": (lambda w=w: F.kernel_mix(x, perm, lam, warping=w,
                                                         validate=False))
             for w in ("none", *COEFFICIENTS)}
    calls["op empty"] = lambda: ops.betainc(empty, empty, empty)
    calls["op beta_cdf"] = lambda: ops.betainc(inv, inv, lam)
    calls["op inverse_beta_cdf"] = lambda: ops.betaincinv(tau, tau, lam)
    return calls


def tau_summary(tau: torch.Tensor) -> dict:
    t = tau.double()
    finite = t[torch.isfinite(t)]
    q = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    quantiles = torch.quantile(finite, q).tolist() if finite.numel() else []
    return {"quantiles_0_10_50_90_100": quantiles,
            "fraction_zero": float((t == 0).double().mean()),
            "fraction_inf": float(torch.isinf(t).double().mean()),
            # Shape >= 8: the Gamma regime of special.h's symmetric path in float64 (beta_cdf's
            # shape is 1 / tau, inverse_beta_cdf's tau); below it, the power series.
            "fraction_tau_at_most_0.125": float((t <= 0.125).double().mean()),
            "fraction_tau_at_least_8": float((t >= 8).double().mean())}


def per_pair(rows: list[dict], key: str, batch: int, scale: float) -> dict:
    """(case - its reference) / B for each via and coefficient, in the case's unit x scale."""
    by_name = {r["case"]: r for r in rows}
    out = {}
    for via, ref in REFERENCE.items():
        for c in COEFFICIENTS:
            case = by_name.get(f"{via} {c}")
            base = by_name.get(ref)
            if case is None or base is None:
                continue
            out[f"{via} {c}"] = (case[key] - base[key]) * scale / batch
    return out


# ------------------------------------------------------------------------------ wall time


def difference_flagged(case: dict, reference: dict, max_spread: float) -> bool:
    """A difference of two timings is not to be trusted when either fastest call was
    disturbed, or when the two IQRs together exceed ``max_spread`` of the difference of
    the medians (the reference alone, a call of microseconds, is always relatively noisy
    but adds little absolute noise)."""
    difference = case["median_ms"] - reference["median_ms"]
    if case["disturbed"] or reference["disturbed"] or difference <= 0:
        return True
    return (case["iqr_ms"] + reference["iqr_ms"]) / difference > max_spread


def wall(args: argparse.Namespace) -> dict:
    """Per-pair microseconds (rows), the statistics of every case and the tau
    distribution, by dtype."""
    result: dict = {"rows": [], "cases": {}, "tau": {}}
    for dtype_name in args.dtypes:
        inp = make_inputs(args.batch, args.feature_dim, getattr(torch, dtype_name))
        named = cases(inp)
        samples, skipped = H.interleave(
            [H.Case(n, fn) for n, fn in named.items()], torch.device("cpu"), args.rounds,
            args.budget, args.min_rounds, args.warmup, args.seed,
            desc=f"coefficients {dtype_name}")
        for name, why in skipped.items():
            print(f"not timed: {name} ({dtype_name}): {why}")
        stats = [{"case": n, **H.summarize(s, args.max_spread, args.min_cpu_share)}
                 for n, s in samples.items()]
        by_case = {r["case"]: r for r in stats}
        lo = per_pair(stats, "min_ms", args.batch, 1e3)  # ms -> us
        mid = per_pair(stats, "median_ms", args.batch, 1e3)
        for key, us in lo.items():
            via, coefficient = key.split(" ", 1)
            result["rows"].append({
                "dtype": dtype_name, "coefficient": coefficient, "via": via,
                "us_per_pair": us, "us_per_pair_from_medians": mid[key],
                "flagged": difference_flagged(by_case[key], by_case[REFERENCE[via]],
                                              args.max_spread),
            })
        result["cases"][dtype_name] = stats
        result["tau"][dtype_name] = tau_summary(inp["tau"])
    return result


# ------------------------------------------------------------------------------ callgrind


def callgrind_child(args: argparse.Namespace) -> None:
    """Under valgrind: count the instructions of ``--calls`` calls of each case."""
    import ctypes

    helper = ctypes.CDLL(os.environ["KMIXUP_CALLGRIND_HELPER"])
    torch.set_num_threads(1)
    print(f"torch CPU capability under valgrind: {torch.backends.cpu.get_cpu_capability()}")
    helper.kmx_start()
    for dtype_name in args.dtypes:
        named = cases(make_inputs(args.batch, args.feature_dim, getattr(torch, dtype_name)))
        for name, fn in named.items():
            for _ in range(max(args.warmup, 1)):  # first calls: lazy initialisation
                fn()
            helper.kmx_zero()
            for _ in range(args.calls):
                fn()
            helper.kmx_dump(f"{dtype_name}|{name}".encode())
    helper.kmx_stop()


def read_dumps(folder: Path) -> dict[str, int]:
    """Client-request dumps in ``folder``: label -> instructions (Ir)."""
    counts = {}
    for path in folder.glob("callgrind.out.*"):
        text = path.read_text(errors="replace")
        label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        total = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        if label and total:
            counts[label.group(1).strip()] = int(total.group(1))
    return counts


def callgrind(args: argparse.Namespace) -> dict:
    """Run this script under callgrind; instructions per pair, or why it could not run."""
    valgrind, cc = shutil.which("valgrind"), shutil.which("cc") or shutil.which("gcc")
    if not valgrind or not cc:
        return {"error": "valgrind and a C compiler are needed (not found on PATH)"}
    with tempfile.TemporaryDirectory(prefix="kmixup-callgrind-") as tmp:
        tmp = Path(tmp)
        (tmp / "helper.c").write_text(CALLGRIND_HELPER)
        build = subprocess.run([cc, "-O1", "-shared", "-fPIC", str(tmp / "helper.c"), "-o",
                                str(tmp / "helper.so")], capture_output=True, text=True)
        if build.returncode != 0:
            return {"error": f"could not build the callgrind helper (valgrind/callgrind.h "
                             f"missing?): {build.stderr.strip()[:300]}"}
        env = {**os.environ, "KMIXUP_CALLGRIND_HELPER": str(tmp / "helper.so"),
               "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                              os.environ.get("PYTHONPATH", "")])}
        command = [valgrind, "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={tmp}/callgrind.out.%p", sys.executable, "-m",
                   "benchmarks.coefficients", "--callgrind-child", "--batch", str(args.batch),
                   "--feature-dim", str(args.feature_dim), "--calls", str(args.calls),
                   "--warmup", str(args.warmup), "--dtypes", *args.dtypes]
        print("running under callgrind (a minute or more):", " ".join(command[:3]), "...")
        child = subprocess.run(command, env=env, capture_output=True, text=True)
        if child.returncode != 0:
            return {"error": f"the callgrind run failed (rc {child.returncode}): "
                             f"{child.stderr.strip()[-600:]}"}
        counts = read_dumps(tmp)
    capability = re.search(r"capability under valgrind: (\S+)", child.stdout)
    version = subprocess.run([valgrind, "--version"], capture_output=True, text=True)
    result = {"valgrind": version.stdout.strip(), "calls": args.calls,
              "cpu_capability_under_valgrind": capability.group(1) if capability else None,
              "instructions": counts, "rows": []}
    for dtype_name in args.dtypes:
        mine = [{"case": label.split("|", 1)[1], "ir": ir} for label, ir in counts.items()
                if label.startswith(f"{dtype_name}|")]
        for key, ir in per_pair(mine, "ir", args.batch * args.calls, 1.0).items():
            via, coefficient = key.split(" ", 1)
            result["rows"].append({"dtype": dtype_name, "coefficient": coefficient, "via": via,
                                   "instructions_per_pair": ir})
    if not result["rows"]:
        result["error"] = "no instruction counts were dumped"
    return result


# ---------------------------------------------------------------------------- report


VIA = {"kernel_mix": "`kernel_mix` − `none`", "op": "special-function op − empty call"}


def markdown(result: dict) -> str:
    s = result["settings"]
    lines = [
        "# kmixup: cost of one SK Mixup coefficient (CPU, one thread)", "",
        f"Machine: {H.machine_line(result['machine'], [1])}.", "",
        f"B = {s['batch']} pairs, features [B, {s['feature_dim']}]. Per pair = (case − "
        f"reference) / B: `kernel_mix` with the warping minus `warping=\"none\"` (distance, "
        f"tau and warp), and the special-function op on the same (lam, tau) with symmetric "
        f"shapes minus the op on empty tensors.", "",
    ]
    timed = result.get("wall", {}).get("rows", [])
    if timed:
        lines += [f"## Wall time (µs per pair; interleaved rounds, up to {s['rounds']} or "
                  f"{s['budget']:g} s per dtype; from the minima, medians for comparison; "
                  f"⚠: the IQRs of case and reference add up to more than {s['max_spread']:g} of "
                  f"their difference, or a fastest call had a CPU share below "
                  f"{s['min_cpu_share']:g})", "",
                  "| dtype | coefficient | via | µs/pair (min) | µs/pair (median) |",
                  "|---|---|---|---:|---:|"]
        for r in timed:
            lines.append(f"| {r['dtype']} | {r['coefficient']} | {VIA[r['via']]} | "
                         f"{r['us_per_pair']:.4f}{' ⚠' if r['flagged'] else ''} | "
                         f"{r['us_per_pair_from_medians']:.4f} |")
        lines.append("")
        tau = next(iter(result["wall"]["tau"].values()))
        qs = ", ".join(f"{v:.3g}" for v in tau["quantiles_0_10_50_90_100"])
        lines += [f"tau over the pairs (finite; min, 10%, 50%, 90%, max): {qs}; tau = 0: "
                  f"{100 * tau['fraction_zero']:.1f}%; in the Gamma regime of the float64 "
                  f"symmetric path (shape ≥ 8), beta_cdf (tau ≤ 1/8): "
                  f"{100 * tau['fraction_tau_at_most_0.125']:.1f}%, inverse_beta_cdf (tau ≥ 8): "
                  f"{100 * tau['fraction_tau_at_least_8']:.1f}%.", ""]
    cg = result.get("callgrind")
    if cg:
        lines += ["## Instructions per pair (callgrind)", ""]
        if cg.get("error"):
            lines += [f"Not measured: {cg['error']}", ""]
        if cg.get("rows"):
            lines += [f"{cg['valgrind']}, {cg['calls']} calls per case; torch's CPU "
                      f"capability under valgrind: {cg['cpu_capability_under_valgrind']}.", "",
                      "| dtype | coefficient | via | instructions/pair |", "|---|---|---|---:|"]
            lines += [f"| {r['dtype']} | {r['coefficient']} | {VIA[r['via']]} | "
                      f"{r['instructions_per_pair']:,.0f} |" for r in cg["rows"]]
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["wall", "callgrind", "both"], default="wall")
    parser.add_argument("--quick", action="store_true", help="a short budget")
    parser.add_argument("--batch", type=int, default=4096, help="pairs per call (default 4096)")
    parser.add_argument("--feature-dim", type=int, default=1,
                        help="feature row length D (default 1: the rows cost next to nothing)")
    parser.add_argument("--dtypes", nargs="+", choices=["float32", "float64"],
                        default=["float32", "float64"])
    parser.add_argument("--calls", type=int, default=3,
                        help="calls per case counted under callgrind (default 3)")
    parser.add_argument("--callgrind-child", action="store_true", help=argparse.SUPPRESS)
    H.add_timing_args(parser, rounds=300, budget=15)
    H.add_output_args(parser)
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (60 if args.quick else 300)
    args.budget = args.budget if args.budget is not None else (3 if args.quick else 15)
    if args.callgrind_child:
        callgrind_child(args)
        return {}
    out = H.output_dir(args)
    machine = H.machine_info(["cpu"])
    print(H.machine_line(machine, [1]))
    result = {"torch": machine["torch"], "kmixup": kmixup.__version__, "date": machine["date"],
              "device": f"{machine['cpu']} CPU", "machine": machine, "threads": 1,
              "settings": {k: getattr(args, k) for k in (
                  "mode", "quick", "batch", "feature_dim", "dtypes", "rounds", "min_rounds",
                  "budget", "warmup", "max_spread", "min_cpu_share", "seed", "calls")}}
    initial_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if args.mode in ("wall", "both"):
            result["wall"] = wall(args)
    finally:
        torch.set_num_threads(initial_threads)
    if args.mode in ("callgrind", "both"):
        result["callgrind"] = callgrind(args)
    stem = out / f"coefficients_cpu{'_quick' if args.quick else ''}"
    table = markdown(result)
    print(table)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1))
    stem.with_suffix(".md").write_text(table)
    print(f"wrote {stem}.json and .md")
    return result


if __name__ == "__main__":
    main()
