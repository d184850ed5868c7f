"""The benchmark entry points run and write what they promise (no timing assertions: the
numbers depend on the machine; only their presence, sign and flags are checked)."""

import argparse
import json
import math
import shutil

import pytest
import torch

import kmixup
from benchmarks import _harness as H
from benchmarks import coefficients, loss, permutations, throughput, train_step

TINY = ["--rounds", "3", "--min-rounds", "2", "--budget", "0", "--warmup", "1"]


def test_summarize_takes_the_minimum_and_flags_noise_and_disturbance():
    def timings(seconds, shares=None):
        return H.Timings(seconds, shares or [1.0] * len(seconds))

    calm = H.summarize(timings([1.0, 1.0, 1.1, 1.0, 1.05]), max_spread=0.5)
    assert calm["min_ms"] == 1000.0 and not calm["flagged"]
    stolen = H.summarize(timings([1.0, 1.0, 4.0, 9.0, 9.0]), max_spread=0.5)
    assert stolen["min_ms"] == 1000.0 and stolen["noisy"] and stolen["spread"] > 0.5
    assert stolen["flagged"] and not stolen["disturbed"]
    # Every call alike slow, so no spread, but even the fastest was mostly off the CPU.
    slow = H.summarize(timings([48.1, 48.0, 48.05], [0.9, 0.07, 0.06]), 0.5, 0.8)
    assert slow["cpu_share_at_min"] == 0.07 and slow["disturbed"] and slow["flagged"]
    assert not slow["noisy"]
    assert H.summarize(H.Timings([2e-3], [None]), max_spread=0.5)["samples"] == 1


def test_interleave_calls_every_case_each_round_and_reports_failures():
    calls, restored = [], []

    def broken():
        raise RuntimeError("no such dtype")

    cases = [H.Case("a", lambda: calls.append("a"), lambda: restored.append("a")),
             H.Case("b", lambda: calls.append("b")), H.Case("broken", broken)]
    samples, skipped = H.interleave(cases, torch.device("cpu"), rounds=7, budget_s=1e9,
                                    warmup=0, seed=1)
    assert set(samples) == {"a", "b"} and all(len(s.seconds) == 7 for s in samples.values())
    assert all(share >= 0 for s in samples.values() for share in s.cpu_share)
    assert calls.count("a") == calls.count("b") == 8 and len(restored) == 8  # 1 trial call
    assert "RuntimeError: no such dtype" in skipped["broken"]
    # shuffled: the order of a round is not always the same
    assert len({tuple(calls[i:i + 2]) for i in range(2, 16, 2)}) == 2


def test_output_goes_to_scratch_unless_results_are_asked_for():
    assert H.SCRATCH != H.RESULTS
    assert H.output_dir(argparse.Namespace(out=None, save_results=False)) == H.SCRATCH
    parser = argparse.ArgumentParser()
    H.add_output_args(parser)
    assert parser.parse_args(["--save-results"]).save_results
    with pytest.raises(SystemExit):
        parser.parse_args(["--save-results", "--out", "x"])


