"""Training, evaluation, hyperparameter selection, tables and the command line."""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import kmixup

from . import metrics as M
from .data import BUILTIN, Dataset, load_dataset
from .methods import (
    CLASSIFICATION_METHODS,
    REGRESSION_METHODS,
    MethodSpec,
    grid_configs,
    make_loss,
    methods_for,
)
from .models import MLP, gaussian_params

__all__ = ["QUICK_SEEDS", "FULL_SEEDS", "RECIPES", "Recipe", "main", "run_dataset", "train"]

# Fixed seed lists: a rerun with the same arguments (and thread count) repeats every number.
QUICK_SEEDS = (0, 1, 2)
FULL_SEEDS = tuple(range(10))


@dataclass(frozen=True)
class Recipe:
    """How to train on a data set: MLP widths, epochs (quick, full), batch, AdamW."""

    hidden: tuple[int, ...]
    epochs: tuple[int, int]
    batch_size: int
    lr: float
    weight_decay: float = 1e-4


# Set once, by ERM's validation NLL over a few widths / epochs / learning rates (never
# the test split), then shared by every method. Large batches on purpose: on the
# pure-PyTorch path a mixing step costs mostly per call, not per sample. Diabetes is
# nearly linear and a wider or longer-trained MLP overfits its variance head. Overlap is
# the exception, on purpose: digits' network and the toy sets' schedule, far more than
# its noisy labels need (ERM's validation NLL is lowest at about 20 epochs), so that ERM
# fits the noise and is overconfident, as deep networks trained to convergence are.
RECIPES = {
    "digits": Recipe((128, 128), (30, 60), 128, 3e-3),
    "moons": Recipe((64, 64), (100, 200), 100, 3e-3),
    "circles": Recipe((64, 64), (100, 200), 100, 3e-3),
    "overlap": Recipe((128, 128), (100, 200), 100, 3e-3),
    "diabetes": Recipe((32,), (40, 80), 64, 1e-3, 1e-2),
}
NPZ_RECIPE = Recipe((128, 128), (30, 60), 128, 1e-3)


