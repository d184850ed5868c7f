"""Similarity Kernel Mixup as plain functions (the pure-PyTorch reference path).

The algorithm (docs/design.md, steps 1-5), for a batch ``x``, features ``f`` (default ``x``),
a permutation ``perm`` and coefficients ``lam`` drawn from Beta(alpha, alpha):

1. ``d_i = sum_j (f[i, j] - f[perm[i], j])**2``                    (:func:`pair_sq_dist`)
2. ``dn_i = d_i / mean(d)``, ``0`` when ``mean(d) == 0``
3. ``tau_i = tau_max * exp(-(dn_i - 1) / (2 * tau_std**2))``       (:func:`similarity_tau`)
4. ``k_i = I(lam_i; 1/tau_i, 1/tau_i)`` or ``I^-1(lam_i; tau_i, tau_i)`` or ``lam_i``
                                                                    (:func:`warp`)
5. ``out[i] = k_i * x[i] + (1 - k_i) * x[perm[i]]``                 (:func:`interpolate`)

:func:`kernel_mix` runs all of it; :func:`mix_targets` mixes the labels. Nothing here
reads tensor data on the host unless value validation is on (see ``validate``), so the
path never synchronises an accelerator by default.
"""

from __future__ import annotations

from numbers import Real

import torch
import torch.distributed as dist
from torch import Tensor

from . import _checks as C
from . import _torch_kernels as K
from . import special

__all__ = [
    "pair_sq_dist",
    "similarity_tau",
    "warp",
    "interpolate",
    "kernel_mix",
    "kernel_mix_",
    "mix_targets",
]


def _as_lam(lam: Tensor | float, ref: Tensor) -> Tensor:
    if isinstance(lam, Real) and not isinstance(lam, bool):
        # torch.full, not torch.tensor: no host-to-device copy, so no sync on a GPU.
        return torch.full((), float(lam), dtype=torch.float64, device=ref.device)
    return lam


def _check_python_lam(lam: object) -> None:
    """A Python-number lam is on the host already: checking it costs no sync."""
    if isinstance(lam, bool) or not isinstance(lam, (Tensor, Real)):
        raise TypeError(f"lam must be a float or a floating tensor, got {type(lam).__name__}")
    if isinstance(lam, Real) and not 0 <= lam <= 1:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")


def _per_sample(c: Tensor, batch: int) -> Tensor:
    """A validated coefficient as the ops take it: float32/float64 of shape [B]."""
    if c.dtype not in (torch.float32, torch.float64):
        c = c.float()
    return c.detach().expand(batch)


# --------------------------------------------------------------------------- public API


def pair_sq_dist(f: Tensor, perm: Tensor) -> Tensor:
    """Squared Euclidean distance between each sample and its mixing partner.

    Args:
        f: Floating features ``[B, ...]``; a 1-D ``[B]`` tensor (e.g. regression labels)
            is treated as ``[B, 1]``.
        perm: int64/int32 permutation ``[B]`` on ``f``'s device; sample ``i`` is paired
            with ``perm[i]``.

    Returns:
        ``d`` of shape ``[B]``, ``d[i] = sum((f[i] - f[perm[i]])**2)`` over all non-batch
        dims, accumulated and returned in float32 (float64 for float64 ``f``). NaN/inf
        features give a non-finite ``d[i]``.

    Raises:
        TypeError: ``f`` is not floating, or ``perm`` is not an integer tensor.
        ValueError: ``f`` has no batch dim, or ``perm`` has the wrong shape or device.
    """
    C.check_floating(f, "f")
    C.check_batched(f, "f", min_batch=0)
    C.check_perm(perm, f.shape[0], f, "f")
    return torch.ops.kmixup.pair_sq_dist(f, perm.long())


