"""What kmixup runs on, and whether its kernels compute what they should.

    python -m kmixup.info            # environment, build, self-check, timing
    python -m kmixup.info --json     # the same as JSON
    python -m kmixup.info --no-timing

Reports Python, the platform, torch and CUDA, which backend serves each device
(:func:`kmixup.backend_info`), how the extension was built (recorded by setup.py in
``kmixup/_build_info.json``) and the CUDA architectures compiled into it; then runs every
``torch.ops.kmixup`` operator on every available device against its pure-PyTorch kernel on
small random inputs (PASS/FAIL with the largest difference), and times ``kernel_mix``
against vanilla mixup on each device. The exit status is 1 when any check fails: paste
the output into an issue.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

import kmixup

from . import _ops
from . import functional as F

__all__ = ["Check", "Info", "Timing", "collect", "main"]

BUILD_INFO = Path(__file__).with_name("_build_info.json")
# Largest |compiled - pure| accepted, by dtype: values here are O(1); a wrong kernel is off
# by O(0.1) or more, the two implementations of one algorithm by a few roundings.
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-9}
TIMING_ROUNDS = 30


@dataclasses.dataclass
class Check:
    """One op on one device and dtype against its pure-PyTorch kernel."""

    device: str
    op: str
    case: str
    passed: bool
    max_abs_diff: float
    tolerance: float
    kernel: str  # "compiled" or "pure" (then the check compares the pure kernel to itself)
    error: str = ""


@dataclasses.dataclass
class Timing:
    """kernel_mix against vanilla mixup, minima over interleaved rounds."""

    device: str
    shape: list[int]
    kernel_mix_ms: float
    vanilla_ms: float
    ratio: float
    rounds: int


@dataclasses.dataclass
class Info:
    kmixup: str
    python: str
    platform: str
    torch: str
    torch_cuda: str | None
    gpus: list[str]
    backends: dict[str, str]
    extension: str
    cuda_kernels: bool  # whether the loaded extension registered CUDA kernels
    cpu_row_loops: str  # the instruction set of the compiled CPU kernels' row loops
    build: dict | None
    cuda_arches: dict
    checks: list[Check]
    timings: list[Timing]

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    def format(self) -> str:
        return _format(self)


def collect(self_check: bool = True, timing: bool = True) -> Info:
    """Gather the report: environment, build, self-check (if ``self_check``) and timing
    (if ``timing``) on every available device."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpus = [f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, _capability(i)))})"
            for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    build = json.loads(BUILD_INFO.read_text()) if BUILD_INFO.exists() else None
    return Info(
        kmixup=f"{kmixup.__version__} ({Path(kmixup.__file__).parent})",
        python=sys.version.split()[0],
        platform=platform.platform(),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        gpus=gpus,
        backends=kmixup.backend_info(),
        extension=_extension(),
        cuda_kernels=_ops.has_compiled_kernel("cuda"),
        cpu_row_loops=_cpu_row_loops(),
        build=build,
        cuda_arches=_cuda_arches(build),
        checks=[c for d in devices for c in self_checks(d)] if self_check else [],
        timings=[time_kernel_mix(d) for d in devices] if timing else [],
    )


# The compiled CPU kernels pick their row loops as torch picks its CPU capability (the
# same CPU features, the same ATEN_CPU_CAPABILITY cap; csrc/cpu/rows.h).
_ROW_LOOPS = {"AVX512": "AVX-512", "AVX2": "AVX2 + F16C"}


def _cpu_row_loops() -> str:
    """The row loops csrc/cpu/rows.h picks: torch's CPU capability, and above AVX-512 the
    AVX512-BF16 variant where the CPU has it and ATEN_CPU_CAPABILITY does not cap it."""
    if not _ops.has_compiled_kernel("cpu"):
        return "none (pure-PyTorch kernels)"
    capability = torch.backends.cpu.get_cpu_capability()
    loops = _ROW_LOOPS.get(capability, "baseline (SSE2 on x86-64, NEON on ARM)")
    if (capability == "AVX512" and os.environ.get("ATEN_CPU_CAPABILITY") != "avx512"
            and "avx512_bf16" in _cpu_flags()):
        loops += " + AVX512-BF16"
    return (f"{loops} (torch's CPU capability: {capability}; "
            "ATEN_CPU_CAPABILITY=default|avx2|avx512 caps it)")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return {flag for line in cpuinfo if line.startswith("flags")
                    for flag in line.split(":", 1)[1].split()}
    except OSError:  # not Linux: the report then names plain AVX-512
        return set()


def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def _extension() -> str:
    if _ops.EXTENSION_MISSING:
        return f"not used: {_ops.EXTENSION_MISSING}"
    return f"loaded from {importlib.import_module('kmixup._C').__file__}"


