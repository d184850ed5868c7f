"""kmixup: Similarity Kernel Mixup (SK Mixup, Bouniot et al., ICLR 2025) for PyTorch."""

from __future__ import annotations

import os

import torch

from . import functional, special
from .transforms import KernelMixup, Mixup

__version__ = "0.1.0"

__all__ = ["special", "functional", "KernelMixup", "Mixup", "backend_info", "__version__"]


def backend_info() -> dict[str, str]:
    """Which implementation serves each available device type.

    Returns:
        A dict from device type (``"cpu"``, and ``"cuda"`` when CUDA is available) to a
        description of the implementation. For now every device is served by the
        pure-PyTorch path; setting the environment variable ``KMIXUP_DISABLE_EXTENSION=1``
        forces that path and is reported as ``"pure-pytorch (KMIXUP_DISABLE_EXTENSION=1)"``.
    """
    name = "pure-pytorch"
    if os.environ.get("KMIXUP_DISABLE_EXTENSION") == "1":
        name += " (KMIXUP_DISABLE_EXTENSION=1)"
    info = {"cpu": name}
    if torch.cuda.is_available():
        info["cuda"] = name
    return info
