"""timm's ``Mixup`` and kmixup's ``TimmMixup`` side by side, built from the same arguments.

    pip install timm
    python examples/timm_swap.py

The swap in timm's ``train.py`` (see ``timm_train.md``) is one line:

    mixup_fn = Mixup(**mixup_args)                  # timm
    mixup_fn = kmixup.TimmMixup(**mixup_args)       # SK Mixup

This script checks it on a timm model: the same call, the same output shapes and dtypes,
soft targets that sum to 1, one training step with the same loss; the collate-time
version (``FastCollateMixup`` / ``kmixup.MixupCollate(kmixup.TimmMixup(...))``) on uint8
samples; and, over many draws with ``warping="none"``, the same distribution of mixing as
timm's (share of unmixed samples and of CutMix, mean and spread of the coefficients).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

import kmixup

# What timm's train.py passes for a typical recipe (--mixup 0.8 --cutmix 1.0 --smoothing 0.1).
MIXUP_ARGS = dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0,
                  switch_prob=0.5, mode="batch", label_smoothing=0.1, num_classes=10)


def observe_mixing(mixup_fn, batch_size: int, draws: int, image_size: int = 16) -> dict:
    """Run ``mixup_fn`` ``draws`` times on a batch whose images are constant (value
    ``i + 1``) and whose labels are all different, and read off each mixed sample:
    its coefficient (the weight of its own label), and whether CutMix made it (an image
    that is no longer constant). Returns numpy arrays ``coeff`` and ``cutmix``."""
    values = torch.arange(1.0, batch_size + 1.0)
    x = values.view(-1, 1, 1, 1).expand(-1, 3, image_size, image_size).contiguous()
    y = torch.arange(batch_size)
    coeffs, cutmix = [], []
    for _ in tqdm(range(draws), desc=type(mixup_fn).__name__, leave=False):
        mixed, target = mixup_fn(x.clone(), y)  # timm mixes in place
        coeffs.append(target[y, y])
        flat = mixed.flatten(1)
        cutmix.append(flat.amax(1) != flat.amin(1))
    return {"coeff": torch.cat(coeffs).numpy(), "cutmix": torch.cat(cutmix).numpy()}


def summarise(observed: dict) -> dict[str, float]:
    """Share of unmixed samples and of CutMix, and the coefficients' mean and std."""
    coeff, cutmix = observed["coeff"], observed["cutmix"]
    mixed = coeff < 1 - 1e-6
    summary = {"unmixed": float(np.mean(~mixed)), "cutmix": float(np.mean(cutmix))}
    for name, rows in (("mixup", mixed & ~cutmix), ("cutmix", cutmix)):
        summary[f"{name} mean"] = float(np.mean(coeff[rows])) if rows.any() else float("nan")
        summary[f"{name} std"] = float(np.std(coeff[rows])) if rows.any() else float("nan")
    return summary


def main(argv: list[str] | None = None) -> dict:
    """Check the swap; returns the losses, the observed mixing and its summary per mixer."""
    import timm
    from timm.data import FastCollateMixup, Mixup
    from timm.loss import SoftTargetCrossEntropy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--mode", default="elem", choices=["batch", "pair", "elem"])
    parser.add_argument("--prob", type=float, default=0.8)
    parser.add_argument("--draws", type=int, default=2000, help="batches for the statistics")
    args = parser.parse_args(argv)
    if args.batch_size % 2:
        parser.error("timm's Mixup needs an even --batch-size (kmixup's does not)")
    mixup_args = {**MIXUP_ARGS, "mode": args.mode, "prob": args.prob}
    num_classes, batch = mixup_args["num_classes"], args.batch_size

    torch.manual_seed(0)
    np.random.seed(0)  # timm draws from numpy
    model = timm.create_model(args.model, num_classes=num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = SoftTargetCrossEntropy()
    x = torch.randn(batch, 3, args.image_size, args.image_size)
    y = torch.randint(0, num_classes, (batch,))
    samples = [(np.random.randint(0, 256, (3, 16, 16), dtype=np.uint8), int(t)) for t in y]

    mixers = {
        "timm Mixup": Mixup(**mixup_args),
        "kmixup TimmMixup": kmixup.TimmMixup(**mixup_args),  # the one-line swap
    }
    collates = {
        "timm Mixup": FastCollateMixup(**mixup_args),
        "kmixup TimmMixup": kmixup.MixupCollate(kmixup.TimmMixup(**mixup_args)),
    }
    result: dict = {"loss": {}, "observed": {}, "summary": {}}
    for name, mixup_fn in mixers.items():
        x_mix, y_mix = mixup_fn(x.clone(), y)
        assert x_mix.shape == x.shape and x_mix.dtype == x.dtype
        assert y_mix.shape == (batch, num_classes) and y_mix.dtype == torch.float32
        torch.testing.assert_close(y_mix.sum(-1), torch.ones(batch))
        loss = criterion(model(x_mix), y_mix)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        result["loss"][name] = loss.item()
        x_col, y_col = collates[name](samples)
        assert x_col.shape == (batch, 3, 16, 16) and x_col.dtype == torch.uint8
        assert y_col.shape == (batch, num_classes) and y_col.dtype == torch.float32
        torch.testing.assert_close(y_col.sum(-1), torch.ones(batch))
        print(f"{name}: loss {loss.item():.4f}; collate gives {x_col.dtype} {list(x_col.shape)}")

    # The distribution of mixing, with the kernel off (kmixup) and on (kmixup, SK).
    statistics_args = {**mixup_args, "label_smoothing": 0.0, "num_classes": batch}
    observed_mixers = {
        "timm Mixup": Mixup(**statistics_args),
        "kmixup TimmMixup, warping='none'": kmixup.TimmMixup(**statistics_args, warping="none"),
        "kmixup TimmMixup (SK)": kmixup.TimmMixup(**statistics_args),
    }
    for name, mixup_fn in observed_mixers.items():
        observed = observe_mixing(mixup_fn, batch, args.draws)
        result["observed"][name], result["summary"][name] = observed, summarise(observed)
    columns = list(next(iter(result["summary"].values())))
    print(f"\nmixing over {args.draws} batches of {batch}, mode={args.mode!r}, prob={args.prob}")
    print(f"{'':34}" + "".join(f"{c:>13}" for c in columns))
    for name, summary in result["summary"].items():
        print(f"{name:34}" + "".join(f"{summary[c]:13.4f}" for c in columns))
    return result


if __name__ == "__main__":
    main()
