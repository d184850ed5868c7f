"""Mixing at a hidden layer of a network (manifold mixup) with SK Mixup coefficients."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from .transforms import KernelMixup

__all__ = ["HiddenMixup"]


class HiddenMixup:
    """Run a model with its activations mixed at a hidden layer (Verma et al., 2019).

    At the output of the chosen layer, the activations ``h`` are mixed with
    ``mixer``'s pairing and coefficients, the similarity taken from ``h`` itself (no extra
    forward pass): ``h_mixed[i] = k_i * h[i] + (1 - k_i) * h[perm[i]]``. The targets are
    mixed with the same pairing and coefficients, and gradients flow through the mixed
    activations to the layers below. With several layers, one is drawn uniformly per call
    with Python's :mod:`random` (seed it with ``random.seed``): a host-side draw, so no
    accelerator sync, and one that ``torch.compile`` traces (a graph per layer).

    Only calls through this object mix; ``model(x)`` itself (evaluation) is unchanged.
    The layer's output dtype and memory format are kept (float16/bfloat16 under
    ``torch.autocast``, channels_last), and ``mixer.last_*`` hold the draw afterwards.

    Example::

        mixer = kmixup.KernelMixup(num_classes=10)
        hidden = kmixup.HiddenMixup(model, ["layer1", "layer2"], mixer)
        logits, mixed_target = hidden(x, target)
        loss = torch.sum(-mixed_target * logits.log_softmax(-1), -1).mean()

    Args:
        model: The network; its forward must run the chosen layer exactly once per call
            (a layer run twice, e.g. a shared block, mixes at its first run only).
        layers: A submodule or its name in ``model.named_modules()``, or a sequence of
            them to draw from.
        mixer: A :class:`kmixup.KernelMixup` (or :class:`kmixup.Mixup`).

    Raises:
        ValueError: an empty ``layers``, or a name that is not a submodule of ``model``.
        TypeError: ``model`` or a layer is not an ``nn.Module``, or ``mixer`` is not a
            :class:`kmixup.KernelMixup`.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | nn.Module | Sequence[str | nn.Module],
        mixer: KernelMixup,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model)}")
        if not isinstance(mixer, KernelMixup):
            raise TypeError(f"mixer must be a kmixup.KernelMixup, got {type(mixer)}")
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        if not isinstance(layers, Sequence):
            raise TypeError(
                "layers must be a submodule, its name, or a sequence of them, got "
                f"{type(layers).__name__}"
            )
        if len(layers) == 0:
            raise ValueError("layers must name at least one submodule of model")
        self.model = model
        self.mixer = mixer
        self.layers = [self._resolve(layer) for layer in layers]
        self._hooks = [layer.register_forward_hook(self._mix_output) for layer in self.layers]
        self._armed: nn.Module | None = None  # the layer that mixes in the current call
        self._target: Tensor | None = None
        self._mixed_target: Tensor | None = None

    def _resolve(self, layer: str | nn.Module) -> nn.Module:
        if isinstance(layer, str):
            try:
                return self.model.get_submodule(layer)
            except AttributeError:
                raise ValueError(f"layers: {layer!r} is not a submodule of model") from None
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layers: expected a name or an nn.Module, got {type(layer)}")
        if not any(layer is m for m in self.model.modules()):
            raise ValueError(f"layers: {type(layer).__name__} is not a submodule of model")
        return layer

    def _mix_output(self, module: nn.Module, inputs: Any, output: Any) -> Tensor | None:
        if module is not self._armed:
            return None
        self._armed = None
        if not isinstance(output, Tensor) or not output.is_floating_point():
            raise TypeError(
                f"layers: {type(module).__name__} must output one floating tensor to be "
                f"mixed, got {type(output).__name__}"
            )
        mixer = self.mixer
        perm, lam = mixer.sample(output.shape[0], output.device)
        mixed, coeff = mixer.mix(output, perm, lam, inplace=False)  # autograd needs output
        self._mixed_target, target_coeff = mixer.mix_target(self._target, perm, lam, coeff)
        mixer.record(perm, lam, coeff, target_coeff)
        return mixed

    def __call__(self, x: Any, target: Tensor, *args: Any, **kwargs: Any) -> tuple[Any, Tensor]:
        """Forward ``model(x, *args, **kwargs)`` with mixing at one of the layers.

        Args:
            x: The model's input (any type the model takes).
            target: Targets of the batch, as :class:`kmixup.KernelMixup` takes them, on
                the device of the mixed activations.

        Returns:
            ``(output, mixed_target)``: the model's output and the mixed targets.

        Raises:
            RuntimeError: the chosen layer did not run during the forward pass.
        """
        choice = 0 if len(self.layers) == 1 else random.randrange(len(self.layers))
        self._armed, self._target, self._mixed_target = self.layers[choice], target, None
        try:
            output = self.model(x, *args, **kwargs)
        finally:
            self._armed, self._target = None, None
        mixed_target, self._mixed_target = self._mixed_target, None
        if mixed_target is None:
            name = type(self.layers[choice]).__name__
            raise RuntimeError(f"layers: the chosen {name} did not run in model's forward")
        return output, mixed_target

    def remove(self) -> None:
        """Remove the hooks from the model."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
