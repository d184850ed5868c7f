"""The calibration experiments (python -m kmixup.experiments): a tiny end-to-end run, the
metrics against hand-computed values, C-Mixup's pairing, hyperparameter selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
pytest.importorskip("torchmetrics")
pytest.importorskip("tqdm")

from kmixup.experiments import metrics as M  # noqa: E402
from kmixup.experiments import run  # noqa: E402
from kmixup.experiments.data import BUILTIN, load_dataset  # noqa: E402
from kmixup.experiments.methods import (  # noqa: E402
    CLASSIFICATION_METHODS,
    REGRESSION_METHODS,
    cmixup_partners,
    grid_configs,
)

PNG = b"\x89PNG\r\n\x1a\n"
TINY = ["--seeds", "0", "--epochs", "2", "--no-progress"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    args = ["--data", "digits", "--data", "moons", "--data", "diabetes", "--out", str(out)]
    return out, run.main(args + TINY)


# --------------------------------------------------------------------------- end to end


def test_writes_tables_json_and_figures(tiny):
    out, report = tiny
    names = {
        "results.md",
        "results.json",
        "reliability_digits.png",
        "reliability_moons.png",
        "coverage_diabetes.png",
        "decision_boundaries.png",
    }
    assert {p.split("/")[-1] for p in report["files"]} == names
    for name in names:
        assert (out / name).stat().st_size > 0
        if name.endswith(".png"):
            assert (out / name).read_bytes().startswith(PNG)
    parsed = json.loads((out / "results.json").read_text())
    assert parsed["config"]["seeds"] == [0]
    assert set(parsed["datasets"]) == {"digits", "moons", "diabetes"}


def test_one_row_per_method(tiny):
    out, report = tiny
    md = (out / "results.md").read_text()
    for name, d in report["datasets"].items():
        registry = CLASSIFICATION_METHODS if d["task"] == "classification" else REGRESSION_METHODS
        defaults = [k for k, spec in registry.items() if spec.default]
        assert list(d["methods"]) == defaults, name
        for key in defaults:
            assert md.count(f"| {registry[key].label} |") >= 1
            assert d["methods"][key]["ms_per_step"] > 0
    assert md.count("| ERM |") == 3 and md.count("ms/step") == 3
    assert "sk_bank" not in report["datasets"]["digits"]["methods"]


def test_metrics_in_range(tiny):
    _, report = tiny
    for name, d in report["datasets"].items():
        for key, m in d["methods"].items():
            assert len(m["runs"]) == 1 and m["runs"][0]["seed"] == 0
            r = m["runs"][0]
            assert all(math.isfinite(v) for v in r.values()), (name, key, r)
            assert m["std"] == {k: 0.0 for k in m["mean"]}  # one seed
            if d["task"] == "classification":
                for k in ("acc", "conf", "ece", "aece", "ece_ts", "aece_ts"):
                    assert 0.0 <= r[k] <= 1.0, (name, key, k)
                for k in ("brier", "brier_ts"):
                    assert 0.0 <= r[k] <= 2.0
                assert r["nll"] > 0 and r["nll_ts"] > 0 and r["temperature"] > 0
                assert r["acc"] > 0.5  # two epochs already beat chance on these sets
                # TS is fitted on validation, but cannot be much worse than T = 1 on test.
                assert r["nll_ts"] < r["nll"] + 0.05
            else:
                assert r["rmse"] > 0 and r["mape"] > 0 and r["var_scale"] > 0
                assert 0.0 <= r["cal"] <= 1.0 and 0.0 <= r["cal_vs"] <= 1.0


def test_prints_table_and_paths(tmp_path, capsys):
    run.main(["--data", "moons", "--methods", "erm,sk_input", "--out", str(tmp_path)] + TINY)
    text = capsys.readouterr().out
    assert "| SK Mixup (input) |" in text and "| Mixup |" not in text
    assert "results.json" in text and "decision_boundaries.png" in text


def test_reruns_match_exactly(tmp_path):
    args = ["--data", "moons", "--data", "diabetes", "--methods", "sk_embedding,c_mixup,sk_label"]
    a = run.main(args + ["--out", str(tmp_path / "a")] + TINY)
    b = run.main(args + ["--out", str(tmp_path / "b")] + TINY)
    for name in a["datasets"]:
        for key, m in a["datasets"][name]["methods"].items():
            assert m["runs"] == b["datasets"][name]["methods"][key]["runs"]


def test_npz_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3, 2))
    np.savez(tmp_path / "cls.npz", X=x, y=(x[:, 0, 0] > 0).astype(np.int64) * 5 + 2)
    np.savez(tmp_path / "reg.npz", X=x, y=x.sum((1, 2)))
    cls, reg = load_dataset(str(tmp_path / "cls.npz")), load_dataset(str(tmp_path / "reg.npz"))
    assert cls.task == "classification" and cls.num_classes == 2  # labels 2, 7 -> 0, 1
    assert reg.task == "regression" and reg.num_classes is None
    assert cls.train.x.shape == (36, 6) and len(cls.val.y) == 12 and len(cls.test.y) == 12
    report = run.main(["--data", str(tmp_path / "reg.npz"), "--out", str(tmp_path)] + TINY)
    assert report["datasets"]["reg"]["task"] == "regression"
    np.savez(tmp_path / "bad.npz", X=x, z=x)
    with pytest.raises(ValueError, match="'X' and 'y'"):
        load_dataset(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("mnist")


def test_overlap_set_is_generated_deterministically():
    a, b = load_dataset("overlap"), load_dataset("overlap")
    assert "overlap" in BUILTIN and run.parse_args([]).data == list(BUILTIN)
    assert a.task == "classification" and a.num_classes == 4 and not a.toy_2d
    assert a.train.x.shape == (600, 10) and len(a.val.y) == 200 and len(a.test.y) == 200
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).x, getattr(b, part).x)
        assert torch.equal(getattr(a, part).y, getattr(b, part).y)
    # Stratified: every class about a quarter of each split.
    assert torch.bincount(a.test.y, minlength=4).min() >= 45


def test_erm_is_overconfident_on_overlap_and_mixup_is_not(tmp_path):
    # The demo's own recipe (quick epochs), one seed: a fixed seed repeats every number,
    # and the margins below are several times the spread over seeds.
    args = ["--data", "overlap", "--methods", "erm,mixup", "--seeds", "0", "--no-progress"]
    report = run.main(args + ["--out", str(tmp_path)])
    erm, mixup = (report["datasets"]["overlap"]["methods"][k]["runs"][0] for k in ("erm", "mixup"))
    # ERM fits the noisy labels: confidence far above accuracy, a temperature well above 1.
    assert erm["conf"] > erm["acc"] + 0.1 and erm["temperature"] > 1.5
    assert erm["ece"] > 0.15
    # Mixup is not: far lower confidence, ECE and NLL, at no loss of accuracy.
    assert mixup["conf"] < erm["conf"] - 0.1
    assert mixup["ece"] < erm["ece"] - 0.05 and mixup["nll"] < erm["nll"] - 0.2
    assert mixup["acc"] > erm["acc"] - 0.03
    assert (tmp_path / "reliability_overlap.png").read_bytes().startswith(PNG)
    assert "| Conf (%) |" in (tmp_path / "results.md").read_text()


def test_bank_and_hidden_methods_run_and_the_bank_serves_from_epoch_two(monkeypatch):
    import kmixup

    served = []

    class RecordingBank(kmixup.FeatureBank):
        def lookup(self, index):
            feats = super().lookup(index)
            served.append(feats is not None)
            return feats

    monkeypatch.setattr(kmixup, "FeatureBank", RecordingBank)
    ds = load_dataset("moons")
    recipe = run.RECIPES["moons"]
    res = run.run_dataset(ds, ["sk_bank", "sk_hidden"], (0,), 2, recipe, tune=False,
                          progress=False)
    for key in ("sk_bank", "sk_hidden"):
        assert all(math.isfinite(v) for v in res[key]["runs"][0].values()), key
        assert res[key]["runs"][0]["acc"] > 0.5
    half = len(served) // 2  # two epochs of equally many steps
    assert half > 0 and not any(served[:half]) and all(served[half:])


# --------------------------------------------------------------------------- selection


def test_selection_uses_validation_only():
    ds = load_dataset("moons")
    spec = CLASSIFICATION_METHODS["mixup"]
    recipe = run.RECIPES["moons"]
    res = run.run_dataset(ds, ["mixup"], (0,), 2, recipe, tune=True, progress=False)["mixup"]
    search = res["search"]
    assert [s["hparams"] for s in search] == grid_configs(spec)
    assert res["hparams"] == min(search, key=lambda s: s["val_nll"])["hparams"]
    # Scrambling the test labels changes the test metrics but not the choice.
    ds.test.y = ds.test.y[
        torch.randperm(len(ds.test.y), generator=torch.Generator().manual_seed(1))
    ]
    again = run.run_dataset(ds, ["mixup"], (0,), 2, recipe, tune=True, progress=False)["mixup"]
    assert again["hparams"] == res["hparams"] and again["search"] == search
    assert again["runs"][0]["acc"] != res["runs"][0]["acc"]


def test_grids_contain_the_quick_defaults():
    for registry in (CLASSIFICATION_METHODS, REGRESSION_METHODS):
        for spec in registry.values():
            assert spec.defaults in grid_configs(spec) or not spec.grid, spec.key
    sk = CLASSIFICATION_METHODS["sk_input"]
    assert {c["warping"] for c in grid_configs(sk)} == {"beta_cdf", "inverse_beta_cdf"}


# --------------------------------------------------------------------------- C-Mixup


def test_cmixup_partners_prefer_close_labels():
    y = torch.linspace(-3, 3, 301)
    idx = torch.arange(301).repeat(20)
    gen = torch.Generator().manual_seed(0)
    narrow = (y[idx] - y[cmixup_partners(idx, y, 0.1, gen)]).abs().mean()
    wide = (y[idx] - y[cmixup_partners(idx, y, 100.0, gen)]).abs().mean()
    uniform = (y[:, None] - y[None, :]).abs().mean()  # 2.0 for a uniform partner
    assert narrow < 0.15
    assert abs(wide - uniform) < 0.1
    # Partner probabilities follow the Gaussian kernel: at bandwidth 0.1, a partner
    # 0.2 away (2 bandwidths) is drawn e^2 ~ 7.4x less often than the sample itself.
    i = torch.full((40000,), 150)
    j = cmixup_partners(i, y, 0.1, gen)
    ratio = (j == 150).sum() / (j == 160).sum()
    assert 6.0 < ratio < 9.0


# --------------------------------------------------------------------------- metrics


def _logits(p_pred: list[float], pred: list[int]) -> torch.Tensor:
    """Binary logits whose softmax gives probability p to class ``pred``."""
    p = torch.tensor(p_pred, dtype=torch.float64)
    probs = torch.stack([1 - p, p], 1)
    flip = torch.tensor(pred) == 0
    probs[flip] = probs[flip].flip(1)
    return probs.log()


def test_classification_metrics_by_hand():
    # Four samples, confidences 0.61, 0.71, 0.81, 0.91 (one per 15-bin bin), the second
    # one wrong.
    conf = [0.61, 0.71, 0.81, 0.91]
    logits = _logits(conf, [1, 0, 1, 0])
    y = torch.tensor([1, 1, 1, 0])
    m = M.classification_metrics(logits, y)
    assert m["acc"] == pytest.approx(0.75)
    assert m["conf"] == pytest.approx(np.mean(conf))  # 0.76 > 0.75: slightly overconfident
    # ECE: each bin holds one sample: mean |correct - conf|.
    assert m["ece"] == pytest.approx((0.39 + 0.71 + 0.19 + 0.09) / 4)
    # Adaptive ECE with 15 bins over 4 samples = one sample per bin: same value here;
    # with 2 equal-mass bins: {0.61, 0.71} acc 0.5 conf 0.66, {0.81, 0.91} acc 1 conf 0.86.
    assert m["aece"] == pytest.approx(m["ece"])
    assert M.adaptive_ece(logits.softmax(1), y, n_bins=2) == pytest.approx(0.5 * 0.16 + 0.5 * 0.14)
    # NLL: -mean log p(true class); the wrong one gives its true class 1 - 0.71.
    p_true = [0.61, 0.29, 0.81, 0.91]
    assert m["nll"] == pytest.approx(-np.mean(np.log(p_true)))
    # Brier (two classes): 2 * (1 - p_true)**2 per sample.
    assert m["brier"] == pytest.approx(np.mean([2 * (1 - p) ** 2 for p in p_true]))


def test_reliability_bins_add_up_to_ece():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(500, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (500,), generator=gen)
    bins = M.reliability_bins(logits.softmax(1), y)
    n = np.array(bins["count"])
    assert n.sum() == 500
    gaps = np.abs(np.nan_to_num(np.array(bins["acc"]) - np.array(bins["conf"])))
    assert (n * gaps).sum() / 500 == pytest.approx(M.classification_metrics(logits, y)["ece"])


def test_temperature_minimises_validation_nll():
    scipy_opt = pytest.importorskip("scipy.optimize")
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 4, generator=gen, dtype=torch.float64)
    y = torch.multinomial(z.softmax(1), 1, generator=gen).squeeze(1)
    logits = 3.0 * z  # three times too confident
    t = M.fit_temperature(logits, y)

    def nll(temp: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits / temp, y))

    ref = scipy_opt.minimize_scalar(
        nll, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-8}
    ).x
    assert t == pytest.approx(ref, rel=1e-4)
    assert t == pytest.approx(3.0, rel=0.15)


def test_regression_metrics_by_hand():
    stats = pytest.importorskip("scipy.stats")
    mean = torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64)
    var = torch.tensor([1.0, 4.0, 1.0, 9.0], dtype=torch.float64)
    y = torch.tensor([10.5, 19.0, 33.0, 40.0], dtype=torch.float64)
    m = M.regression_metrics(mean, var, y)
    err = (y - mean).numpy()
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert m["mape"] == pytest.approx(100 * np.mean(np.abs(err) / y.numpy()))
    logpdf = stats.norm.logpdf(y.numpy(), mean.numpy(), np.sqrt(var.numpy()))
    assert m["nll"] == pytest.approx(-logpdf.mean())
    # Standardised errors |0.5|, |-0.5|, |3|, 0: the central p-interval holds a sample
    # when its |z| <= Phi^-1((1 + p) / 2).
    zabs = np.abs(err) / np.sqrt(var.numpy())
    cal = np.mean(
        [abs(np.mean(zabs <= stats.norm.ppf((1 + p) / 2)) - p) for p in M.COVERAGE_LEVELS]
    )
    assert m["cal"] == pytest.approx(cal)
    # At p = 0.05 (z = 0.063) only the exact prediction is covered; at p = 0.5
    # (z = 0.674) three of four; at p = 0.95 (z = 1.96) still three.
    cov = M.coverage(mean, var, y).numpy()
    assert cov[0] == 0.25 and cov[9] == 0.75 and cov[-1] == 0.75


def test_variance_scale_minimises_nll():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(1000, generator=gen, dtype=torch.float64)
    var = torch.rand(1000, generator=gen, dtype=torch.float64) + 0.5
    y = mean + 2.0 * var.sqrt() * torch.randn(1000, generator=gen, dtype=torch.float64)
    s = M.fit_variance_scale(mean, var, y)
    assert s == pytest.approx(4.0, rel=0.15)

    def nll(scale: float) -> float:
        return M.regression_metrics(mean, var * scale, y)["nll"]

    assert nll(s) < min(nll(0.98 * s), nll(1.02 * s))


def test_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run.main(["--methods", "erm,sk", "--out", str(tmp_path)])
    assert "unknown method(s) ['sk']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.main(["--quick", "--full"])
