"""The examples run end to end (tiny settings) and learn; each is skipped, with the
reason, where its dependency is not installed."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name):
    """Import examples/<name>.py as a module (the examples are scripts, not a package)."""
    sys.path.insert(0, str(EXAMPLES))  # the Lightning example imports plain_loop's helpers
    try:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXAMPLES))


def importable(module_name):
    """None if ``module_name`` imports, else why not (an import can fail with errors
    other than ImportError, e.g. timm beside a torchvision built for another torch)."""
    try:
        importlib.import_module(module_name)
    except Exception as err:  # any failure means the example cannot run
        return f"{module_name} does not import here: {type(err).__name__}: {err}"[:300]
    return None


@pytest.mark.parametrize("variant", [[], ["--hidden"], ["--bank"]])
def test_plain_loop_learns(variant):
    pytest.importorskip("sklearn")
    result = load("plain_loop").main(["--epochs", "4", "--device", "cpu"] + variant)
    losses = result["train_loss"]
    assert losses[-1] < losses[0]
    assert result["accuracy"] > 0.8  # ten classes: chance is 0.1
    assert 0.0 <= result["ece"] < 0.5


def test_lightning_module_fits():
    pytest.importorskip("sklearn")
    reason = importable("lightning") and importable("pytorch_lightning")
    if reason:
        pytest.skip(reason)
    metrics = load("lightning_module").main(["--epochs", "3"])
    assert metrics["val_acc"] > 0.8 and 0.0 <= metrics["val_ece"] < 0.5
    assert metrics["train_loss"] > 0


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
def test_timm_swap_is_drop_in(mode):
    """Same call, shapes, dtypes and targets summing to 1 (checked inside the example,
    for Mixup and the collate), and with warping="none" the same distribution of mixing
    as timm's: shares of unmixed samples and of CutMix, and the coefficients of each
    branch (Kolmogorov-Smirnov). One sample per batch: the rows of a batch share draws."""
    reason = importable("timm")
    if reason:
        pytest.skip(reason)
    from scipy import stats

    draws, batch = 1000, 8
    result = load("timm_swap").main(["--model", "resnet18", "--image-size", "32", "--mode", mode,
                                     "--draws", str(draws), "--batch-size", str(batch)])
    assert set(result["loss"]) == {"timm Mixup", "kmixup TimmMixup"}
    assert all(0 < v < 10 for v in result["loss"].values())
    observed = {name: {key: value.reshape(draws, batch)[:, 0] for key, value in obs.items()}
                for name, obs in result["observed"].items()}
    timm, plain, sk = observed.values()
    # SK rounds some coefficients to 1 in float32, so its unmixed share is not timm's.
    for ours, share in [(plain, lambda o: o["coeff"] == 1), (plain, lambda o: o["cutmix"]),
                        (sk, lambda o: o["cutmix"])]:
        p, q = share(timm).mean(), share(ours).mean()
        assert abs(p - q) < 5 * (p * (1 - p) * 2 / draws) ** 0.5
    for branch in (lambda o: ~o["cutmix"] & (o["coeff"] < 1), lambda o: o["cutmix"]):
        assert stats.ks_2samp(timm["coeff"][branch(timm)],
                              plain["coeff"][branch(plain)]).pvalue > 1e-3
    # SK warping changes the mixup coefficients only.
    assert stats.ks_2samp(timm["coeff"][timm["cutmix"]], sk["coeff"][sk["cutmix"]]).pvalue > 1e-3