def train(
    ds: Dataset,
    spec: MethodSpec,
    hp: dict,
    seed: int,
    epochs: int,
    recipe: Recipe,
    on_epoch: Callable[[], None] | None = None,
) -> tuple[MLP, float]:
    """Train an MLP on ``ds.train`` with method ``spec`` and hyperparameters ``hp``.

    ``seed`` fixes the initialisation, the batch order and every mixing draw. AdamW with a
    cosine learning-rate decay to 0; the final model is kept (no early stopping).

    Returns:
        The model and the mean wall time of a training step in milliseconds.
    """
    torch.manual_seed(seed)
    out_dim = ds.num_classes if ds.task == "classification" else 2
    model = MLP(ds.train.x.shape[1], recipe.hidden, out_dim)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = make_loss(spec.key, hp, model, ds, gen)
    n = len(ds.train.y)
    n_batches = max(1, min(math.ceil(n / recipe.batch_size), n // 2))  # every batch >= 2
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * n_batches)
    model.train()
    step_seconds = 0.0
    for _ in range(epochs):
        # Near-equal batches (tensor_split) rather than a tiny last one.
        for idx in torch.randperm(n, generator=gen).tensor_split(n_batches):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(idx).backward()
            opt.step()
            sched.step()
            step_seconds += time.perf_counter() - t0
        if on_epoch is not None:
            on_epoch()
    model.eval()
    return model, 1e3 * step_seconds / (epochs * n_batches)


@torch.no_grad()
def evaluate(model: MLP, ds: Dataset) -> tuple[dict[str, float], dict]:
    """Test metrics before and after recalibration fitted on the validation split.

    Returns:
        ``(metrics, predictions)``. Metrics with a ``_ts`` (classification, temperature
        scaling) or ``_vs`` (regression, variance scaling) suffix are after
        recalibration; ``val_nll`` is the raw validation NLL used for model selection.
    """
    val_out, test_out = model(ds.val.x).double(), model(ds.test.x).double()
    if ds.task == "classification":
        with torch.enable_grad():
            temp = M.fit_temperature(val_out, ds.val.y)
        raw = M.classification_metrics(test_out, ds.test.y)
        ts = M.classification_metrics(test_out / temp, ds.test.y)
        out = {**raw, **{f"{k}_ts": ts[k] for k in ("ece", "aece", "nll", "brier")}}
        out["temperature"] = temp
        out["val_nll"] = float(torch.nn.functional.cross_entropy(val_out, ds.val.y))
        preds = {"probs": test_out.softmax(1), "probs_ts": (test_out / temp).softmax(1)}
        return out, preds

    def destandardise(o: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mean, var = gaussian_params(o)
        return mean * ds.y_std + ds.y_mean, var * ds.y_std**2, y.double() * ds.y_std + ds.y_mean

    vm, vv, vy = destandardise(val_out, ds.val.y)
    tm, tv, ty = destandardise(test_out, ds.test.y)
    scale = M.fit_variance_scale(vm, vv, vy)
    raw = M.regression_metrics(tm, tv, ty)
    vs = M.regression_metrics(tm, tv * scale, ty)
    out = {**raw, "nll_vs": vs["nll"], "cal_vs": vs["cal"], "var_scale": scale}
    out["val_nll"] = M.regression_metrics(vm, vv, vy)["nll"]
    preds = {"coverage": M.coverage(tm, tv, ty), "coverage_vs": M.coverage(tm, tv * scale, ty)}
    return out, preds


def _toy_grid(model: MLP, ds: Dataset, n: int = 150) -> dict:
    """``P(y = 1)`` of ``model`` on an ``n x n`` mesh around the data."""
    x = torch.cat([ds.train.x, ds.val.x, ds.test.x])
    lo, hi = x.min(0).values - 0.5, x.max(0).values + 0.5
    xx, yy = torch.meshgrid(
        torch.linspace(float(lo[0]), float(hi[0]), n),
        torch.linspace(float(lo[1]), float(hi[1]), n),
        indexing="xy",
    )
    with torch.no_grad():
        p = model(torch.stack([xx.flatten(), yy.flatten()], 1)).softmax(1)[:, 1]
    return {"xx": xx.numpy(), "yy": yy.numpy(), "prob": p.reshape(n, n).numpy()}


def run_dataset(
    ds: Dataset,
    method_keys: list[str],
    seeds: tuple[int, ...],
    epochs: int,
    recipe: Recipe,
    tune: bool,
    progress: bool | None = None,
) -> dict:
    """Train and evaluate every method on ``ds`` over ``seeds``.

    With ``tune``, each method with a search grid first trains one model per setting
    with ``seeds[0]`` and keeps the setting with the lowest raw validation NLL (the test
    split is never looked at); that model is reused as the ``seeds[0]`` run.

    Returns:
        ``{method_key: {"label", "hparams", "search", "runs", "mean", "std", "preds",
        "toy", "ms_per_step"}}``; ``runs`` holds one metrics dict per seed, ``preds`` the
        test predictions per seed, ``toy`` the decision-boundary mesh of the first seed's
        model (2-D toy sets only), ``ms_per_step`` the mean training-step time over the
        seeds' runs (kept out of ``runs``, which a rerun repeats exactly).
    """
    from tqdm.auto import tqdm

    registry = methods_for(ds.task)
    plans = {}
    for key in method_keys:
        spec = registry[key]
        configs = grid_configs(spec) if tune and spec.grid else [dict(spec.defaults)]
        plans[key] = (spec, configs)
    total = sum(len(c) + len(seeds) - 1 for _, c in plans.values()) * epochs
    # disable=None: bars only on a terminal, so logs and tests stay clean.
    bar = tqdm(
        total=total, desc=ds.name, unit="epoch", disable=None if progress is None else not progress
    )
    results = {}
    for key, (spec, configs) in plans.items():
        search, best = [], None
        for hp in configs:
            bar.set_postfix_str(f"{spec.label} {hp if len(configs) > 1 else ''}".strip())
            model, ms = train(ds, spec, hp, seeds[0], epochs, recipe, lambda: bar.update(1))
            met, preds = evaluate(model, ds)
            search.append({"hparams": hp, "val_nll": met["val_nll"]})
            if best is None or met["val_nll"] < best[1]["val_nll"]:
                best = (hp, met, preds, model, ms)
        hp, met, preds, model, ms = best
        runs, all_preds, step_ms = [{"seed": seeds[0], **met}], [preds], [ms]
        toy = _toy_grid(model, ds) if ds.toy_2d else None
        for seed in seeds[1:]:
            bar.set_postfix_str(f"{spec.label} seed {seed}")
            model, ms = train(ds, spec, hp, seed, epochs, recipe, lambda: bar.update(1))
            met, preds = evaluate(model, ds)
            runs.append({"seed": seed, **met})
            all_preds.append(preds)
            step_ms.append(ms)
        names = [k for k in runs[0] if k != "seed"]
        table = np.array([[r[k] for k in names] for r in runs])
        std = table.std(0, ddof=1) if len(runs) > 1 else np.zeros(len(names))
        results[key] = {
            "label": spec.label,
            "hparams": hp,
            "search": search if len(configs) > 1 else [],
            "runs": runs,
            "mean": dict(zip(names, table.mean(0).tolist())),
            "std": dict(zip(names, std.tolist())),
            "preds": all_preds,
            "toy": toy,
            "ms_per_step": float(np.mean(step_ms)),
        }
    bar.close()
    return results


# --------------------------------------------------------------------------- reporting

CLS_COLUMNS = [  # (metric, header, scale, decimals)
    ("acc", "Acc (%) ↑", 100, 2),
    ("conf", "Conf (%)", 100, 2),
    ("ece", "ECE (%) ↓", 100, 2),
    ("aece", "aECE (%) ↓", 100, 2),
    ("nll", "NLL ↓", 1, 3),
    ("brier", "Brier ↓", 1, 3),
    ("ece_ts", "ECE TS (%)", 100, 2),
    ("aece_ts", "aECE TS (%)", 100, 2),
    ("nll_ts", "NLL TS", 1, 3),
    ("brier_ts", "Brier TS", 1, 3),
]
REG_COLUMNS = [
    ("rmse", "RMSE ↓", 1, 2),
    ("mape", "MAPE (%) ↓", 1, 2),
    ("nll", "NLL ↓", 1, 3),
    ("cal", "Cal. err (%) ↓", 100, 2),
    ("nll_vs", "NLL VS", 1, 3),
    ("cal_vs", "Cal. err VS (%)", 100, 2),
]


def _fmt_hp(hp: dict) -> str:
    if not hp:
        return "—"
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def markdown_table(task: str, results: dict) -> str:
    """A markdown table, one row per method: mean ± std over seeds, and the settings."""
    cols = CLS_COLUMNS if task == "classification" else REG_COLUMNS
    lines = [
        "| Method | " + " | ".join(c[1] for c in cols) + " | ms/step | Hyperparameters |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for r in results.values():
        cells = [f"{r['mean'][k] * s:.{d}f} ± {r['std'][k] * s:.{d}f}" for k, _, s, d in cols]
        cells.append(f"{r['ms_per_step']:.2f}")
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {_fmt_hp(r['hparams'])} |")
    return "\n".join(lines)


def _plot_dataset(ds: Dataset, results: dict, out: Path) -> list[Path]:
    from .plots import plot_coverage, plot_reliability

    if ds.task == "classification":
        panels = []
        for r in results.values():
            # Pool the test predictions of all seeds: more points per bin.
            probs = torch.cat([p["probs"] for p in r["preds"]])
            probs_ts = torch.cat([p["probs_ts"] for p in r["preds"]])
            y = ds.test.y.repeat(len(r["preds"]))
            panels.append(
                {
                    "label": r["label"],
                    "raw": M.reliability_bins(probs, y),
                    "ts": M.reliability_bins(probs_ts, y),
                    "ece": r["mean"]["ece"],
                    "ece_ts": r["mean"]["ece_ts"],
                }
            )
        path = out / f"reliability_{ds.name}.png"
        title = f"{ds.name}: reliability on the test split (all seeds pooled; ECE: seed mean)"
        plot_reliability(path, title, panels)
        return [path]
    curves = [
        {
            "label": r["label"],
            "raw": torch.stack([p["coverage"] for p in r["preds"]]).mean(0).tolist(),
            "vs": torch.stack([p["coverage_vs"] for p in r["preds"]]).mean(0).tolist(),
        }
        for r in results.values()
    ]
    path = out / f"coverage_{ds.name}.png"
    plot_coverage(
        path, f"{ds.name}: interval coverage (test, seed mean)", list(M.COVERAGE_LEVELS), curves
    )
    return [path]


# --------------------------------------------------------------------------- command line

EPILOG = """\
data sets (--data, repeatable; default: all five built-in ones):
  digits    scikit-learn's 8x8 handwritten digits, 10 classes (MLP)
  moons     two interleaving half circles, 2 classes (the paper's toy illustration)
  circles   two concentric circles, 2 classes
  overlap   4 overlapping classes in 10-D, 10% random labels: ERM is overconfident
  diabetes  scikit-learn's diabetes progression, regression (Gaussian mean/variance head)
  PATH.npz  your own data: arrays X [N, ...] (flattened, standardised) and y [N];
            integer y = classification, floating y = regression

outputs (--out): results.md (tables), results.json (every seed, the settings, the
search), reliability_<data>.png, decision_boundaries.png (toy sets),
coverage_<data>.png (regression).
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m kmixup.experiments",
        description="Train small models with ERM, Mixup, RegMixup / C-Mixup and SK Mixup "
        "over several seeds; report accuracy and calibration before and after "
        "recalibration on the validation split.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        action="store_true",
        help="the default: seeds 0-2, few epochs, the documented default hyperparameters "
        "(about 1 min of CPU with kmixup's compiled kernels, twice that on its pure-PyTorch path)",
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="seeds 0-9, twice the epochs, hyperparameters searched on the validation split "
        "(about 7 min with the compiled kernels; hours on the pure-PyTorch path)",
    )
    ap.add_argument(
        "--data",
        action="append",
        metavar="NAME|PATH.npz",
        help="data set; repeat for several (default: digits moons circles overlap diabetes)",
    )
    ap.add_argument(
        "--methods",
        help="comma-separated method keys to run (default: all but sk_bank, sk_hidden); "
        "classification: erm,mixup,regmixup,sk_input,sk_embedding,sk_bank,sk_hidden; "
        "regression: erm,mixup,c_mixup,sk_label",
    )
    ap.add_argument("--seeds", help="comma-separated seeds (default: 0,1,2 quick; 0-9 full)")
    ap.add_argument("--epochs", type=int, help="override the epochs of every data set")
    ap.add_argument(
        "--tune",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="search hyperparameters on validation (default: on with --full)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("demo_output/experiments"),
        help="output directory (default: demo_output/experiments)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: these models are too small to gain "
        "from more, and threads contend on a busy machine)",
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    args.mode = "full" if args.full else "quick"
    if args.tune is None:
        args.tune = args.full
    if args.seeds:
        args.seeds = tuple(int(s) for s in args.seeds.split(","))
    else:
        args.seeds = FULL_SEEDS if args.full else QUICK_SEEDS
    if not args.seeds:
        ap.error("--seeds needs at least one seed")
    if args.epochs is not None and args.epochs < 1:
        ap.error("--epochs must be >= 1")
    args.data = args.data or list(BUILTIN)
    if args.methods:
        args.methods = args.methods.split(",")
        unknown = set(args.methods) - set(CLASSIFICATION_METHODS) - set(REGRESSION_METHODS)
        if unknown:
            ap.error(f"unknown method(s) {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the experiments; print and write the tables, the JSON and the figures.

    Returns:
        The JSON-able report (also written to ``results.json``) with ``"files"``, the
        paths written.
    """
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict = {
        "config": {
            "mode": args.mode,
            "seeds": list(args.seeds),
            "tune": args.tune,
            "selection": "lowest raw validation NLL, training seed = first seed",
            "threads": args.threads,
            "torch": torch.__version__,
            "kmixup_backend": kmixup.backend_info(),
            "python": platform.python_version(),
        },
        "datasets": {},
    }
    md = [
        "# SK Mixup calibration experiments",
        "",
        f"Mode `{args.mode}`, seeds {list(args.seeds)}, hyperparameters "
        + (
            "searched on the validation split (lowest validation NLL)."
            if args.tune
            else "at their documented defaults."
        )
        + " Mean ± sample std over seeds, test split. Conf: mean confidence in the "
        "predicted class (above Acc: overconfident). TS: after temperature scaling, "
        "VS: after variance scaling, both fitted on the validation split.",
    ]
    print(md[2], flush=True)
    toy_rows, files = [], []
    wanted = args.methods
    for name in args.data:
        ds = load_dataset(name)
        recipe = RECIPES.get(ds.name, NPZ_RECIPE)
        epochs = args.epochs or recipe.epochs[args.mode == "full"]
        registry = methods_for(ds.task)
        keys = [k for k, spec in registry.items() if (k in wanted if wanted else spec.default)]
        if not keys:
            raise SystemExit(f"--methods selects none of {list(registry)} for {ds.name}")
        t0 = time.perf_counter()
        res = run_dataset(
            ds,
            keys,
            args.seeds,
            epochs,
            recipe,
            args.tune,
            progress=False if args.no_progress else None,
        )
        seconds = time.perf_counter() - t0
        table = markdown_table(ds.task, res)
        sizes = f"{len(ds.train.y)}/{len(ds.val.y)}/{len(ds.test.y)}"
        head = f"## {ds.name} ({ds.task}; train/val/test {sizes}; {epochs} epochs; {seconds:.0f} s)"
        print(f"\n{head}\n\n{table}", flush=True)
        md += ["", head, "", table]
        files += _plot_dataset(ds, res, args.out)
        if ds.toy_2d:
            grid = res[keys[0]]["toy"]
            panels = [
                (
                    r["label"],
                    r["toy"]["prob"],
                    f"acc {100 * r['runs'][0]['acc']:.1f}%, ECE {100 * r['runs'][0]['ece']:.1f}%",
                )
                for r in res.values()
            ]
            x, y = ds.train.x.numpy(), ds.train.y.numpy()
            toy_rows.append(
                {
                    "name": ds.name,
                    "x": x,
                    "y": y,
                    "xx": grid["xx"],
                    "yy": grid["yy"],
                    "panels": panels,
                }
            )
        report["datasets"][ds.name] = {
            "task": ds.task,
            "sizes": {"train": len(ds.train.y), "val": len(ds.val.y), "test": len(ds.test.y)},
            "epochs": epochs,
            "recipe": asdict(recipe),
            "seconds": seconds,
            "methods": {
                k: {
                    f: r[f]
                    for f in ("label", "hparams", "mean", "std", "runs", "search", "ms_per_step")
                }
                for k, r in res.items()
            },
        }
    if toy_rows:
        from .plots import plot_decision_boundaries

        path = args.out / "decision_boundaries.png"
        plot_decision_boundaries(path, toy_rows)
        files.append(path)
    report["seconds"] = time.perf_counter() - start
    json_path, md_path = args.out / "results.json", args.out / "results.md"
    files = [md_path, json_path, *files]
    report["files"] = [str(p) for p in files]
    md += ["", "Figures: " + ", ".join(p.name for p in files[2:]), ""]
    md_path.write_text("\n".join(md), encoding="utf-8")
    json_path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"\nDone in {report['seconds']:.0f} s. Written to {args.out}/:")
    for p in files:
        print(f"  {p.name}")
    return report
