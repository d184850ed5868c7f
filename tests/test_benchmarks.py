"""The benchmark entry point runs and writes what it promises (no timing assertions)."""

import json

from benchmarks import throughput


def test_throughput_writes_json_markdown_and_png(tmp_path):
    throughput.main(["--shapes", "cifar 128x3x32x32", "--dtypes", "float32", "--repeats", "1",
                     "--devices", "cpu", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "throughput_cpu.json").read_text())
    methods = {row["method"] for row in result["rows"]}
    assert {throughput.BASELINE, "kmixup kernel_mix beta_cdf", "authors' scipy path"} <= methods
    assert all(row["median_ms"] > 0 and row["ratio_to_vanilla"] > 0 for row in result["rows"])
    assert result["device"] and result["torch"] and result["date"]
    assert (tmp_path / "throughput_cpu.png").stat().st_size > 0
    assert "kmixup kernel_mix beta_cdf" in (tmp_path / "throughput_cpu.md").read_text()


def test_train_step_benchmark_reports_every_method(tmp_path):
    from benchmarks import train_step

    train_step.main(["--quick", "--batch", "8", "--devices", "cpu", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "train_step_cpu_quick.json").read_text())
    assert [r["method"] for r in result["rows"]][0] == "no mixup"
    assert len(result["rows"]) == 6 and all(r["median_ms"] > 0 for r in result["rows"])
    assert (tmp_path / "train_step_cpu_quick.png").stat().st_size > 0
