"""CutMix: paste a box cut from a partner image; labels mixed by the pasted area.

Yun, Han, Oh, Chun, Choe, Yoo. CutMix: Regularization Strategy to Train Strong Classifiers with
Localizable Features. ICCV 2019, arXiv 1905.04899.

Images (B, C, H, W) get the paper's boxes; sequences (B, C, L) get its 1-D analogue, a segment
of length ``floor((1 - lam) L)`` around a uniform centre, clipped (the box keeps the paper's
share ``1 - lam`` of the area; in 1-D that share is the length itself, where 2-D takes
``sqrt(1 - lam)`` per side). The rank of ``x`` (or of ``size``) picks the form; the 2-D draws
and results are the same as without the 1-D form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import torch
from torch import nn

from posneg import _checks, _rng
from posneg.mixing import _common, _targets
from posneg.mixing._common import MixedBatch, MixedSegBatch

CITATION = """
@inproceedings{yun2019cutmix,
  title     = {CutMix: Regularization Strategy to Train Strong Classifiers with
               Localizable Features},
  author    = {Yun, Sangdoo and Han, Dongyoon and Oh, Seong Joon and Chun, Sanghyuk and
               Choe, Junsuk and Yoo, Youngjoon},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2019},
  eprint    = {1905.04899},
  archivePrefix = {arXiv}
}
"""


@dataclass(frozen=True)
class CutMixParams:
    """One draw of CutMix's randomness.

    Attributes:
        index: (B,) int64, the partner each box is cut from.
        boxes: images: (B, 4) int64 ``(y0, x0, y1, x1)``, half-open pixel rows
            ``y0 <= r < y1`` and columns ``x0 <= c < x1``, already clipped to the image.
            Sequences: (B, 2) int64 ``(x0, x1)``, the half-open segment ``x0 <= t < x1``,
            clipped to the sequence.
        size: (H, W) the boxes were drawn for, or (L,) for segments.

    ``lam`` (property): (B,) float32, ``1 - box_area / (H W)`` (sequences:
    ``1 - (x1 - x0) / L``): the share of each sample that stays its own, i.e. the lambda
    *realised after clipping*. The targets use it.
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


def segments_as_boxes(
    segments: torch.Tensor, size: tuple[int, ...]
) -> tuple[torch.Tensor, tuple[int, int]]:
    """1-D segments (B, 2) ``(x0, x1)`` on length (L,) as boxes (B, 4) on a (1, L) image."""
    zero = torch.zeros_like(segments[:, 0])
    boxes = torch.stack([zero, segments[:, 0], zero + 1, segments[:, 1]], dim=1)
    return boxes, (1, int(size[0]))


def check_segments(fn: str, segments: torch.Tensor, x: torch.Tensor, length: int) -> None:
    """``params.boxes`` of a sequence: integer (B, 2) ``(x0, x1)`` with ``0 <= x0 <= x1 <= L``."""
    _checks.check_tensor(fn, "params.boxes", segments)
    b = x.shape[0]
    if segments.dtype.is_floating_point or segments.dtype == torch.bool:
        raise TypeError(f"{fn}: params.boxes must be an integer tensor; got {segments.dtype}")
    if tuple(segments.shape) != (b, 2):
        raise ValueError(
            f"{fn}: params.boxes of a sequence must have shape ({b}, 2) (x0, x1) matching the "
            f"batch of x {tuple(x.shape)}; got {tuple(segments.shape)}"
        )
    _checks.check_same_device(fn, "params.boxes", segments, "x", x)
    x0, x1 = segments.unbind(1)
    if not bool(((x0 >= 0) & (x0 <= x1) & (x1 <= length)).all()):
        raise ValueError(f"{fn}: params.boxes must satisfy 0 <= x0 <= x1 <= {length}")