def similarity_tau(
    sq_dist: Tensor, tau_max: float, tau_std: float, *, validate: bool | None = None
) -> Tensor:
    """Similarity kernel: per-pair warping strength ``tau`` from squared distances.

    ``dn = d / mean(d)`` (mean over the finite entries only; ``dn = 0`` when that mean is
    0 or no entry is finite), then ``tau = tau_max * exp(-(dn - 1) / (2 * tau_std**2))``,
    evaluated in float64 as ``exp(log(tau_max) - (dn - 1) / (2 * tau_std**2))``, so extreme
    settings cancel rather than overflow. ``dn == 1`` gives ``tau_max`` exactly, also when
    ``tau_std**2`` underflows: a vanishing width is a step kernel (0 above the mean, inf
    below). A non-finite ``d[i]`` is treated as ``dn = +inf``, i.e. ``tau[i] = 0``. ``tau``
    may underflow to 0 or overflow to inf: :func:`warp` handles both limits.

    Args:
        sq_dist: Floating ``[B]`` squared distances (see :func:`pair_sq_dist`), >= 0 or
            non-finite.
        tau_max: Kernel amplitude, finite and > 0.
        tau_std: Kernel width, finite and > 0.
        validate: Check that no distance is negative (reads the data). ``None``: only for
            CPU tensors and not while ``torch.compile`` traces.

    Returns:
        ``tau`` of shape ``[B]``, float32 (float64 for float64 ``sq_dist``).

    Raises:
        TypeError: ``sq_dist`` is not floating, or ``tau_max``/``tau_std`` not real.
        ValueError: ``sq_dist`` is not 1-D, ``tau_max``/``tau_std`` not finite and > 0, or
            (when validating) a negative distance.
    """
    C.check_floating(sq_dist, "sq_dist")
    if sq_dist.dim() != 1:
        raise ValueError(f"sq_dist must be 1-D [B], got shape {list(sq_dist.shape)}")
    C.check_positive(tau_max, "tau_max")
    C.check_positive(tau_std, "tau_std")
    if C.should_validate(validate, sq_dist):
        C.check_no_negative_values(sq_dist, "sq_dist", allow_nan=True)
    return K.tau64(sq_dist, tau_max, tau_std).to(K.float_dtype(sq_dist.dtype))


def warp(
    lam: Tensor | float, tau: Tensor, warping: str, *, validate: bool | None = None
) -> Tensor:
    """Warp mixing coefficients according to the similarity ``tau``.

    * ``"beta_cdf"``: ``k = I(lam; 1/tau, 1/tau)``, the regularised incomplete beta
      function. ``tau = 0`` gives a step at 0.5 (no mixing), ``tau = inf`` gives 0.5,
      ``tau = 1`` is the identity.
    * ``"inverse_beta_cdf"``: ``k = I^-1(lam; tau, tau)``, the Beta quantile.
    * ``"none"``: ``k = lam`` (plain mixup).

    Both warps are symmetric: ``warp(1 - lam) == 1 - warp(lam)``. Evaluated in float64.

    Args:
        lam: Coefficients in [0, 1]: a Python float, a 0-d tensor (broadcast) or ``[B]``,
            on ``tau``'s device.
        tau: Floating ``[B]`` similarity (see :func:`similarity_tau`), >= 0 (inf allowed).
        warping: ``"beta_cdf"``, ``"inverse_beta_cdf"`` or ``"none"``.
        validate: Check ``lam`` in [0, 1] and ``tau`` >= 0, not NaN (reads the data).
            ``None``: only for CPU tensors and not while ``torch.compile`` traces. A
            Python-float ``lam`` is always checked.

    Returns:
        ``k`` of shape ``[B]``, float32 (float64 if ``lam`` or ``tau`` is float64).

    Raises:
        TypeError: ``lam`` or ``tau`` is not floating.
        ValueError: unknown ``warping``, a shape/device mismatch, or (when validating)
            ``lam`` outside [0, 1] or a negative/NaN ``tau``.
    """
    C.check_warping(warping)
    C.check_floating(tau, "tau")
    if tau.dim() != 1:
        raise ValueError(f"tau must be 1-D [B], got shape {list(tau.shape)}")
    # A Python-float lam does not widen the output.
    out_dtype = K.float_dtype(lam.dtype if isinstance(lam, Tensor) else tau.dtype, tau.dtype)
    _check_python_lam(lam)
    lam = _as_lam(lam, tau)
    C.check_coefficient(lam, "lam", tau.shape[0], tau, "tau")
    if C.should_validate(validate, tau):
        C.check_unit_interval_values(lam, "lam")
        C.check_no_negative_values(tau, "tau", allow_nan=False)
    lam = lam.expand(tau.shape)
    return K.warp64(lam, tau, warping, special.betainc, special.betaincinv).to(out_dtype)


