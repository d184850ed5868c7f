"""The demo (python -m kmixup.demo) runs, writes its figures and shows the SK Mixup effect;
`make demo` then runs the quick experiments, the overconfident-ERM set included."""

from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

from kmixup import demo  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, demo.main(["--out", str(out)])


def test_writes_non_empty_pngs(run):
    out, stats = run
    assert len(stats["files"]) == 2
    for path in stats["files"]:
        assert path.parent == out
        assert path.suffix == ".png"
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_sk_mixup_mixes_distant_pairs_less(run):
    _, stats = run
    q = stats["quartiles"]
    assert [r["quartile"] for r in q] == [1, 2, 3, 4]
    assert sum(r["pairs"] for r in q) == 256
    for key in ("sk_beta_cdf", "sk_inverse_beta_cdf"):
        s = [r["strength"][key] for r in q]
        # Strength falls with distance, from near-even blending to almost none.
        assert all(a > b for a, b in zip(s, s[1:])), (key, s)
        assert s[0] > 0.35 and s[-1] < 0.15, (key, s)
    # Plain mixup ignores distance: all quartiles near the Beta(1, 1) mean of 0.25.
    m = [r["strength"]["mixup"] for r in q]
    assert max(m) - min(m) < 0.1, m
    # Cross-class pairs are mixed less than same-class ones by SK Mixup only.
    c = stats["by_class"]
    for key in ("sk_beta_cdf", "sk_inverse_beta_cdf"):
        assert c["other class"]["strength"][key] < c["same class"]["strength"][key]


def test_prints_report(run, capsys):
    demo.main(["--out", str(run[0]), "--batch", "64", "--seed", "3"])
    text = capsys.readouterr().out
    assert "Mean mixing strength by pair distance" in text
    assert "coefficient_vs_distance.png" in text and "mixed_examples.png" in text


def test_rejects_bad_batch(tmp_path):
    with pytest.raises(ValueError, match="--batch"):
        demo.main(["--out", str(tmp_path), "--batch", "1"])


def test_make_demo_experiments_include_the_overconfident_regime():
    pytest.importorskip("torchmetrics")
    from kmixup.experiments import run

    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    line = next(ln for ln in recipe.splitlines() if "-m kmixup.experiments" in ln)
    args = run.parse_args(line.split("-m kmixup.experiments", 1)[1].split())
    # The set where ERM is overconfident (tests/test_experiments.py checks that it is).
    assert args.mode == "quick" and "overlap" in args.data