# ----------------------------------------------------------------------------- CUDA arches


def _cuda_arches(build: dict | None) -> dict:
    """The architectures torch was built for, those the extension's build asked for
    (setup.py's record of torch's -gencode flags) and, where ``cuobjdump`` is found, the
    cubins and PTX actually embedded in the extension."""
    arches: dict = {"torch": torch.cuda.get_arch_list() if torch.version.cuda else []}
    if build and build.get("cuda_arch_flags"):
        arches["build_flags"] = sorted(set(re.findall(r"code=\[?([a-z]+_\d+a?)",
                                                      " ".join(build["cuda_arch_flags"]))))
    so = None if _ops.EXTENSION_MISSING else importlib.import_module("kmixup._C").__file__
    tool = shutil.which("cuobjdump") or _cuda_home_tool("cuobjdump")
    if so and tool and torch.version.cuda:
        listed = []
        for flag in ("--list-elf", "--list-ptx"):
            run = subprocess.run([tool, flag, so], capture_output=True, text=True)
            listed += re.findall(r"\.((?:sm|compute)_\d+a?)\.(?:cubin|ptx)", run.stdout)
        arches["embedded (cuobjdump)"] = sorted(set(listed))
    return arches


def _cuda_home_tool(name: str) -> str | None:
    from torch.utils.cpp_extension import CUDA_HOME

    path = Path(CUDA_HOME or "/nonexistent", "bin", name)
    return str(path) if path.exists() else None


# ----------------------------------------------------------------------------- self-check


def _op_cases(device: str) -> list[tuple[str, str, tuple]]:
    """``(op, case, args)``: small random inputs for every op in ``_ops.SCHEMAS``."""
    gen = torch.Generator().manual_seed(0)
    cases = []
    for dtype in TOLERANCE:
        name = str(dtype).removeprefix("torch.")

        def rand(*shape, dtype=dtype):
            return torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype).to(device)

        shapes = [0.2 + 5 * rand(64) for _ in range(2)]  # moderate: quantiles well-posed
        x = (torch.randn(16, 3, 4, 4, generator=gen, dtype=torch.float64)).to(dtype).to(device)
        perm = torch.randperm(16, generator=gen).to(device)
        lam, coeff = rand(16), rand(16)
        cases += [("betainc", name, (*shapes, rand(64))),
                  ("betaincinv", name, (*shapes, rand(64))),
                  ("pair_sq_dist", name, (x, perm)),
                  ("interpolate", name, (x, perm, coeff)),
                  ("interpolate_backward", name, (x, perm, coeff))]
        for warping in ("beta_cdf", "inverse_beta_cdf", "none"):
            args = (x, perm, lam, x, 1.0, 0.25, warping)
            case = f"{name} {warping}"
            cases += [("kernel_mix", case, args),
                      ("kernel_mix_out", case, (*args, torch.empty_like(x))),
                      ("kernel_mix_", case, args)]
    return cases


def _outputs(op: str, result, args: tuple) -> tuple:
    """What an op produced: its result, and for the mutating forms the written tensor."""
    result = result if isinstance(result, tuple) else (result,)
    if op == "kernel_mix_out":
        return (args[-1], *result)
    if op == "kernel_mix_":
        return (args[0], *result)
    return result


def _max_abs_diff(got: tuple, want: tuple) -> float:
    if len(got) != len(want):
        return float("inf")
    worst = 0.0
    for g, w in zip(got, want):
        if g.shape != w.shape or g.dtype != w.dtype:
            return float("inf")
        diff = (g.double() - w.double()).abs()
        nan_mismatch = g.isnan() != w.isnan()
        diff = torch.where(g.isnan() & w.isnan(), 0.0, diff)
        if g.numel():
            worst = max(worst, float("inf") if bool(nan_mismatch.any()) else diff.max().item())
    return worst


def self_checks(device: str) -> list[Check]:
    """Every op of ``_ops.SCHEMAS`` on ``device`` against its pure-PyTorch kernel."""
    cases = _op_cases(device)
    checks = [Check(device, op, "no self-check case", False, float("inf"), 0.0, "?")
              for op in _ops.SCHEMAS if op not in {c[0] for c in cases}]
    key = {"cpu": "CPU", "cuda": "CUDA"}[device]
    for op, case, args in cases:
        compiled = torch._C._dispatch_has_kernel_for_dispatch_key(f"kmixup::{op}", key)
        tolerance = TOLERANCE[args[0].dtype]
        mine = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
        ref = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
        try:
            got = _outputs(op, getattr(torch.ops.kmixup, op)(*mine), mine)
            want = _outputs(op, _ops._PURE[op](*ref), ref)
            diff, error = _max_abs_diff(got, want), ""
        except Exception as err:  # reported as a failure, never fatal
            diff, error = float("inf"), f"{type(err).__name__}: {err}".splitlines()[0][:200]
        checks.append(Check(device, op, case, diff <= tolerance, diff, tolerance,
                            "compiled" if compiled else "pure", error))
    return checks