def sample_cutmix_params(
    batch: int,
    size: int | tuple[int, ...],
    *,
    alpha: float = 1.0,
    per_sample: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> CutMixParams:
    """Draw CutMix boxes as in the paper: ``lam ~ Beta(alpha, alpha)``, a box of side ratio
    ``sqrt(1 - lam)`` centred on a uniform pixel, clipped at the borders.

    For each sample (or once for the batch): ``cut_h = floor(H sqrt(1 - lam))``,
    ``cut_w = floor(W sqrt(1 - lam))``, centre ``(cy, cx)`` uniform over the pixel grid,
    ``y0 = clip(cy - cut_h // 2, 0, H)``, ``y1 = clip(cy - cut_h // 2 + cut_h, 0, H)`` (columns
    alike). The official code uses ``cy + cut_h // 2`` as the far edge, which makes the
    unclipped box one pixel short for odd sides (torchvision v2's box is short the same way);
    here, as in timm 1.0's ``rand_bbox``, the unclipped box has exactly ``cut_h x cut_w``
    pixels (``tests/peers/``). Either way the label weight is the realised area (``params.lam``).

    Sequences (``size = (L,)`` or an int L): the 1-D analogue of the same rule,
    ``cut = floor(L (1 - lam))`` (the side ratio is ``1 - lam`` itself, as the area share is
    the length share), centre ``c`` uniform over ``0..L-1``, segment
    ``[clip(c - cut // 2, 0, L), clip(c - cut // 2 + cut, 0, L))``; ``params.lam`` is again the
    realised share ``1 - (x1 - x0) / L``. Draw order: lambda, c, permutation.

    Args:
        batch: B >= 1 (B = 1: the identity permutation; the image pastes onto itself).
        size: (H, W) of the images, or (L,) (an int means (L,)) of sequences.
        alpha: Beta concentration, > 0.
        per_sample: one lambda and box per sample (True) or one for the batch (False: paper).
        device: where the draws happen and the params live.
        generator: drawn from (None: torch's global RNG). Order: lambda, cy, cx, permutation.

    Returns:
        :class:`CutMixParams`.

    Raises:
        ValueError: batch < 1, alpha <= 0, or a bad size.
    """
    fn = "sample_cutmix_params"
    b = _common.check_batch(fn, "batch", batch)
    dims = _common.check_size(fn, size, ndim=(1, 2))
    a = _common.check_alpha(fn, alpha)
    _common.check_generator(fn, generator, device)
    n = b if per_sample else 1
    lam = _common.draw_lambda(a, a, n, per_sample=True, device=device, generator=generator)
    if len(dims) == 1:
        return _segments(b, dims[0], lam, per_sample=per_sample, device=device, generator=generator)
    h, w = dims
    cy = _rng.randint(h, (n,), device=device, generator=generator)
    cx = _rng.randint(w, (n,), device=device, generator=generator)
    index = _common.draw_permutation(b, device=device, generator=generator)
    ratio = torch.sqrt(1.0 - lam.to(torch.float64))
    cut_h = torch.floor(h * ratio).long()
    cut_w = torch.floor(w * ratio).long()
    y0 = cy - cut_h // 2
    x0 = cx - cut_w // 2
    boxes = torch.stack(
        [y0.clamp(0, h), x0.clamp(0, w), (y0 + cut_h).clamp(0, h), (x0 + cut_w).clamp(0, w)],
        dim=1,
    )
    if not per_sample:
        boxes = boxes.expand(b, 4).clone()
    return CutMixParams(index=index, boxes=boxes, size=(h, w))


def _segments(
    b: int,
    length: int,
    lam: torch.Tensor,
    *,
    per_sample: bool,
    device: torch.device | str | None,
    generator: torch.Generator | None,
) -> CutMixParams:
    """The 1-D draws after lambda: centre, permutation; then the clipped segments."""
    n = lam.shape[0]
    cx = _rng.randint(length, (n,), device=device, generator=generator)
    index = _common.draw_permutation(b, device=device, generator=generator)
    cut = torch.floor(length * (1.0 - lam.to(torch.float64))).long()
    x0 = cx - cut // 2
    segments = torch.stack([x0.clamp(0, length), (x0 + cut).clamp(0, length)], dim=1)
    if not per_sample:
        segments = segments.expand(b, 2).clone()
    return CutMixParams(index=index, boxes=segments, size=(length,))


@overload
def apply_cutmix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: CutMixParams,
    *,
    masks: None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedBatch: ...


@overload
def apply_cutmix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: CutMixParams,
    *,
    masks: torch.Tensor,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedSegBatch: ...


def apply_cutmix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: CutMixParams,
    *,
    masks: torch.Tensor | None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
) -> MixedBatch | MixedSegBatch:
    """Paste each sample's box from its partner (deterministic; vectorised over the batch).

    With ``j = params.index[i]`` and ``B_i`` the box of sample ``i``::

        x_mixed[i, :, r, c] = x[j, :, r, c] if (r, c) in B_i else x[i, :, r, c]
        y_mixed[i] = lam[i] * y[i] + (1 - lam[i]) * y[j],   lam[i] = 1 - |B_i| / (H W)

    Sequences alike: ``x_mixed[i, :, t] = x[j, :, t]`` for ``x0_i <= t < x1_i``, else
    ``x[i, :, t]``; ``lam[i] = 1 - (x1_i - x0_i) / L``.

    Args:
        x: (B, C, H, W) images or (B, C, L) sequences, float or uint8 (exact copies: no
            rounding for any dtype).
        targets: class ids (B,) int (needs ``num_classes``), soft or multi-hot (B, K), or None.
        params: from :func:`sample_cutmix_params` for this (H, W) or (L,).
        masks: optional segmentation masks with the same geometry: class maps (B, H, W) or
            (B, L) int (returned as class maps, the box copied from the partner) or soft maps
            (B, K, H, W) or (B, K, L) float (returned soft, same box).
        num_classes: K for class-id targets.
        label_smoothing: eps in [0, 1).

    Returns:
        :class:`MixedBatch` ``(x, targets)``, or :class:`MixedSegBatch` ``(x, targets, masks)``
        when masks are given. ``targets`` is (B, K) or None.

    Raises:
        TypeError: x not float/uint8; wrongly typed targets, masks or params.
        ValueError: x not 3-D or 4-D; targets or masks not matching; class ids without
            ``num_classes``; params drawn for another batch or size.

    Example:
        >>> import torch
        >>> from posneg.mixing import sample_cutmix_params, apply_cutmix
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(3, 3, 10, 10), torch.tensor([0, 1, 2])
        >>> p = sample_cutmix_params(3, (10, 10), per_sample=True, generator=g)
        >>> out = apply_cutmix(x, y, p, num_classes=3)
        >>> bool(torch.allclose(out.targets.sum(1), torch.ones(3)))
        True
    """
    return _apply_cutmix(
        x, targets, params, masks=masks, num_classes=num_classes, label_smoothing=label_smoothing
    )


