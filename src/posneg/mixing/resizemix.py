"""ResizeMix: paste a whole, downscaled partner image into the target; labels by pasted area.

Qin, Fang, Zhang, Liu, Wang, Wang. ResizeMix: Mixing Data with Preserved Object Information and
True Labels. arXiv 2012.11101, 2020.

Images (B, C, H, W) get the paper's rule; sequences (B, C, L) its 1-D analogue: the whole
partner sequence resized by linear interpolation (``F.interpolate(mode="linear",
align_corners=False)``) to ``round(tau L)`` steps and pasted at a uniform offset fully inside
the target; the label weight is the pasted share of the length. The rank of ``x`` (or of
``size``) picks the form; the 2-D draws and results are the same as without the 1-D form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks, _rng
from posneg.mixing import _common, _targets
from posneg.mixing._common import MixedBatch, MixedSegBatch
from posneg.mixing.cutmix import check_segments, segments_as_boxes

CITATION = """
@article{qin2020resizemix,
  title   = {ResizeMix: Mixing Data with Preserved Object Information and True Labels},
  author  = {Qin, Jie and Fang, Jiemin and Zhang, Qian and Liu, Wenyu and Wang, Xingang and
             Wang, Xinggang},
  journal = {arXiv preprint arXiv:2012.11101},
  year    = {2020}
}
"""


@dataclass(frozen=True)
class ResizeMixParams:
    """One draw of ResizeMix's randomness.

    Attributes:
        index: (B,) int64: sample ``i`` receives the whole image ``x[index[i]]``, downscaled.
        boxes: (B, 4) int64 ``(y0, x0, y1, x1)``, half-open, inside the image: where the
            source is pasted; its size ``(y1 - y0, x1 - x0)`` is the size the source is resized
            to (about ``(tau H, tau W)``). Sequences: (B, 2) int64 ``(x0, x1)``, the segment
            the whole source is resized into (about ``tau L`` steps).
        size: (H, W) the boxes were drawn for, or (L,) for segments.

    ``lam`` (property): (B,) float32, ``1 - box_area / (H W)`` (sequences:
    ``1 - (x1 - x0) / L``): the share of the target that stays, the weight of ``y_i`` (the
    CutMix convention). The paper's lambda is the
    *source* share ``tau^2 = 1 - lam``; both describe the same realised pasted area.
    """

    index: torch.Tensor
    boxes: torch.Tensor
    size: tuple[int, ...]

    @property
    def lam(self) -> torch.Tensor:
        if len(self.size) == 1:
            return _common.box_lambda(*segments_as_boxes(self.boxes, self.size))
        h, w = self.size
        return _common.box_lambda(self.boxes, (h, w))


def _check_scale(fn: str, scale: object) -> tuple[float, float]:
    if not isinstance(scale, (tuple, list)) or len(scale) != 2:
        raise TypeError(f"{fn}: scale must be a pair (low, high); got {scale!r}")
    lo = _checks.check_real(fn, "scale[0]", scale[0])
    hi = _checks.check_real(fn, "scale[1]", scale[1])
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"{fn}: scale must satisfy 0 < low <= high <= 1; got {tuple(scale)}")
    return lo, hi


def sample_resizemix_params(
    batch: int,
    size: int | tuple[int, ...],
    *,
    scale: tuple[float, float] = (0.1, 0.8),
    per_sample: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> ResizeMixParams:
    """Draw ResizeMix parameters as in the paper.

    ``tau ~ U(scale[0], scale[1])`` (paper: U(0.1, 0.8)); the pasted size is
    ``h = clip(round(tau H), 1, H)``, ``w = clip(round(tau W), 1, W)``; the top-left corner is
    uniform over the positions that keep the patch fully inside the image (so nothing is
    clipped), and the partner is a random permutation. mmpretrain's variant (lambda from a Beta,
    a CutMix box clipped at the borders) is not what this draws.

    Sequences (``size = (L,)`` or an int L): the same rule in 1-D, ``l = clip(round(tau L),
    1, L)`` and the start uniform over ``0..L-l``. Draw order: tau, start, permutation.

    Args:
        batch: B >= 1 (B = 1: identity; the image is pasted, downscaled, onto itself).
        size: (H, W), or (L,) (an int means (L,)) for sequences.
        scale: (low, high) with 0 < low <= high <= 1.
        per_sample: one tau and location per sample (True) or one per batch (False: the
            common implementations).
        device: where draws happen and the params live.
        generator: drawn from (None: global RNG). Order: tau, row offset, column offset,
            permutation.

    Returns:
        :class:`ResizeMixParams`.
    """
    fn = "sample_resizemix_params"
    b = _common.check_batch(fn, "batch", batch)
    dims = _common.check_size(fn, size, ndim=(1, 2))
    lo, hi = _check_scale(fn, scale)
    _common.check_generator(fn, generator, device)
    n = b if per_sample else 1
    tau = _rng.uniform(
        (n,), low=lo, high=hi, device=device, dtype=torch.float64, generator=generator
    )
    if len(dims) == 1:
        return _segments(b, dims[0], tau, per_sample=per_sample, device=device, generator=generator)
    h, w = dims
    uy = _rng.uniform((n,), device=device, dtype=torch.float64, generator=generator)
    ux = _rng.uniform((n,), device=device, dtype=torch.float64, generator=generator)
    index = _common.draw_permutation(b, device=device, generator=generator)
    ph = torch.floor(tau * h + 0.5).long().clamp(1, h)
    pw = torch.floor(tau * w + 0.5).long().clamp(1, w)
    y0 = torch.minimum(torch.floor(uy * (h - ph + 1)).long(), h - ph)
    x0 = torch.minimum(torch.floor(ux * (w - pw + 1)).long(), w - pw)
    boxes = torch.stack([y0, x0, y0 + ph, x0 + pw], dim=1)
    if not per_sample:
        boxes = boxes.expand(b, 4).clone()
    return ResizeMixParams(index=index, boxes=boxes, size=(h, w))


def _segments(
    b: int,
    length: int,
    tau: torch.Tensor,
    *,
    per_sample: bool,
    device: torch.device | str | None,
    generator: torch.Generator | None,
) -> ResizeMixParams:
    """The 1-D draws after tau: start, permutation; then the segments (never clipped)."""
    ux = _rng.uniform(tau.shape, device=device, dtype=torch.float64, generator=generator)
    index = _common.draw_permutation(b, device=device, generator=generator)
    pl = torch.floor(tau * length + 0.5).long().clamp(1, length)
    x0 = torch.minimum(torch.floor(ux * (length - pl + 1)).long(), length - pl)
    segments = torch.stack([x0, x0 + pl], dim=1)
    if not per_sample:
        segments = segments.expand(b, 2).clone()
    return ResizeMixParams(index=index, boxes=segments, size=(length,))


def _source_coords(
    start: torch.Tensor, length: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample source coordinates (B, n) of a resize of ``n`` pixels to ``length`` pixels
    placed at ``start``: bilinear (``F.interpolate(align_corners=False)``'s
    ``(dst + 0.5) n / length - 0.5``, clamped at 0) and nearest-exact
    (``min(floor((dst + 0.5) n / length), n - 1)``). Entries outside the box are unused."""
    dst = torch.arange(n, device=start.device, dtype=torch.float64).unsqueeze(0)
    dst = dst - start.unsqueeze(1).to(torch.float64)
    length = length.clamp_min(1).unsqueeze(1)
    ratio = n / length.to(torch.float64)
    linear = ((dst + 0.5) * ratio - 0.5).clamp_min(0.0)
    # interpolate computes the nearest-exact index in float32 arithmetic: match it exactly
    # (e.g. float32(4.5) * float32(20 / 6) rounds to 15.0, where float64 gives 14.99999...)
    ratio32 = torch.full_like(length, n, dtype=torch.float32) / length.to(torch.float32)
    nearest = torch.floor((dst + 0.5).to(torch.float32) * ratio32).clamp(0, n - 1).long()
    return linear, nearest


