"""timm's ``Mixup`` and kmixup's ``KernelMixup`` side by side on one batch of a timm model.

    pip install timm
    python examples/timm_swap.py

Shows the swap described in ``timm_train.md`` is drop-in: the same call, the same shapes
out, soft targets that sum to 1, and the same loss function.
"""

from __future__ import annotations

import argparse

import torch

import kmixup


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Mix one batch with each mixer and take a training step; returns the losses."""
    import timm
    from timm.data import Mixup
    from timm.loss import SoftTargetCrossEntropy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.batch_size % 2:
        parser.error("timm's Mixup needs an even --batch-size")

    torch.manual_seed(0)
    num_classes = 10
    model = timm.create_model(args.model, num_classes=num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    criterion = SoftTargetCrossEntropy()
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, num_classes, (args.batch_size,))

    mixers = {
        "timm Mixup": Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.1,
                            num_classes=num_classes),
        "kmixup KernelMixup": kmixup.KernelMixup(num_classes=num_classes, alpha=1.0,
                                                 label_smoothing=0.1),
    }
    losses = {}
    for name, mixup_fn in mixers.items():
        x_mix, y_mix = mixup_fn(x, y)
        assert x_mix.shape == x.shape and y_mix.shape == (args.batch_size, num_classes)
        torch.testing.assert_close(y_mix.sum(-1), torch.ones(args.batch_size))
        loss = criterion(model(x_mix), y_mix)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses[name] = loss.item()
        print(f"{name}: loss {losses[name]:.4f}")
    return losses


if __name__ == "__main__":
    main()
