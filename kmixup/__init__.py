"""kmixup: Similarity Kernel Mixup (SK Mixup, Bouniot et al., ICLR 2025) for PyTorch."""

from __future__ import annotations

import torch

from . import _ops, functional, special
from .bank import FeatureBank
from .collate import MixupCollate
from .hidden import HiddenMixup
from .losses import mix_cross_entropy
from .transforms import KernelMixup, Mixup, TimmMixup
from .v2 import TorchvisionMixup

__version__ = "0.1.0"

__all__ = [
    "special",
    "functional",
    "KernelMixup",
    "Mixup",
    "TimmMixup",
    "TorchvisionMixup",
    "HiddenMixup",
    "FeatureBank",
    "MixupCollate",
    "mix_cross_entropy",
    "backend_info",
    "__version__",
]


def backend_info() -> dict[str, str]:
    """Which implementation serves each available device type.

    Returns:
        A dict from device type (``"cpu"``, and ``"cuda"`` when CUDA is available) to a
        description: ``"compiled (kmixup._C)"`` where a C++/CUDA kernel is registered,
        otherwise ``"pure-pytorch"`` with the reason in parentheses (e.g.
        ``"pure-pytorch (KMIXUP_PURE=1)"``).
    """
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    info = {}
    for device in devices:
        if _ops.has_compiled_kernel(device):
            info[device] = "compiled (kmixup._C)"
        else:
            info[device] = f"pure-pytorch ({_ops.EXTENSION_MISSING or 'no kernel built'})"
    return info