def interpolate(
    x: Tensor, perm: Tensor, coeff: Tensor, *, validate: bool | None = None
) -> Tensor:
    """Mix each sample with its partner: ``out[i] = c[i] * x[i] + (1 - c[i]) * x[perm[i]]``.

    Rows with ``coeff == 1`` are exact copies of ``x[i]`` and rows with ``coeff == 0``
    exact copies of ``x[perm[i]]`` (the other sample's values, NaN included, never enter).
    Computed in ``x``'s dtype (float32 for float16/bfloat16); the output has ``x``'s dtype
    and memory format (channels_last stays channels_last). Differentiable in ``x``;
    ``coeff`` is treated as a constant (coefficients are never differentiated).

    Args:
        x: Floating ``[B, ...]``.
        perm: int64/int32 permutation ``[B]`` on ``x``'s device.
        coeff: Floating coefficients, 0-d or ``[B]``, on ``x``'s device; broadcast over
            the non-batch dims.
        validate: Check that ``perm`` is a permutation (reads the data; ``None``: only for
            CPU tensors and not while ``torch.compile`` traces). Values outside
            ``[0, B)`` are refused by the kernels whatever this says (IndexError on the
            CPU, a device-side assertion on CUDA); a ``perm`` with repeated values mixes
            correctly but has no gather-form gradient, so its backward raises (CPU) or
            asserts (CUDA) instead of returning a wrong gradient.

    Returns:
        The mixed tensor, same shape, dtype and memory format as ``x``.

    Raises:
        TypeError: ``x``/``coeff`` not floating or ``perm`` not an integer tensor.
        ValueError: a shape or device mismatch, or (when validating) a ``perm`` that is
            not a permutation.
        IndexError: a ``perm`` value outside ``[0, B)``.
    """
    C.check_floating(x, "x")
    C.check_batched(x, "x", min_batch=0)
    C.check_perm(perm, x.shape[0], x)
    C.check_coefficient(coeff, "coeff", x.shape[0], x, "x")
    if C.should_validate(validate, x):
        C.check_perm_values(perm)
    return torch.ops.kmixup.interpolate(x, perm.long(), _per_sample(coeff, x.shape[0]))