def _apply_cutmix(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: CutMixParams,
    *,
    masks: torch.Tensor | None,
    num_classes: int | None,
    label_smoothing: float,
) -> MixedBatch | MixedSegBatch:
    fn = "apply_cutmix"
    x = _common.check_images(fn, x, ranks=(3, 4), layout=_LAYOUT)
    if not isinstance(params, CutMixParams):
        raise TypeError(f"{fn}: params must be CutMixParams; got {type(params).__name__}")
    _common.check_params_size(fn, params.size, x)
    index = _common.check_index(fn, params.index, x)
    if x.dim() == 3:
        check_segments(fn, params.boxes, x, x.shape[2])
        keep = _common.box_keep(*segments_as_boxes(params.boxes, params.size))[:, 0]  # (B, L)
    else:
        hw = (x.shape[2], x.shape[3])  # == params.size (checked above)
        _common.check_boxes(fn, params.boxes, x, hw)
        keep = _common.box_keep(params.boxes, hw)
    k = _targets.check_num_classes(fn, num_classes)
    eps = _targets.check_label_smoothing(fn, label_smoothing)
    y = None
    if targets is not None:
        y = _targets.soft_targets(fn, targets, x, num_classes=k, label_smoothing=eps)
    m = None if masks is None else _common.check_masks(fn, masks, x)
    x_mixed = _common.where_rows(keep, x, index)
    y_mixed = None if y is None else _targets.mix_targets(y, index, params.lam)
    if m is None:
        return MixedBatch(x_mixed, y_mixed)
    return MixedSegBatch(x_mixed, y_mixed, _common.where_rows(keep, m, index))


_LAYOUT = "(B, C, H, W) or (B, C, L)"


