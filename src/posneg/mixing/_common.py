"""Shared pieces of the batch-mixing kernels: outputs, validation, draws and blends.

Conventions used by every technique in :mod:`posneg.mixing`:

- ``index`` (B,) int64: sample ``i`` is mixed with sample ``index[i]`` (its *partner*). Samplers
  draw a random permutation; the kernels accept any index vector with entries in ``[0, B)``.
  With B = 1 the only permutation is the identity, so the single sample is mixed with itself
  and comes back unchanged (targets too).
- ``lam`` (B,) float32: the share of sample ``i`` itself in its mixed sample, so that
  ``mixed_i = lam_i * x_i + (1 - lam_i) * x_index[i]`` for MixUp and, for the cut-and-paste
  methods, ``lam_i`` is the fraction of pixels that still come from ``x_i``.
- Images are ``(B, C, *spatial)`` float (any float dtype) or uint8. Float inputs are blended in
  their own dtype; uint8 inputs are blended in float32 and rounded half-to-even back to uint8.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from posneg import _checks, _rng

IMAGE_DTYPES = (*_checks.FLOAT_DTYPES, torch.uint8)


class MixedBatch(NamedTuple):
    """The output of a mixing module called without segmentation masks.

    Attributes:
        x: the mixed inputs, same shape, dtype and device as the input.
        targets: ``(B, K)`` mixed soft targets, or None when the call had no targets.
    """

    x: torch.Tensor
    targets: torch.Tensor | None


class MixedSegBatch(NamedTuple):
    """The output of a mixing module called with segmentation ``masks``.

    Attributes:
        x: the mixed inputs, same shape, dtype and device as the input.
        targets: ``(B, K)`` mixed soft targets, or None when the call had no targets.
        masks: the masks mixed with the same geometry as ``x``: see each technique for the
            format (class maps stay class maps for the cut-and-paste methods; MixUp returns
            soft ``(B, K, *spatial)`` maps).
    """

    x: torch.Tensor
    targets: torch.Tensor | None
    masks: torch.Tensor


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def check_images(fn: str, x: object, *, ranks: Sequence[int], layout: str) -> torch.Tensor:
    """A float or uint8 tensor with one of ``ranks`` dimensions and B >= 1."""
    x = _checks.check_tensor(fn, "x", x)
    if x.dtype not in IMAGE_DTYPES:
        raise TypeError(f"{fn}: x must be a floating-point or uint8 tensor; got {x.dtype}")
    if x.dim() not in ranks:
        rs = sorted(ranks)
        want = f"at least {rs[0]}-D" if len(rs) > 3 else " or ".join(f"{r}-D" for r in rs)
        raise ValueError(f"{fn}: x must be a {want} tensor {layout}; got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{fn}: x must hold at least one sample (B >= 1); got {tuple(x.shape)}")
    return x


def check_batch(fn: str, name: str, value: object) -> int:
    """A batch size: an int >= 1."""
    return _checks.check_int(fn, name, value, min_value=1)


def check_alpha(fn: str, alpha: object) -> float:
    """The Beta concentration: a finite real > 0."""
    return _checks.check_positive(fn, "alpha", alpha)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_size(fn: str, size: object, *, ndim: Sequence[int]) -> tuple[int, ...]:
    """A spatial size: a tuple of ``ndim`` ints >= 1 (an int is accepted for 1-D).

    Ints are Python or numpy integers (never bools), as for :func:`posneg._checks.check_int`.
    """
    if _is_int(size):
        size = (size,)
    if not isinstance(size, (tuple, list)) or not all(_is_int(s) for s in size):
        raise TypeError(f"{fn}: size must be a tuple of ints; got {size!r}")
    if len(size) not in ndim:
        want = " or ".join(str(n) for n in ndim)
        raise ValueError(f"{fn}: size must have {want} entries; got {tuple(size)}")
    if any(s < 1 for s in size):
        raise ValueError(f"{fn}: size entries must be >= 1; got {tuple(size)}")
    return tuple(int(s) for s in size)


def check_index(fn: str, index: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``params.index``: integer (B,) on x's device with entries in [0, B)."""
    _checks.check_tensor(fn, "params.index", index)
    b = x.shape[0]
    if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
        raise TypeError(f"{fn}: params.index must be an integer tensor; got {index.dtype}")
    if tuple(index.shape) != (b,):
        raise ValueError(
            f"{fn}: params.index must have shape ({b},) matching the batch of x "
            f"{tuple(x.shape)}; got {tuple(index.shape)} (were the params drawn for this batch?)"
        )
    _checks.check_same_device(fn, "params.index", index, "x", x)
    if b and (int(index.min()) < 0 or int(index.max()) >= b):
        raise ValueError(
            f"{fn}: params.index entries must be in [0, {b}); "
            f"got values in [{int(index.min())}, {int(index.max())}]"
        )
    return index.long()


