"""Small multilayer perceptrons with an embedding (penultimate layer) exposed."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MLP", "gaussian_params"]


class MLP(nn.Module):
    """``in_dim -> hidden... -> out_dim`` with ReLUs; ``features`` is the last hidden layer.

    No dropout or batch norm, so a forward pass in train mode is the same as in eval mode
    and the extra no-grad forward that SK Mixup uses for embeddings sees the model as the
    loss will.
    """

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(in_dim, out_dim)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer embeddings ``[B, hidden[-1]]``."""
        return self.body(x.flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[B, out_dim]`` (for regression: see :func:`gaussian_params`)."""
        return self.head(self.features(x))


def gaussian_params(out: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance ``[B]`` from a ``[B, 2]`` regression output.

    Softplus keeps the variance positive with gradients that do not explode the way
    ``exp`` of a log-variance can early in training; the floor avoids a zero variance.
    """
    return out[:, 0], torch.nn.functional.softplus(out[:, 1]) + 1e-6