# ----------------------------------------------------------------------------- timing


def time_kernel_mix(device: str, rounds: int = TIMING_ROUNDS) -> Timing:
    """``kernel_mix`` (beta_cdf) against vanilla mixup ``lam*x + (1-lam)*x[perm]``, called
    in a shuffled order each round; the minima (noise only adds time)."""
    shape = [128, 3, 32, 32] if device == "cpu" else [256, 3, 224, 224]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen).to(device)
    perm = torch.randperm(shape[0], generator=gen).to(device)
    lam = torch.rand(shape[0], generator=gen).to(device)

    def vanilla():
        per_sample = lam.view(-1, *[1] * (x.dim() - 1))
        return per_sample * x + (1 - per_sample) * x[perm]

    methods = {"kernel_mix": lambda: F.kernel_mix(x, perm, lam, validate=False),
               "vanilla": vanilla}
    for method in methods.values():  # warm-up
        method()
    best = dict.fromkeys(methods, float("inf"))
    order = list(methods)
    shuffle = random.Random(0).shuffle
    for _ in range(rounds):
        shuffle(order)
        for name in order:
            _sync(device)
            start = time.perf_counter()
            methods[name]()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return Timing(device, shape, best["kernel_mix"] * 1e3, best["vanilla"] * 1e3,
                  best["kernel_mix"] / best["vanilla"], rounds)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- report


def _format(info: Info) -> str:
    lines = [f"kmixup {info.kmixup}",
             f"Python {info.python}, {info.platform}",
             f"torch {info.torch}, CUDA {info.torch_cuda or 'none (CPU build)'}; "
             f"GPUs: {', '.join(info.gpus) or 'none visible'}",
             f"extension kmixup._C: {info.extension}; CUDA kernels: "
             f"{'compiled in' if info.cuda_kernels else 'none'}"]
    if info.build:
        flags = "; ".join(f"{k} {' '.join(v)}" for k, v in info.build["compile_args"].items())
        lines.append(f"  build record: built against torch {info.build['torch']} (CUDA "
                     f"{info.build['cuda'] or 'none'}); compile flags: {flags}; link flags: "
                     f"{' '.join(info.build['link_args'])}; TORCH_CUDA_ARCH_LIST="
                     f"{info.build['TORCH_CUDA_ARCH_LIST'] or '(unset)'}")
    else:
        lines.append("  build record: none (kmixup/_build_info.json is written by setup.py)")
    lines.append("backends: " + ", ".join(f"{d}: {b}" for d, b in info.backends.items()))
    lines.append(f"CPU row loops: {info.cpu_row_loops}")
    lines.append("CUDA architectures: " + "; ".join(
        f"{k}: {' '.join(v) or '-'}" for k, v in info.cuda_arches.items()))
    if info.checks:
        lines.append("self-check: every op against its pure-PyTorch kernel, small random "
                     "inputs")
        for c in info.checks:
            lines.append(f"  {'PASS' if c.passed else 'FAIL'}  {c.device:<4} {c.op:<20} "
                         f"{c.case:<25} max|diff| {c.max_abs_diff:.2e} (tol {c.tolerance:.0e})"
                         f"  [{c.kernel}]{'  ' + c.error if c.error else ''}")
        failed = sum(not c.passed for c in info.checks)
        lines.append(f"self-check: {len(info.checks) - failed} passed, {failed} failed")
    for t in info.timings:
        lines.append(f"timing {t.device}: kernel_mix {t.kernel_mix_ms:.3f} ms, vanilla mixup "
                     f"{t.vanilla_ms:.3f} ms, ratio {t.ratio:.3g} (min of {t.rounds} "
                     f"interleaved rounds, {'x'.join(map(str, t.shape))} float32)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the report; returns 1 when a self-check failed, else 0."""
    parser = argparse.ArgumentParser(prog="python -m kmixup.info", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--no-timing", action="store_true", help="skip the timing lines")
    parser.add_argument("--no-self-check", action="store_true", help="skip the self-check")
    args = parser.parse_args(argv)
    info = collect(self_check=not args.no_self_check, timing=not args.no_timing)
    if args.json:
        print(json.dumps({**dataclasses.asdict(info), "ok": info.ok}, indent=1))
    else:
        print(info.format())
    return 0 if info.ok else 1


if __name__ == "__main__":
    sys.exit(main())