def check_lam(fn: str, lam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``params.lam``: a float () or (B,) tensor on x's device with values in [0, 1]."""
    _checks.check_float(fn, "params.lam", lam)
    b = x.shape[0]
    if lam.dim() == 0:
        lam = lam.expand(b)
    if tuple(lam.shape) != (b,):
        raise ValueError(
            f"{fn}: params.lam must have shape () or ({b},) matching the batch of x "
            f"{tuple(x.shape)}; got {tuple(lam.shape)}"
        )
    _checks.check_same_device(fn, "params.lam", lam, "x", x)
    if not bool(((lam >= 0) & (lam <= 1)).all()):
        raise ValueError(f"{fn}: params.lam values must be in [0, 1]")
    return lam


def check_params_size(fn: str, size: tuple[int, ...], x: torch.Tensor) -> None:
    """The params were drawn for x's spatial size."""
    if tuple(x.shape[2:]) != tuple(size):
        raise ValueError(
            f"{fn}: params were drawn for spatial size {tuple(size)} but x has "
            f"{tuple(x.shape[2:])} (shape {tuple(x.shape)})"
        )


def check_masks(fn: str, masks: object, x: torch.Tensor) -> torch.Tensor:
    """Segmentation masks: integer class maps (B, *spatial) or float soft maps (B, K, *spatial)."""
    masks = _checks.check_tensor(fn, "masks", masks)
    spatial = tuple(x.shape[2:])
    b = x.shape[0]
    ids_shape = (b, *spatial)
    if masks.dtype == torch.bool or masks.is_complex():
        raise TypeError(
            f"{fn}: masks must be integer class maps or floating soft maps; got {masks.dtype}"
        )
    if masks.is_floating_point():
        ok = masks.dim() == len(spatial) + 2 and masks.shape[0] == b
        ok = ok and tuple(masks.shape[2:]) == spatial
    else:
        ok = tuple(masks.shape) == ids_shape
    if not ok:
        sp = ", ".join(str(s) for s in spatial)
        raise ValueError(
            f"{fn}: masks must have shape ({b}, {sp}) (class ids) or ({b}, K, {sp}) (soft maps) "
            f"matching x {tuple(x.shape)}; got {tuple(masks.shape)} ({masks.dtype})"
        )
    _checks.check_same_device(fn, "masks", masks, "x", x)
    return masks


# ---------------------------------------------------------------------------------------------
# draws
# ---------------------------------------------------------------------------------------------


def draw_lambda(
    alpha: float,
    beta_: float,
    batch: int,
    *,
    per_sample: bool,
    device: torch.device | str | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Beta(alpha, beta_) draws as a (batch,) float32 tensor: one per sample or one shared."""
    n = batch if per_sample else 1
    lam = _rng.beta(alpha, beta_, (n,), device=device, dtype=torch.float32, generator=generator)
    return lam if per_sample else lam.expand(batch).clone()


def draw_permutation(
    batch: int, *, device: torch.device | str | None, generator: torch.Generator | None
) -> torch.Tensor:
    """A random permutation of the batch (the identity for B = 1)."""
    return _rng.randperm(batch, device=device, generator=generator)


def check_generator(fn: str, generator: object, device: torch.device | str | None) -> None:
    """None or a torch.Generator on the device type the draws happen on."""
    _checks.check_generator(fn, generator, torch.device(device) if device is not None else None)


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a torch.device (None: CPU)."""
    return torch.device(device) if device is not None else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# blends (vectorised: no loop over the batch)
# ---------------------------------------------------------------------------------------------


def _needs_graph(x: torch.Tensor) -> bool:
    """Whether autograd records ops on x (then no ``out=``, which autograd rejects)."""
    return x.requires_grad and torch.is_grad_enabled()


def _lift(x: torch.Tensor) -> torch.Tensor:
    """The compute form of x: itself for float inputs, float32 for uint8."""
    return x if x.is_floating_point() else x.to(torch.float32)


def _lower(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Back to ``like``'s dtype: uint8 outputs are rounded half-to-even and clamped."""
    if like.is_floating_point():
        return y
    return y.round_().clamp_(0, 255).to(like.dtype)


#: Below this many elements rows are gathered with ``index_select`` and MixUp blends with
#: ``lerp``: advanced indexing and ``embedding_bag`` always enter a parallel region, which costs
#: milliseconds per call on a CPU shared with other processes, while ``index_select`` is slower
#: than advanced indexing on large batches.
SMALL = 1 << 20


def take_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` along dim 0 (a new tensor)."""
    return x.index_select(0, index) if x.numel() < SMALL else x[index]


def lerp_rows(x: torch.Tensor, index: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``out[i] = lam[i] * x[i] + (1 - lam[i]) * x[index[i]]`` for x of shape (B, ...).

    On large inputs one fused pass: ``embedding_bag`` with per-sample weights reads each pair of
    rows and writes the weighted sum, so the partner batch ``x[index]`` is never materialised;
    small inputs use ``lerp`` on gathered rows (see ``SMALL``).
    """
    b = x.shape[0]
    xf = _lift(x)
    if x.numel() < SMALL:
        w = lam.to(xf.dtype).view(b, *([1] * (x.dim() - 1)))
        return _lower(torch.lerp(take_rows(xf, index), xf, w), x)
    flat = xf.reshape(b, -1)
    bags = torch.stack([torch.arange(b, device=x.device), index], dim=1)
    w = lam.to(xf.dtype)
    weights = torch.stack([w, 1 - w], dim=1)
    out = F.embedding_bag(bags, flat, per_sample_weights=weights, mode="sum")
    return _lower(out.view(x.shape), x)


def where_rows(keep: torch.Tensor, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[i] = x[i]`` where ``keep[i]`` is True, else ``x[index[i]]``.

    ``keep`` is (B, *spatial) bool; it is broadcast over the channel dimension of a
    (B, C, *spatial) ``x``, or used as is for a (B, *spatial) ``x`` (class maps).
    """
    k = keep if keep.dim() == x.dim() else keep.unsqueeze(1)
    partner = take_rows(x, index)
    if _needs_graph(x):
        return torch.where(k, x, partner)
    return torch.where(k, x, partner, out=partner)  # reuse the gathered buffer


def blend_rows(weight: torch.Tensor, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``out[i] = w[i] * x[i] + (1 - w[i]) * x[index[i]]`` with a per-pixel weight (B, *spatial)."""
    xf = _lift(x)
    w = (weight if weight.dim() == x.dim() else weight.unsqueeze(1)).to(xf.dtype)
    out = torch.lerp(take_rows(xf, index), xf, w)
    return _lower(out, x)


def box_keep(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) bool: True outside each sample's box ``(y0, x0, y1, x1)`` (half-open)."""
    h, w = size
    rows = torch.arange(h, device=boxes.device)
    cols = torch.arange(w, device=boxes.device)
    in_r = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 2:3])  # (B, H)
    in_c = (cols >= boxes[:, 1:2]) & (cols < boxes[:, 3:4])  # (B, W)
    return ~(in_r[:, :, None] & in_c[:, None, :])


def box_lambda(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The share of each image left outside its box: ``1 - area / (H W)`` as float32 (B,)."""
    h, w = size
    area = (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)
    return (1.0 - area.to(torch.float64) / float(h * w)).to(torch.float32)


def check_boxes(fn: str, boxes: torch.Tensor, x: torch.Tensor, size: tuple[int, int]) -> None:
    """``params.boxes``: integer (B, 4) ``(y0, x0, y1, x1)`` inside the image, ordered."""
    _checks.check_tensor(fn, "params.boxes", boxes)
    b = x.shape[0]
    if boxes.dtype.is_floating_point or boxes.dtype == torch.bool:
        raise TypeError(f"{fn}: params.boxes must be an integer tensor; got {boxes.dtype}")
    if tuple(boxes.shape) != (b, 4):
        raise ValueError(
            f"{fn}: params.boxes must have shape ({b}, 4) matching the batch of x "
            f"{tuple(x.shape)}; got {tuple(boxes.shape)}"
        )
    _checks.check_same_device(fn, "params.boxes", boxes, "x", x)
    h, w = size
    y0, x0, y1, x1 = boxes.unbind(1)
    ok = (y0 >= 0) & (x0 >= 0) & (y0 <= y1) & (x0 <= x1) & (y1 <= h) & (x1 <= w)
    if not bool(ok.all()):
        raise ValueError(
            f"{fn}: params.boxes must satisfy 0 <= y0 <= y1 <= {h} and 0 <= x0 <= x1 <= {w}"
        )