def test_machine_names_the_vector_features_that_pick_the_row_loops(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some CPU\nflags\t\t: fpu sse2 avx2 fma f16c avx512f\n")
    monkeypatch.setattr(H, "CPUINFO", cpuinfo)
    assert H.cpu_vector_features() == ["avx2", "f16c", "avx512f"]
    info = H.machine_info()
    assert info["cpu"] == "Some CPU" and info["cpu_vector_features"] == ["avx2", "f16c", "avx512f"]
    assert "vector features avx2 f16c avx512f" in H.machine_line(info)
    cpuinfo.write_text("model name\t: Some CPU\n")
    assert H.cpu_vector_features() == []
    assert "vector features none listed" in H.machine_line(H.machine_info())


@pytest.fixture(scope="module")
def throughput_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("throughput")
    throughput.main(["--shapes", "cifar 128x3x32x32", "--dtypes", "float32", "--threads", "1",
                     "--devices", "cpu", "--out", str(out), *TINY])
    return out, json.loads((out / "throughput_cpu.json").read_text())


def test_throughput_writes_every_method_with_minima_ratios_and_flags(throughput_run):
    out, result = throughput_run
    rows = {row["method"]: row for row in result["rows"]}
    skipped = {s["method"]: s["reason"] for s in result["skipped"]}
    expected = {throughput.BASELINE, throughput.CLONE, throughput.COPY,
                "timm-style in-place (per-batch lam)", "timm-style in-place (per-sample lam)",
                "authors' scipy path", "kmixup kernel_mix beta_cdf",
                "kmixup kernel_mix inverse_beta_cdf", "kmixup kernel_mix none",
                "kmixup KernelMixup beta_cdf (with targets)",
                "kmixup KernelMixup inverse_beta_cdf (paper CIFAR, with targets)",
                "kmixup Mixup (with targets)"}
    assert expected <= set(rows)
    # Optional baselines are either timed or skipped with the reason recorded; timm's and
    # torchvision's only where the library does not import (they must run where it does).
    libraries = ("timm Mixup elem (in place, with targets)",
                 "timm Mixup batch (in place, with targets)",
                 "torchvision v2.MixUp (with targets)")
    for name in (throughput.COMPILED, *libraries):
        assert name in rows or skipped.get(name), name
    for name in libraries:
        assert name in rows or "does not import" in skipped[name], (name, skipped[name])
    # kmixup's in-place and out= forms: timed (against the in-place floor) where it has them.
    from kmixup import functional as F

    forms = {f"kmixup kernel_mix_ {w} (in place)": hasattr(F, "kernel_mix_")
             for w in throughput.WARPINGS}
    forms.update({f"kmixup kernel_mix {w} (out=)": throughput._accepts(F.kernel_mix, "out")
                  for w in throughput.WARPINGS})
    forms["kmixup KernelMixup beta_cdf inplace=True (with targets)"] = throughput._accepts(
        kmixup.KernelMixup.__init__, "inplace")
    for name, available in forms.items():
        if available:
            assert rows[name]["inplace"] and rows[name]["floor"] == throughput.COPY, name
        else:
            assert name in skipped, name
    for row in rows.values():
        assert 0 < row["min_ms"] <= row["median_ms"]
        assert row["ratio_to_vanilla"] > 0 and row["ratio_to_floor"] > 0 and row["gbps"] > 0
        assert isinstance(row["noisy"], bool) and row["spread"] >= 0
        assert row["flagged"] == (row["noisy"] or row["disturbed"])
        assert row["cpu_share_at_min"] >= 0
        assert row["floor"] == (throughput.COPY if row["inplace"] else throughput.CLONE)
        assert row["threads"] == 1
    assert rows[throughput.CLONE]["ratio_to_floor"] == rows[throughput.COPY]["ratio_to_floor"] == 1
    assert rows[throughput.BASELINE]["ratio_to_vanilla"] == 1
    assert not rows[throughput.BASELINE]["inplace"]
    assert rows["timm-style in-place (per-sample lam)"]["inplace"]
    machine = result["machine"]
    assert machine["cpu"] and machine["logical_cpus"] >= 1 and result["threads"] == [1]
    assert result["device"] and result["torch"] and result["date"]
    assert [c["threads"] for c in result["conditions"]] == [1]
    assert (out / "throughput_cpu.png").stat().st_size > 0
    text = (out / "throughput_cpu.md").read_text()
    assert "kmixup kernel_mix beta_cdf" in text and machine["cpu"] in text


def test_throughput_marks_flagged_rows_in_markdown_and_plot(throughput_run, tmp_path):
    _, result = throughput_run
    shaky = next(r for r in result["rows"] if r["method"] == "kmixup kernel_mix beta_cdf")
    for row in result["rows"]:
        row["noisy"] = row["flagged"] = row is shaky
        row["disturbed"] = row["floor_flagged"] = row["vanilla_flagged"] = False
    text = throughput.markdown(result)
    marked = [line for line in text.splitlines() if "⚠" in line and line.startswith("| ")]
    assert marked and all(line.startswith("| kmixup kernel_mix beta_cdf |") for line in marked)
    throughput.plot(result, tmp_path / "noisy.png")
    assert (tmp_path / "noisy.png").stat().st_size > 0


def test_throughput_times_in_place_forms_when_kmixup_has_them(monkeypatch):
    """A stand-in ``kernel_mix_`` checks that every call sees the original input again
    (restored outside the timer) and mixes it in place."""
    from kmixup import functional as F

    batch = throughput.make_batch((8, 3, 4, 4), torch.float32, torch.device("cpu"))
    seen = []

    def kernel_mix_(x, perm, lam, *, warping="beta_cdf", validate=None):
        seen.append(torch.equal(x, batch.x))
        mixed, coeff = F.kernel_mix(x, perm, lam, warping=warping, validate=validate)
        x.copy_(mixed)
        return coeff

    monkeypatch.setattr(F, "kernel_mix_", kernel_mix_, raising=False)
    methods, missing = throughput.build_methods(batch, compile_pure=False, libraries={})
    inplace = [m for m in methods if m.name.startswith("kmixup kernel_mix_ ")]
    # one per warping, and beta_cdf with timm's pairing (perm = flip(0))
    assert len(inplace) == 4 and all(m.inplace and m.floor == throughput.COPY for m in inplace)
    assert not any(name.startswith("kmixup kernel_mix_ ") for name in missing)
    samples, skipped = H.interleave([H.Case(m.name, m.fn, m.setup) for m in inplace],
                                    torch.device("cpu"), rounds=3, budget_s=1e9, warmup=1)
    assert not skipped and len(seen) == 16 and all(seen)  # 4 x (1 warm-up + 3 rounds)


def test_coefficients_wall_time_per_pair(tmp_path):
    coefficients.main(["--quick", "--batch", "256", "--out", str(tmp_path), *TINY])
    result = json.loads((tmp_path / "coefficients_cpu_quick.json").read_text())
    rows = result["wall"]["rows"]
    assert {(r["dtype"], r["coefficient"], r["via"]) for r in rows} == {
        (d, c, v) for d in ("float32", "float64") for c in coefficients.COEFFICIENTS
        for v in ("kernel_mix", "op")}
    assert all(math.isfinite(r["us_per_pair"]) and isinstance(r["flagged"], bool) for r in rows)
    for stats in result["wall"]["cases"].values():
        assert all(case["min_ms"] > 0 for case in stats)
    assert result["threads"] == 1 and result["machine"]["cpu"]
    assert "µs/pair" in (tmp_path / "coefficients_cpu_quick.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_coefficients_instructions_per_pair_under_callgrind(tmp_path):
    result = coefficients.main(["--mode", "callgrind", "--batch", "256", "--calls", "1",
                                "--dtypes", "float32", "--out", str(tmp_path)])
    cg = result["callgrind"]
    assert not cg.get("error"), cg.get("error")
    assert len(cg["rows"]) == 4 and all(r["instructions_per_pair"] > 0 for r in cg["rows"])
    assert "instructions/pair" in (tmp_path / "coefficients_cpu.md").read_text()


def test_train_step_benchmark_reports_every_method(tmp_path):
    train_step.main(["--quick", "--batch", "8", "--devices", "cpu", "--threads", "1",
                     "--out", str(tmp_path), *TINY])
    result = json.loads((tmp_path / "train_step_cpu_quick.json").read_text())
    assert [r["method"] for r in result["rows"]][0] == "no mixup"
    assert len(result["rows"]) == 6 and all(r["min_ms"] > 0 for r in result["rows"])
    assert all(math.isfinite(r["overhead_vs_no_mixup"]) for r in result["rows"])
    assert result["machine"]["cpu"] and result["threads"] == [1]
    assert (tmp_path / "train_step_cpu_quick.png").stat().st_size > 0


def test_loss_benchmark_times_and_measures_every_method(tmp_path):
    loss.main(["--quick", "--batch", "16", "--classes", "10", "300", "--devices", "cpu",
               "--threads", "1", "--out", str(tmp_path), *TINY])
    result = json.loads((tmp_path / "loss_cpu_quick.json").read_text())
    rows = {(r["classes"], r["method"]): r for r in result["rows"]}
    methods = {loss.FLOOR, loss.KMIXUP, loss.DENSE, "dense: mix_targets + SoftTargetCrossEntropy"}
    assert set(rows) == {(c, m) for c in (10, 300) for m in methods}
    assert all(r["min_ms"] > 0 and math.isfinite(r["time_vs_dense"]) for r in rows.values())
    assert rows[(300, loss.DENSE)]["time_vs_dense"] == 1
    # The replayed allocations: at least the logits and their gradient at the peak;
    # between forward and backward the dense path holds targets and log-probabilities
    # [B, C], kmixup's loss the logits and a few [B] tensors.
    logits_mib = 16 * 300 * 4 / 2**20
    assert all(r["peak_mib"] >= 2 * logits_mib for c, r in rows.items() if c[0] == 300)
    assert rows[(300, loss.DENSE)]["held_after_forward_mib"] >= 2 * logits_mib
    assert rows[(300, loss.KMIXUP)]["held_after_forward_mib"] < 1.5 * logits_mib
    assert rows[(300, loss.KMIXUP)]["peak_mib"] < rows[(300, loss.DENSE)]["peak_mib"]
    assert result["machine"]["cpu"] and result["threads"] == [1]
    assert "kmixup.mix_cross_entropy" in (tmp_path / "loss_cpu_quick.md").read_text()
    assert (tmp_path / "loss_cpu_quick.png").stat().st_size > 0


def _cycle_lengths(perm: torch.Tensor) -> list[int]:
    seen, lengths = set(), []
    for start in range(len(perm)):
        length, row = 0, start
        while row not in seen:
            seen.add(row)
            row, length = int(perm[row]), length + 1
        if length:
            lengths.append(length)
    return sorted(lengths)


def test_permutation_benchmark_perms_have_the_cycles_they_are_named_for():
    perms = permutations.permutations(23, torch.device("cpu"))
    assert all(torch.equal(p.sort().values, torch.arange(23)) for p in perms.values())
    assert _cycle_lengths(perms["one cycle (roll(1), torchvision)"]) == [23]
    assert _cycle_lengths(perms["flip(0) (timm's batch pairing)"]) == [1] + [2] * 11
    for n in (2, 3, 5):
        assert _cycle_lengths(perms[f"cycles of {n} rows"]) == [1] * (23 % n) + [n] * (23 // n)
    blocks = perms["random within blocks of 8"]
    assert all(int(blocks[i]) // 8 == i // 8 for i in range(23))


def test_permutation_benchmark_times_every_perm_against_copy(tmp_path):
    permutations.main(["--quick", "--shape", "8x3x5x5", "--dtypes", "float32", "bfloat16",
                       "--devices", "cpu", "--threads", "1", "--out", str(tmp_path), *TINY])
    result = json.loads((tmp_path / "permutations_cpu_quick.json").read_text())
    names = set(permutations.permutations(8, torch.device("cpu")))
    assert {(r["perm"], r["dtype"]) for r in result["rows"]} == {
        (n, d) for n in names for d in ("float32", "bfloat16")}
    assert all(r["min_ms"] > 0 and math.isfinite(r["x_copy"]) for r in result["rows"])
    table = (tmp_path / "permutations_cpu_quick.md").read_text()
    assert all(name in table for name in names)
    assert (tmp_path / "permutations_cpu_quick.png").stat().st_size > 0
