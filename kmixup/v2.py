"""SK Mixup as a ``torchvision.transforms.v2`` batch transform, shaped after ``v2.MixUp``.

torchvision is optional: this module imports without it, and uses it only for inputs
that are its ``tv_tensors`` (which means it is already imported).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .functional import interpolate
from .transforms import KernelMixup

__all__ = ["TorchvisionMixup"]


def _tv_tensors() -> Any:
    """torchvision.tv_tensors if something imported it already, else None: an input can
    only be a tv_tensor if torchvision is loaded, so there is never a reason to import it."""
    return sys.modules.get("torchvision.tv_tensors")


def _is_image_or_video(t: object) -> bool:
    tv = _tv_tensors()
    return tv is not None and isinstance(t, (tv.Image, tv.Video))


def _is_pure_tensor(t: object) -> bool:
    tv = _tv_tensors()
    return isinstance(t, Tensor) and not (tv is not None and isinstance(t, tv.TVTensor))


def _unsupported(t: object) -> bool:
    """What ``v2.MixUp`` refuses: PIL images, boxes, masks and keypoints."""
    if type(t).__module__.startswith("PIL."):
        return True
    tv = _tv_tensors()
    kinds = tuple(getattr(tv, name) for name in ("BoundingBoxes", "Mask", "KeyPoints")
                  if tv is not None and hasattr(tv, name))
    return bool(kinds) and isinstance(t, kinds)


def default_labels_getter(inputs: Any) -> Any:
    """torchvision's default: the second item of a tuple or list, or the ``labels`` (else
    first ``*label*``, case-insensitive) entry of a dict (itself possibly that item)."""
    if isinstance(inputs, (tuple, list)):
        inputs = inputs[1]
    if _is_pure_tensor(inputs):
        return inputs
    if not isinstance(inputs, Mapping):
        raise ValueError(
            "With the default labels_getter the input must be a dict, or a two-tuple whose "
            f"second item is a dict or a tensor; got {type(inputs).__name__}"
        )
    keys = [key for key in inputs if key.lower() == "labels"]
    keys = keys or [key for key in inputs if "label" in key.lower()]
    if not keys:
        raise ValueError(
            "Could not find the labels in the input: pass labels_getter, a callable that "
            "returns them"
        )
    return inputs[keys[0]]


class TorchvisionMixup(nn.Module):
    """SK Mixup for a ``torchvision.transforms.v2`` pipeline, used like ``v2.MixUp``.

    Called on a batch as ``v2.MixUp`` is: ``mixer(images, labels)``, a tuple
    ``(images, labels)`` or a dict (``{"image": ..., "labels": ...}``), and returns the
    same structure with the images mixed and the labels replaced by soft labels
    ``[B, num_classes]``; so it sits where ``v2.MixUp`` does (after the DataLoader, or
    in ``v2.RandomChoice([v2.CutMix(...), mixer])``). Images are ``tv_tensors.Image``
    ``[B, C, H, W]`` or ``tv_tensors.Video`` ``[B, T, C, H, W]`` (returned as such), or,
    when there are none, the first plain tensor; floating (put ``v2.ToDtype(
    torch.float32, scale=True)`` before it). Other entries pass through. Labels are class
    indices ``[B]`` (``num_classes`` required) or probabilities / one-hot ``[B, C]``.

    The mixing is :class:`kmixup.KernelMixup`'s: a random pairing (``v2.MixUp`` pairs
    each sample with the previous one, so it relies on a shuffled batch) and ``lam ~
    Beta(alpha, alpha)`` warped by the similarity of each pair; with several images or
    videos in the input, the first one's similarity sets the coefficients of all.
    ``mixer.last_perm`` / ``last_coeff`` hold the draw after each call.

    torchvision is not needed to build or call it (plain tensors work without it).

    Args:
        alpha: Beta(alpha, alpha) parameter, > 0.
        num_classes: Number of classes; required for class-index labels.
        labels_getter: ``"default"`` (as ``v2.MixUp``: the second item of a tuple, or
            the ``labels`` entry of a dict) or a callable taking the input and returning
            the labels tensor.
        tau_max, tau_std, warping, mode, generator, dense_target: As for
            :class:`kmixup.KernelMixup` (``mode="batch"``, the default, draws one ``lam``
            per batch as ``v2.MixUp`` does).

    Raises:
        ValueError: an invalid argument, named in the message.
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        num_classes: int | None = None,
        labels_getter: str | Callable[[Any], Any] = "default",
        tau_max: float = 1.0,
        tau_std: float = 0.25,
        warping: str = "beta_cdf",
        mode: str = "batch",
        generator: torch.Generator | None = None,
        dense_target: bool = True,
    ) -> None:
        super().__init__()
        if labels_getter != "default" and not callable(labels_getter):
            raise ValueError(
                f"labels_getter must be 'default' or a callable, got {labels_getter!r}"
            )
        self.mixer = KernelMixup(
            num_classes=num_classes,
            alpha=alpha,
            tau_max=tau_max,
            tau_std=tau_std,
            warping=warping,
            mode=mode,
            generator=generator,
            dense_target=dense_target,
        )
        self.labels_getter = default_labels_getter if labels_getter == "default" else labels_getter

    def extra_repr(self) -> str:
        return repr(self.mixer)

    def forward(self, *inputs: Any) -> Any:
        """Mix a batch: ``(images, labels)``, a tuple or a dict holding them (see the
        class docstring). Returns the input's structure with images and labels mixed."""
        inputs = inputs if len(inputs) > 1 else inputs[0]
        flat, spec = tree_flatten(inputs)
        if any(_unsupported(t) for t in flat):
            raise ValueError(
                "TorchvisionMixup does not support PIL images, bounding boxes, masks or keypoints"
            )
        labels = self._labels(inputs, flat)
        images = [i for i, t in enumerate(flat) if _is_image_or_video(t)]
        if not images:
            images = [i for i, t in enumerate(flat) if _is_pure_tensor(t) and t is not labels][:1]
        if not images:
            raise ValueError("found no images to mix: pass tv_tensors.Image or a tensor")
        for i in images:
            dims = 5 if type(flat[i]).__name__ == "Video" else 4
            if flat[i].dim() != dims or flat[i].shape[0] != labels.shape[0]:
                raise ValueError(
                    f"images must be a batch [B, ...] of {dims} dims with the labels' batch "
                    f"size {labels.shape[0]}, got {list(flat[i].shape)}"
                )
        label_index = next(i for i, t in enumerate(flat) if t is labels)
        if labels.dim() == 2 and not labels.dtype.is_floating_point:
            labels = labels.float()  # one-hot as integers
        mixed, target = self.mixer(flat[images[0]].as_subclass(Tensor), labels)
        perm, coeff = self.mixer.last_perm, self.mixer.last_coeff
        outputs = list(flat)
        outputs[label_index] = target
        for i in images:
            image = flat[i].as_subclass(Tensor)
            out = mixed if i == images[0] else interpolate(image, perm, coeff)
            if _is_image_or_video(flat[i]):
                out = _tv_tensors().wrap(out, like=flat[i])
            outputs[i] = out
        return tree_unflatten(outputs, spec)

    def _labels(self, inputs: Any, flat: list[Any]) -> Tensor:
        """The labels, checked as ``v2.MixUp`` checks them."""
        labels = self.labels_getter(inputs)
        if not isinstance(labels, Tensor) or not any(t is labels for t in flat):
            raise ValueError(
                f"labels_getter must return a tensor of the input, got {type(labels).__name__}"
            )
        num_classes = self.mixer.num_classes
        if labels.dim() not in (1, 2):
            raise ValueError(
                "labels must be class indices [B] or probabilities [B, num_classes], got "
                f"shape {list(labels.shape)}"
            )
        if labels.dim() == 1 and num_classes is None:
            raise ValueError("num_classes is required for class-index labels [B]")
        if labels.dim() == 2 and num_classes is not None and labels.shape[1] != num_classes:
            raise ValueError(
                f"labels [B, C] must have C = num_classes = {num_classes}, got {labels.shape[1]}"
            )
        return labels
