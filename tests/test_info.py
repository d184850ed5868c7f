"""python -m kmixup.info: the report parses, and a broken kernel fails the self-check."""

import json
import math
import os
import re
import subprocess
import sys
import warnings

import torch

from kmixup import _ops, info

CHECK_LINE = re.compile(r"^  (PASS|FAIL)  (\w+)\s+(\w+)\s+(.+?)\s+max\|diff\| (\S+) \(tol (\S+)\)"
                        r"  \[(compiled|pure)\]")


def parse_checks(text):
    return [m.groups() for m in map(CHECK_LINE.match, text.splitlines()) if m]


def test_report_lists_environment_every_op_and_a_timing_line(capsys):
    assert info.main([]) == 0
    text = capsys.readouterr().out
    assert f"torch {torch.__version__}" in text and "backends: cpu: " in text
    assert "CUDA architectures: torch:" in text
    assert f"CPU row loops: {info._cpu_row_loops()}" in text
    assert f"CUDA kernels: {'compiled in' if _ops.has_compiled_kernel('cuda') else 'none'}" in text
    checks = parse_checks(text)
    assert {op for _, device, op, *_ in checks if device == "cpu"} == set(_ops.SCHEMAS)
    assert all(status == "PASS" and float(diff) <= float(tol)
               for status, _, _, _, diff, tol, _ in checks)
    assert f"self-check: {len(checks)} passed, 0 failed" in text
    timing = re.search(r"timing cpu: kernel_mix (\S+) ms, vanilla mixup (\S+) ms, ratio (\S+)",
                       text)
    kernel_ms, vanilla_ms, ratio = map(float, timing.groups())
    assert kernel_ms > 0 and vanilla_ms > 0
    assert math.isclose(ratio, kernel_ms / vanilla_ms, rel_tol=0.02, abs_tol=0.01)
    if info.BUILD_INFO.exists():
        assert "built against torch" in text


def test_a_broken_cpu_kernel_fails_the_self_check_and_the_exit_status(capsys):
    def wrong_interpolate(x, perm, coeff):
        return x.flip(0).clone()  # the rows of the wrong partners, unweighted

    lib = torch.library.Library("kmixup", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Overriding a previously registered kernel"
            lib.impl("interpolate", wrong_interpolate, "CPU")
        assert info.main(["--no-timing"]) == 1
    finally:
        lib._destroy()  # the original kernel serves again
    checks = parse_checks(capsys.readouterr().out)
    failed = {(op, case) for status, _, op, case, diff, tol, _ in checks if status == "FAIL"}
    assert failed == {("interpolate", "float32"), ("interpolate", "float64")}
    assert all(float(diff) > float(tol) for status, *_, diff, tol, _ in checks
               if status == "FAIL")
    assert info.main(["--no-timing"]) == 0


def test_an_op_without_a_self_check_case_fails(monkeypatch):
    monkeypatch.setitem(_ops.SCHEMAS, "new_op", "(Tensor x) -> Tensor")
    checks = info.self_checks("cpu")
    missing = [c for c in checks if c.op == "new_op"]
    assert len(missing) == 1 and not missing[0].passed


def test_json_report(capsys):
    assert info.main(["--json", "--no-timing"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["torch"] == torch.__version__ and report["timings"] == []
    assert {c["op"] for c in report["checks"]} == set(_ops.SCHEMAS)


def test_cuda_arches_from_the_build_record():
    record = {"cuda_arch_flags": ["-gencode=arch=compute_80,code=sm_80",
                                  "-gencode=arch=compute_90,code=compute_90"]}
    assert info._cuda_arches(record)["build_flags"] == ["compute_90", "sm_80"]


def test_cpu_row_loops_follow_torchs_capability_and_its_cap():
    """The report names the row loops by torch's CPU capability, which
    ATEN_CPU_CAPABILITY=default caps to the baseline for torch and kmixup alike."""
    code = "from kmixup import info; print(info._cpu_row_loops())"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    capped = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True).stdout
    if _ops.has_compiled_kernel("cpu"):
        assert capped.startswith("baseline") and "capability: DEFAULT" in capped
        native = torch.backends.cpu.get_cpu_capability()
        want = {"AVX512": "AVX-512", "AVX2": "AVX2 + F16C"}.get(native, "baseline")
        assert info._cpu_row_loops().startswith(want)
    else:
        assert capped.startswith("none")