def kernel_mix(
    x: Tensor,
    perm: Tensor,
    lam: Tensor | float,
    *,
    feats: Tensor | None = None,
    tau_max: float = 1.0,
    tau_std: float = 0.25,
    warping: str = "beta_cdf",
    validate: bool | None = None,
    process_group: dist.ProcessGroup | None = None,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Similarity Kernel Mixup of a batch (docs/design.md steps 1-5).

    The similarity is measured on ``feats`` (default ``x``), detached: gradients flow
    to ``x`` only, never through the coefficients.

    Non-finite features: a pair whose squared distance is non-finite (NaN/inf in the
    features of either sample) is left unmixed: its coefficient is 1 and its row is an
    exact copy of ``x[i]``; its distance is also left out of the batch mean. So one bad
    sample affects only the rows that contain it, never the rest of the batch. With
    ``warping="none"`` no distance is computed at all and ``coeff`` is ``lam`` (plain
    mixup, where a NaN spreads to the row it is mixed into).

    A batch of fewer than 2 samples has no partner to mix with: it is returned unmixed
    (coefficient 1, an exact copy of ``x``), whatever ``lam`` and ``warping`` say.

    Args:
        x: Floating batch ``[B, ...]`` (any ``B >= 0``).
        perm: int64/int32 permutation ``[B]`` on ``x``'s device.
        lam: Mixing coefficients in [0, 1]: a Python float, a 0-d tensor (one value for
            the batch) or ``[B]`` (one per sample), on ``x``'s device.
        feats: Optional floating features ``[B, ...]`` on ``x``'s device used for the
            similarity (e.g. embeddings); defaults to ``x``.
        tau_max: Kernel amplitude, finite and > 0.
        tau_std: Kernel width, finite and > 0.
        warping: ``"beta_cdf"`` (default), ``"inverse_beta_cdf"`` or ``"none"``.
        validate: Check values that need reading data (``perm`` is a permutation,
            ``lam`` in [0, 1]). ``None``: only for CPU tensors and not while
            ``torch.compile`` traces, so accelerators never sync. Shape, dtype and
            device checks always run, and so does ``lam``'s range on the CPU, where the
            kernels read ``lam`` anyway.
        process_group: For data-parallel training: normalise the distances by their
            mean over the whole global batch, i.e. over every rank of this
            ``torch.distributed`` process group (e.g. ``dist.group.WORLD``), instead of
            the local batch. Costs one ``all_reduce`` of a float64 ``[sum, count]`` pair
            on ``x``'s device (asynchronous on a GPU: no host sync); every rank of the
            group must call it. Pairing stays local. Ignored for ``warping="none"``.
        out: Optional preallocated output (``x``'s shape and dtype, contiguous in its
            memory format, not overlapping ``x``), e.g. a buffer reused every step: on a
            CPU a fresh batch-sized tensor costs more in page faults than the mix itself.
            Not differentiable (as torch's ``out=``). To mix ``x`` itself in place, see
            :func:`kernel_mix_`.

    Returns:
        ``(mixed, coeff)``: ``mixed`` (``out`` when given) has ``x``'s shape, dtype and
        memory format; ``coeff`` is ``[B]``, float32 (float64 for float64 ``x``), the
        weight of ``x[i]``.

    Raises:
        TypeError: a non-floating ``x``/``feats``/``lam``, a non-integer ``perm``, or
            non-real ``tau_max``/``tau_std``.
        ValueError: a shape/device mismatch, non-positive ``tau_max``/``tau_std``, unknown
            ``warping``, or (when validating) a bad ``perm``/``lam``.
        IndexError: a ``perm`` value outside ``[0, B)`` (always checked, by the kernels).
    """
    return _kernel_mix(
        x, perm, lam, feats, tau_max, tau_std, warping, validate, process_group, out, False
    )


def kernel_mix_(
    x: Tensor,
    perm: Tensor,
    lam: Tensor | float,
    *,
    feats: Tensor | None = None,
    tau_max: float = 1.0,
    tau_std: float = 0.25,
    warping: str = "beta_cdf",
    validate: bool | None = None,
    process_group: dist.ProcessGroup | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`kernel_mix` in place: ``x`` becomes the mixed batch.

    For inputs that need no gradient (a DataLoader batch): no output is allocated, and
    on the CPU the pairs are walked along the cycles of ``perm`` (``out[i]`` needs
    ``x[perm[i]]``, the next row of its cycle, not yet overwritten; only the first row of
    each cycle and of each thread's share is copied aside), so the batch is read and
    written once. ``feats`` may be ``x``: every distance is taken before any row changes.
    On CUDA the rows are mixed into a temporary and copied back. As torch's in-place ops
    do, it bumps ``x``'s version, so a graph that saved ``x`` refuses to backpropagate.

    Args:
        x: Floating batch ``[B, ...]``, contiguous or channels_last, not requiring grad.
        perm, lam, feats, tau_max, tau_std, warping, validate, process_group: as in
            :func:`kernel_mix`.

    Returns:
        ``(x, coeff)``.

    Raises:
        As :func:`kernel_mix`; also ValueError for an ``x`` that requires grad (autograd
        needs its values) or is neither contiguous nor channels_last.
    """
    return _kernel_mix(
        x, perm, lam, feats, tau_max, tau_std, warping, validate, process_group, x, True
    )


def _check_output(x: Tensor, out: Tensor, in_place: bool) -> None:
    """``out`` (or ``x`` itself in place) can take the mixed batch without autograd."""
    C.check_tensor(out, "out")
    grad = torch.is_grad_enabled() and (x.requires_grad or out.requires_grad)
    if in_place:
        if grad:
            raise ValueError(
                "x requires grad: mixing it in place would destroy the values autograd "
                "needs; use kernel_mix"
            )
        if not x.is_contiguous(memory_format=K.memory_format(x)):
            raise ValueError("x must be contiguous (or channels_last) to be mixed in place")
        return
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"out must have x's shape {list(x.shape)}, dtype {x.dtype} and device {x.device}, "
            f"got {list(out.shape)}, {out.dtype}, {out.device}"
        )
    if grad:
        raise ValueError("out= does not support autograd (x or out requires grad)")
    if not out.is_contiguous(memory_format=K.memory_format(x)):
        raise ValueError("out must be contiguous in x's memory format")
    shared = x.numel() and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    if out is x or shared:
        raise ValueError("out must not overlap x; to mix in place use kernel_mix_")


def _kernel_mix(
    x, perm, lam, feats, tau_max, tau_std, warping, validate, process_group, out, in_place
) -> tuple[Tensor, Tensor]:
    C.check_floating(x, "x")
    C.check_batched(x, "x", min_batch=0)
    batch = x.shape[0]
    C.check_perm(perm, batch, x)
    _check_python_lam(lam)
    lam = _as_lam(lam, x)
    C.check_coefficient(lam, "lam", batch, x, "x")
    if feats is None:
        feats = x
    else:
        C.check_floating(feats, "feats")
        C.check_batched(feats, "feats", min_batch=0)
        if feats.shape[0] != batch:
            raise ValueError(f"feats must have batch size {batch}, got {feats.shape[0]}")
        C.check_same_device(feats, "feats", x, "x")
    C.check_positive(tau_max, "tau_max")
    C.check_positive(tau_std, "tau_std")
    C.check_warping(warping)
    C.check_process_group(process_group)
    if out is not None:
        _check_output(x, out, in_place)
    unmixed = batch < 2  # no partner to mix with
    grouped = process_group is not None and warping != "none"
    if C.should_validate(validate, x):
        C.check_perm_values(perm)
        # On the CPU every kernel checks lam itself, before it writes (it reads lam there
        # anyway): a second check here cost a sixth of a CIFAR-sized call. Only the paths
        # that reach no kernel with this lam need it.
        if x.device.type != "cpu" or unmixed or grouped:
            C.check_unit_interval_values(lam, "lam")
    perm, lam, feats = perm.long(), _per_sample(lam, batch), feats.detach()
    args = (float(tau_max), float(tau_std), warping)
    if grouped:
        sq_dist = torch.ops.kmixup.pair_sq_dist(feats, perm)
        sum_count = K.finite_sum_count(sq_dist)
        # A rank whose batch is too small to mix still takes part in the collective (the
        # other ranks would wait for it forever), contributing nothing to the mean.
        if unmixed:
            sum_count.zero_()
        dist.all_reduce(sum_count, group=process_group)
        if not unmixed:
            coeff = K.pair_coefficients(
                sq_dist, lam, tau_max, tau_std, warping, sum_count, special.betainc,
                special.betaincinv,
            ).to(K.float_dtype(x.dtype))
            return _into(out, torch.ops.kmixup.interpolate(x, perm, coeff)), coeff
    if unmixed:  # through the same kernels (perm still range-checked), as plain mixup at 1
        lam, args = torch.ones_like(lam), (1.0, 1.0, "none")
    if out is None:
        return torch.ops.kmixup.kernel_mix(x, perm, lam, feats, *args)
    if in_place:
        return x, torch.ops.kmixup.kernel_mix_(x, perm, lam, feats, *args)
    return out, torch.ops.kmixup.kernel_mix_out(x, perm, lam, feats, *args, out)


def _into(out: Tensor | None, mixed: Tensor) -> Tensor:
    return mixed if out is None else out.copy_(mixed)


def mix_targets(
    y: Tensor,
    perm: Tensor,
    coeff: Tensor,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
    validate: bool | None = None,
) -> Tensor:
    """Mix targets with the same pairing and coefficients as the inputs.

    * Integer class indices ``[B]``: turned into one-hot rows with timm-style label
      smoothing (``off = label_smoothing / num_classes``, ``on = 1 - label_smoothing +
      off``), then mixed. Each output row sums to 1. Float32 (float64 if ``coeff`` is).
    * Floating targets (soft labels ``[B, C]``, regression ``[B]`` or ``[B, k]``): mixed
      as they are, in their own dtype; ``label_smoothing`` does not apply to them.

    Args:
        y: Targets, batch size ``B``.
        perm: int64/int32 permutation ``[B]`` on ``y``'s device.
        coeff: Floating coefficients, 0-d or ``[B]`` (e.g. from :func:`kernel_mix`).
        num_classes: Required (> 0) for integer targets; if given with floating targets,
            they must be soft labels of shape ``[B, num_classes]``.
        label_smoothing: In [0, 1).
        validate: As in :func:`kernel_mix`; checks ``perm``, ``coeff`` in [0, 1] and
            class indices in ``[0, num_classes)``.

    Returns:
        The mixed targets, ``[B, num_classes]`` for class indices, else ``y``'s shape.

    Raises:
        TypeError: ``y`` neither integer nor floating, ``coeff`` not floating, ``perm``
            not an integer tensor.
        ValueError: missing/invalid ``num_classes``, bad ``label_smoothing``, a
            shape/device mismatch, or (when validating) out-of-range values.
    """
    return _mix_targets(y, perm, coeff, num_classes, label_smoothing, validate, "y")


def _mix_targets(
    y, perm, coeff, num_classes, label_smoothing, validate, name, own_draw=False
) -> Tensor:
    """:func:`mix_targets`, with errors naming the targets ``name`` (the transforms call
    them ``target``). ``own_draw``: ``perm`` (int64 ``[B]``, on the targets' device) and
    ``coeff`` (float32/float64 ``[B]``) are a mixer's own draw and kernel output, valid by
    construction, so only the targets are checked (a permutation check sorts ``perm``: a
    tenth of a CIFAR-sized mixing step)."""
    C.check_tensor(y, name)
    C.check_batched(y, name, min_batch=0)
    batch = y.shape[0]
    if not own_draw:
        C.check_perm(perm, batch, y, name)
        C.check_coefficient(coeff, "coeff", batch, y, name)
    C.check_label_smoothing(label_smoothing)
    check_values = C.should_validate(validate, y)
    if C.is_integer_tensor(y):
        if num_classes is None:
            raise ValueError(f"num_classes is required for integer class targets {name}")
        C.check_num_classes(num_classes)
        if y.dim() != 1:
            raise ValueError(f"{name}: class indices must have shape [B], got {list(y.shape)}")
        # Eager scatter_ on the CPU range-checks the indices itself: that is the value
        # check there, at no cost (a separate one took a tenth of a CIFAR mixing step).
        scatter_checks = y.device.type == "cpu" and not torch.compiler.is_compiling()
        if check_values and not scatter_checks:
            C.check_class_values(y, num_classes, name)
        dtype = K.float_dtype(coeff.dtype)
        off = label_smoothing / num_classes
        on = 1.0 - label_smoothing + off
        # scatter_ instead of F.one_hot: one_hot range-checks on the host (a sync).
        try:
            y = torch.full((batch, num_classes), off, dtype=dtype, device=y.device).scatter_(
                1, y.long().unsqueeze(1), on
            )
        except RuntimeError as err:  # an index out of range
            if check_values:
                raise C.class_values_error(num_classes, name) from None
            raise IndexError(f"{name}: class indices must lie in [0, {num_classes})") from err

    elif y.dtype.is_floating_point:
        C.check_floating(y, name)
        if num_classes is not None:
            C.check_num_classes(num_classes)
            if y.dim() != 2 or y.shape[1] != num_classes:
                raise ValueError(
                    f"{name}: soft labels must have shape [B, num_classes={num_classes}], "
                    f"got {list(y.shape)}"
                )
    else:
        raise TypeError(
            f"{name} must be integer class indices or floating, got dtype {y.dtype}"
        )
    if not own_draw:
        if check_values:
            C.check_perm_values(perm)
            C.check_unit_interval_values(coeff, "coeff")
        perm, coeff = perm.long(), _per_sample(coeff, batch)
    return torch.ops.kmixup.interpolate(y, perm, coeff)