class CutMix(nn.Module):
    """CutMix as a module: draws :class:`CutMixParams` and applies :func:`apply_cutmix`.

    Yun et al. CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
    Features. ICCV 2019, arXiv 1905.04899. ``lam ~ Beta(alpha, alpha)``; a box of side ratio
    ``sqrt(1 - lam)`` around a uniform centre, clipped, is cut from a partner (a random
    permutation) and pasted; targets are mixed with the lambda *realised* by the clipped box,
    ``1 - area / (H W)``. Odd batches need nothing special; with B = 1 the sample is unchanged.
    Sequences (B, C, L) get segments of length ``floor((1 - lam) L)`` instead of boxes (see
    :func:`sample_cutmix_params`), the same lambda correction (``1 - (x1 - x0) / L``).

    ``prob`` is the official ``cutmix_prob`` (clovaai/CutMix-PyTorch ``train.py``, commit
    2d8eb68: ``r = np.random.rand(1)``, mix when ``r < cutmix_prob``): with probability
    ``1 - prob`` the whole batch is left unmixed (images unchanged, targets one-hot or
    label-smoothed). The coin is per batch, as in the official code, also with
    ``per_sample=True``. With ``prob < 1`` it is the first draw from ``generator``; with
    ``prob = 1`` (default, as the official ImageNet runs) no coin is drawn.

    Args:
        alpha: Beta concentration, > 0 (the paper uses 1).
        prob: probability in [0, 1] that a batch is mixed (default 1; the official CIFAR runs
            use 0.5).
        per_sample: one box per sample (True) or one per batch (False: the paper).
        num_classes: K when targets are class ids.
        label_smoothing: eps in [0, 1).

    Shapes:
        ``forward(x, targets, *, masks=None, generator=None)``: x (B, C, H, W) images or
        (B, C, L) sequences, float or uint8; targets (B,) ids, (B, K) soft, or None; masks
        (B, H, W) / (B, L) class ids or (B, K, H, W) / (B, K, L) soft.
        Returns :class:`MixedBatch` ``(x, targets)`` or :class:`MixedSegBatch`
        ``(x, targets, masks)`` (masks in their input format).

    Randomness: draws on x's device from ``generator`` (None: global RNG); CPU and CUDA give
    different streams, the same params give the same result on both.

    Example:
        >>> import torch
        >>> from posneg.mixing import CutMix
        >>> x, y = torch.rand(5, 3, 32, 32), torch.randint(0, 10, (5,))
        >>> seg = torch.randint(0, 4, (5, 32, 32))
        >>> out = CutMix(num_classes=10, per_sample=True)(
        ...     x, y, masks=seg, generator=torch.Generator().manual_seed(0))
        >>> out.x.shape, out.targets.shape, out.masks.shape
        (torch.Size([5, 3, 32, 32]), torch.Size([5, 10]), torch.Size([5, 32, 32]))
        >>> seq = CutMix(num_classes=10)(torch.rand(5, 1, 40), y,
        ...                              generator=torch.Generator().manual_seed(0))
        >>> seq.x.shape
        torch.Size([5, 1, 40])
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        prob: float = 1.0,
        per_sample: bool = False,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        fn = "CutMix"
        self.alpha = _common.check_alpha(fn, alpha)
        self.prob = _checks.check_range(fn, "prob", prob, 0.0, 1.0)
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
        fn = "CutMix"
        x = _common.check_images(fn, x, ranks=(3, 4), layout=_LAYOUT)
        b, size = x.shape[0], tuple(x.shape[2:])
        mix = True
        if self.prob < 1.0:
            _common.check_generator(fn, generator, x.device)
            coin = _rng.uniform((1,), device=x.device, dtype=torch.float64, generator=generator)
            mix = bool(coin[0] < self.prob)
        if mix:
            params = sample_cutmix_params(
                b,
                size,
                alpha=self.alpha,
                per_sample=self.per_sample,
                device=x.device,
                generator=generator,
            )
        else:  # the identity: every sample its own partner, empty boxes (lam = 1)
            params = CutMixParams(
                index=torch.arange(b, device=x.device),
                boxes=torch.zeros((b, 2 * len(size)), dtype=torch.long, device=x.device),
                size=size,
            )
        return _apply_cutmix(
            x,
            targets,
            params,
            masks=masks,
            num_classes=self.num_classes,
            label_smoothing=self.label_smoothing,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, prob={self.prob}, per_sample={self.per_sample}, "
            f"num_classes={self.num_classes}, "
            f"label_smoothing={self.label_smoothing}"
        )
