"""SK Mixup in a plain PyTorch training loop: a small MLP on scikit-learn's 8x8 digits.

    python examples/plain_loop.py             # mix the inputs
    python examples/plain_loop.py --hidden    # mix at a hidden layer (manifold mixup)
    python examples/plain_loop.py --bank      # similarity on embeddings kept by a FeatureBank

The digits ship with scikit-learn, so nothing is downloaded. The script prints the mean
training loss of each epoch, then the test accuracy and expected calibration error (ECE).
On CUDA the forward pass runs under bfloat16 autocast, to show that mixing composes with it.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from itertools import islice

import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

import kmixup

NUM_CLASSES = 10
WIDTH = 128  # hidden width, and so the embedding size the FeatureBank stores


def digits_split(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Digits split 80/20: train ``(pixels, label, index)``, test ``(pixels, label)``.

    Pixels are 64 floats in [0, 1]. The training set also yields each sample's dataset
    index, which ``--bank`` needs to key its stored embeddings.
    """
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    train, test = order[: len(y) * 4 // 5], order[len(y) * 4 // 5 :]
    return (
        TensorDataset(x[train], y[train], torch.arange(len(train))),
        TensorDataset(x[test], y[test]),
    )


def make_model(num_features: int) -> nn.Sequential:
    """An MLP with named parts: ``features`` (the embedding) and ``head`` (the logits)."""
    features = nn.Sequential(
        nn.Linear(num_features, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU()
    )
    return nn.Sequential(OrderedDict(features=features, head=nn.Linear(WIDTH, NUM_CLASSES)))


def soft_cross_entropy(logits: Tensor, soft_targets: Tensor) -> Tensor:
    """Cross-entropy against soft (mixed) targets, as timm's ``SoftTargetCrossEntropy``."""
    return torch.sum(-soft_targets * torch.log_softmax(logits, dim=-1), dim=-1).mean()


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = 15) -> float:
    """ECE: over equal-width confidence bins, |mean confidence - accuracy| weighted by
    the share of samples in the bin."""
    confidence, prediction = probs.max(dim=-1)
    correct = (prediction == labels).float()
    bin_index = (confidence * n_bins).long().clamp(max=n_bins - 1)
    # Per bin, the sum of (confidence - correct) is its sample count times the gap.
    gap_sums = torch.zeros(n_bins).index_add_(0, bin_index, confidence - correct)
    return float(gap_sums.abs().sum() / len(labels))


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """Test accuracy and ECE of ``model`` on clean (unmixed) batches."""
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        probs.append(torch.softmax(model(x.to(device)), dim=-1).cpu())
        labels.append(y)
    probs, labels = torch.cat(probs), torch.cat(labels)
    accuracy = float((probs.argmax(dim=-1) == labels).float().mean())
    return {"accuracy": accuracy, "ece": expected_calibration_error(probs, labels)}


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Train with SK Mixup and evaluate.

    Returns:
        ``{"train_loss": [mean loss of each epoch], "accuracy": ..., "ece": ...}``.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on steps per epoch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    variant = parser.add_mutually_exclusive_group()
    variant.add_argument("--hidden", action="store_true", help="mix at a hidden layer")
    variant.add_argument("--bank", action="store_true", help="similarity on stored embeddings")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    train_set, test_set = digits_split(args.seed)
    train_loader = DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True)
    test_loader = DataLoader(test_set, batch_size=256)
    model = make_model(num_features=train_set.tensors[0].shape[1]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)

    # The paper's classification defaults. dominant_anchor keeps row i mostly sample i,
    # so the embedding the bank stores for sample i is mostly its own.
    mixer = kmixup.KernelMixup(
        num_classes=NUM_CLASSES, alpha=1.0, tau_max=1.0, tau_std=0.25, dominant_anchor=args.bank
    )
    hidden = kmixup.HiddenMixup(model, "features.1", mixer) if args.hidden else None
    bank = kmixup.FeatureBank(len(train_set), dim=WIDTH, device=device) if args.bank else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    steps = min(len(train_loader), args.max_steps or len(train_loader))

    train_loss = []
    for epoch in range(args.epochs):
        model.train()
        loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
        batches = tqdm(islice(train_loader, steps), f"epoch {epoch}", total=steps, leave=False)
        for x, y, index in batches:
            x, y = x.to(device), y.to(device)  # mix on the device, after the transfer
            with autocast:
                if hidden is not None:  # mix the activations after the first ReLU
                    logits, y_mix = hidden(x, y)
                elif bank is not None:  # similarity on embeddings from the last visit
                    x_mix, y_mix = mixer(x, y, feats=bank.lookup(index))
                    embedding = model.features(x_mix)
                    logits = model.head(embedding)
                    bank.update(index, embedding)
                else:
                    x_mix, y_mix = mixer(x, y)  # y_mix: soft targets [B, NUM_CLASSES]
                    logits = model(x_mix)
                loss = soft_cross_entropy(logits, y_mix)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
        train_loss.append(loss_sum.item() / steps)
        print(f"epoch {epoch}: train loss {train_loss[-1]:.4f}")

    metrics = evaluate(model, test_loader, device)
    print(f"test accuracy {metrics['accuracy']:.4f}, ECE {metrics['ece']:.4f}")
    return {"train_loss": train_loss, **metrics}


if __name__ == "__main__":
    main()