def _paste_linear(xs: torch.Tensor, gy: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``xs`` (B, C, H, W) at rows ``gy`` (B, H) x columns ``gx`` (B, W)."""
    b, _, h, w = xs.shape
    # grid_sample's normalised coordinates (align_corners=False), cast before broadcasting
    ny = ((2.0 * gy + 1.0) / h - 1.0).to(xs.dtype)
    nx = ((2.0 * gx + 1.0) / w - 1.0).to(xs.dtype)
    grid = torch.stack([nx.unsqueeze(1).expand(b, h, w), ny.unsqueeze(2).expand(b, h, w)], dim=-1)
    return F.grid_sample(xs, grid, mode="bilinear", padding_mode="border", align_corners=False)


@overload
def apply_resizemix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: ResizeMixParams,
    *,
    masks: None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedBatch: ...


@overload
def apply_resizemix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: ResizeMixParams,
    *,
    masks: torch.Tensor,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedSegBatch: ...


def apply_resizemix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: ResizeMixParams,
    *,
    masks: torch.Tensor | None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedBatch | MixedSegBatch:
    """Paste each partner, resized to its box, into the target (deterministic; vectorised).

    With ``j = params.index[i]`` and box ``B_i`` of size ``(h_i, w_i)``::

        x_mixed[i] = x[i] outside B_i;  inside: resize(x[j], (h_i, w_i)) (bilinear)
        y_mixed[i] = lam[i] * y[i] + (1 - lam[i]) * y[j],   lam[i] = 1 - h_i w_i / (H W)

    The resize equals ``F.interpolate(x[j], (h_i, w_i), mode="bilinear",
    align_corners=False)`` (no antialias, as mmpretrain and OpenMixup), computed for all
    samples at once with one ``grid_sample`` whose coordinates reproduce interpolate's; results
    agree with interpolate to float rounding (about 1e-6 on [0, 1] float32 images).

    Sequences (B, C, L) with segments ``(x0_i, x1_i)``: ``x_mixed[i, :, x0_i:x1_i] =
    F.interpolate(x[j], x1_i - x0_i, mode="linear", align_corners=False)``, the rest
    ``x[i]``; ``lam[i] = 1 - (x1_i - x0_i) / L`` (computed as the (1, L) image case, exact to
    the same rounding).

    Args:
        x: (B, C, H, W) images or (B, C, L) sequences, float or uint8 (uint8, float16 and
            bfloat16 are resized in float32; uint8 is rounded back).
        targets: class ids (B,) int (needs ``num_classes``), soft or multi-hot (B, K), or None.
        params: from :func:`sample_resizemix_params` for this (H, W) or (L,).
        masks: optional segmentation masks with the same geometry: class maps (B, H, W) or
            (B, L) int, resized with nearest-exact (``F.interpolate(mode="nearest-exact")``)
            and returned as class maps; or soft maps (B, K, H, W) or (B, K, L) float, resized
            (bi)linearly like the inputs.
        num_classes: K for class-id targets.
        label_smoothing: eps in [0, 1).

    Returns:
        :class:`MixedBatch` ``(x, targets)``, or :class:`MixedSegBatch` ``(x, targets, masks)``.

    Raises:
        TypeError / ValueError: as for :func:`posneg.mixing.apply_cutmix`.

    Example:
        >>> import torch
        >>> from posneg.mixing import sample_resizemix_params, apply_resizemix
        >>> g = torch.Generator().manual_seed(0)
        >>> p = sample_resizemix_params(3, (20, 20), per_sample=True, generator=g)
        >>> out = apply_resizemix(torch.rand(3, 3, 20, 20), torch.tensor([0, 1, 1]), p,
        ...                       num_classes=2)
        >>> bool(torch.allclose(out.targets[:, 0] + out.targets[:, 1], torch.ones(3)))
        True
    """
    return _apply_resizemix(
        x, targets, params, masks=masks, num_classes=num_classes, label_smoothing=label_smoothing
    )


def _apply_resizemix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: ResizeMixParams,
    *,
    masks: torch.Tensor | None,
    num_classes: int | None,
    label_smoothing: float,
) -> MixedBatch | MixedSegBatch:
    fn = "apply_resizemix"
    x = _common.check_images(fn, x, ranks=(3, 4), layout=_LAYOUT)
    if not isinstance(params, ResizeMixParams):
        raise TypeError(f"{fn}: params must be ResizeMixParams; got {type(params).__name__}")
    _common.check_params_size(fn, params.size, x)
    index = _common.check_index(fn, params.index, x)
    if x.dim() == 3:
        check_segments(fn, params.boxes, x, x.shape[2])
        boxes, size = segments_as_boxes(params.boxes, params.size)
    else:
        boxes, size = params.boxes, (x.shape[2], x.shape[3])  # == params.size (checked)
        _common.check_boxes(fn, boxes, x, size)
    k = _targets.check_num_classes(fn, num_classes)
    eps = _targets.check_label_smoothing(fn, label_smoothing)
    y = None
    if targets is not None:
        y = _targets.soft_targets(fn, targets, x, num_classes=k, label_smoothing=eps)
    seg = None if masks is None else _common.check_masks(fn, masks, x)
    lam = params.lam.to(x.device)
    if x.dim() == 4:
        return _mix(x, y, index, boxes, size, seg, lam)
    # a sequence is a (1, L) image: one row, its box (0, x0, 1, x1); nothing moves vertically
    seg4 = None if seg is None else seg.unsqueeze(2 if seg.is_floating_point() else 1)
    out = _mix(x.unsqueeze(2), y, index, boxes, size, seg4, lam)
    if not isinstance(out, MixedSegBatch):
        return MixedBatch(out.x.squeeze(2), out.targets)
    m = out.masks.squeeze(2 if out.masks.is_floating_point() else 1)
    return MixedSegBatch(out.x.squeeze(2), out.targets, m)


def _mix(
    x: torch.Tensor,
    y: torch.Tensor | None,
    index: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    seg: torch.Tensor | None,
    lam: torch.Tensor,
) -> MixedBatch | MixedSegBatch:
    """The validated 2-D kernel: x (B, C, H, W), boxes (B, 4), soft targets or None."""
    h, w = size
    ly, ny = _source_coords(boxes[:, 0], boxes[:, 2] - boxes[:, 0], h)
    lx, nx = _source_coords(boxes[:, 1], boxes[:, 3] - boxes[:, 1], w)
    keep = _common.box_keep(boxes, size)

    def paste_linear(t: torch.Tensor) -> torch.Tensor:
        work = t.dtype if t.dtype in (torch.float32, torch.float64) else torch.float32
        tf = t.to(work)
        pasted = _paste_linear(_common.take_rows(tf, index), ly, lx)
        if _common._needs_graph(tf):
            out = torch.where(keep.unsqueeze(1), tf, pasted)
        else:
            out = torch.where(keep.unsqueeze(1), tf, pasted, out=pasted)
        if t.is_floating_point():
            return out.to(t.dtype)
        return out.round_().clamp_(0, 255).to(t.dtype)

    x_mixed = paste_linear(x)
    y_mixed = None if y is None else _targets.mix_targets(y, index, lam)
    if seg is None:
        return MixedBatch(x_mixed, y_mixed)
    if seg.is_floating_point():
        seg_mixed = paste_linear(seg)
    else:
        b = seg.shape[0]
        src = _common.take_rows(seg, index)
        pasted = src.gather(1, ny.unsqueeze(2).expand(b, h, w)).gather(
            2, nx.unsqueeze(1).expand(b, h, w)
        )
        seg_mixed = torch.where(keep, seg, pasted)
    return MixedSegBatch(x_mixed, y_mixed, seg_mixed)


_LAYOUT = "(B, C, H, W) or (B, C, L)"


class ResizeMix(nn.Module):
    """ResizeMix as a module: draws :class:`ResizeMixParams` and applies
    :func:`apply_resizemix`.

    Qin et al. ResizeMix: Mixing Data with Preserved Object Information and True Labels. arXiv
    2012.11101, 2020. The *whole* source image (a random permutation partner) is downscaled by
    ``tau ~ U(0.1, 0.8)`` and pasted at a random location fully inside the target; the label is
    ``tau^2 y_source + (1 - tau^2) y_target`` with ``tau^2`` the realised pasted-area fraction
    (so ``params.lam = 1 - tau^2`` is the target's weight, the CutMix convention). Sequences
    (B, C, L): the whole partner resized by linear interpolation to ``round(tau L)`` steps and
    pasted fully inside; the label weight is the pasted share of the length (``tau``).

    Args:
        scale: (low, high) range of tau, 0 < low <= high <= 1 (paper: (0.1, 0.8)).
        per_sample: one tau and location per sample (True) or per batch (False: common code).
        num_classes: K when targets are class ids.
        label_smoothing: eps in [0, 1).

    Shapes:
        ``forward(x, targets, *, masks=None, generator=None)``: x (B, C, H, W) images or
        (B, C, L) sequences, float or uint8; targets (B,) ids, (B, K) soft, or None; masks
        (B, H, W) / (B, L) ids or (B, K, H, W) / (B, K, L) soft.
        Returns :class:`MixedBatch` or, with masks, :class:`MixedSegBatch` (masks in their
        input format).

    Randomness: draws on x's device from ``generator`` (None: global RNG); CPU and CUDA give
    different streams (the same params agree across devices to float rounding).

    Example:
        >>> import torch
        >>> from posneg.mixing import ResizeMix
        >>> out = ResizeMix(num_classes=3, per_sample=True)(
        ...     torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]),
        ...     generator=torch.Generator().manual_seed(0))
        >>> out.targets.shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        scale: tuple[float, float] = (0.1, 0.8),
        *,
        per_sample: bool = False,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        fn = "ResizeMix"
        self.scale = _check_scale(fn, scale)
        self.per_sample = bool(per_sample)
        self.num_classes = _targets.check_num_classes(fn, num_classes)
        self.label_smoothing = _targets.check_label_smoothing(fn, label_smoothing)

    @overload
    def forward(
        self,
        x: torch.Tensor,
        targets: torch.Tensor | None,
        *,
        masks: None = None,
        generator: torch.Generator | None = None,
    ) -> MixedBatch: ...

    @overload
    def forward(
        self,
        x: torch.Tensor,
        targets: torch.Tensor | None,
        *,
        masks: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> MixedSegBatch: ...

    def forward(
        self,
        x: torch.Tensor,
        targets: torch.Tensor | None,
        *,
        masks: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> MixedBatch | MixedSegBatch:
        """Draw params on x's device and mix (see the class docstring for shapes)."""
        x = _common.check_images("ResizeMix", x, ranks=(3, 4), layout=_LAYOUT)
        params = sample_resizemix_params(
            x.shape[0],
            tuple(x.shape[2:]),
            scale=self.scale,
            per_sample=self.per_sample,
            device=x.device,
            generator=generator,
        )
        return _apply_resizemix(
            x,
            targets,
            params,
            masks=masks,
            num_classes=self.num_classes,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        return (
            f"scale={self.scale}, per_sample={self.per_sample}, num_classes={self.num_classes}, "
            f"label_smoothing={self.label_smoothing}"
        )
