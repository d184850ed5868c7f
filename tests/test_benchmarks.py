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
