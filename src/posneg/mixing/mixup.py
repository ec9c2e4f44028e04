"""MixUp: convex combinations of pairs of samples and of their labels.

Zhang, Cisse, Dauphin, Lopez-Paz. mixup: Beyond Empirical Risk Minimization. ICLR 2018,
arXiv 1710.09412.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import torch
from torch import nn

from posneg import _checks
from posneg.mixing import _common, _targets
from posneg.mixing._common import MixedBatch, MixedSegBatch

CITATION = """
@inproceedings{zhang2018mixup,
  title     = {mixup: Beyond Empirical Risk Minimization},
  author    = {Zhang, Hongyi and Cisse, Moustapha and Dauphin, Yann N. and Lopez-Paz, David},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2018},
  eprint    = {1710.09412},
  archivePrefix = {arXiv}
}
"""


@dataclass(frozen=True)
class MixUpParams:
    """One draw of MixUp's randomness.

    Attributes:
        lam: (B,) float32 in [0, 1], the weight of sample ``i`` itself (all entries equal when
            drawn per batch). A 0-d tensor is accepted by :func:`apply_mixup` too.
        index: (B,) int64, the partner of each sample (a permutation when drawn here).
    """

    lam: torch.Tensor
    index: torch.Tensor


def sample_mixup_params(
    batch: int,
    *,
    alpha: float = 1.0,
    per_sample: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> MixUpParams:
    """Draw MixUp parameters: ``lam ~ Beta(alpha, alpha)`` and a random permutation.

    Args:
        batch: B >= 1. With B = 1 the permutation is the identity (the sample mixes with itself).
        alpha: Beta concentration, >= 0 (1.0: lambda uniform on [0, 1]). ``alpha = 0`` gives
            ``lam = 1`` (no mixing: every sample is returned unchanged), as the official code
            does (facebookresearch/mixup-cifar10 ``train.py``, commit eaff31a, ``mixup_data``:
            ``lam = 1`` unless ``alpha > 0``); nothing is drawn for lambda then, the
            permutation still is.
        per_sample: one lambda per sample (True) or one for the batch (False, the paper).
        device: where the draws are made and the params live.
        generator: drawn from (None: torch's global RNG). Draw order: lambda, then permutation.

    Returns:
        :class:`MixUpParams`.

    Raises:
        ValueError: batch < 1 or alpha < 0. TypeError: generator of the wrong type.
    """
    fn = "sample_mixup_params"
    b = _common.check_batch(fn, "batch", batch)
    a = _checks.check_nonnegative(fn, "alpha", alpha)
    _common.check_generator(fn, generator, device)
    if a == 0.0:
        lam = torch.ones(b, device=device, dtype=torch.float32)
    else:
        lam = _common.draw_lambda(
            a, a, b, per_sample=per_sample, device=device, generator=generator
        )
    index = _common.draw_permutation(b, device=device, generator=generator)
    return MixUpParams(lam=lam, index=index)


@overload
def apply_mixup(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: MixUpParams,
    *,
    masks: None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
    num_mask_classes: int | None = None,
    ignore_index: int | None = None,
) -> MixedBatch: ...


@overload
def apply_mixup(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: MixUpParams,
    *,
    masks: torch.Tensor,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
    num_mask_classes: int | None = None,
    ignore_index: int | None = None,
) -> MixedSegBatch: ...


def apply_mixup(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: MixUpParams,
    *,
    masks: torch.Tensor | None = None,
    num_classes: int | None = None,
    label_smoothing: float = 0.0,
    num_mask_classes: int | None = None,
    ignore_index: int | None = None,
) -> MixedBatch | MixedSegBatch:
    """Mix a batch with given MixUp parameters (deterministic; one fused pass, no batch loop).

    With ``lam = params.lam`` and ``j = params.index[i]``::

        x_mixed[i] = lam[i] * x[i] + (1 - lam[i]) * x[j]
        y_mixed[i] = lam[i] * y[i] + (1 - lam[i]) * y[j]

    where ``y`` are the soft targets (one-hot of class ids, optionally label-smoothed).

    Args:
        x: (B, ...) float or uint8 (images (B, C, H, W), sequences, features ...). uint8 is
            blended in float32 and rounded half-to-even.
        targets: class ids (B,) int (needs ``num_classes``), soft or multi-hot labels (B, K),
            or None.
        params: from :func:`sample_mixup_params` (or built by hand: any index in [0, B)).
        masks: optional segmentation masks: class maps (B, *spatial) int (needs
            ``num_mask_classes``) or soft maps (B, K, *spatial) float, where ``*spatial`` is
            ``x.shape[2:]``. They are mixed with the same weights and returned as **soft maps
            (B, K, *spatial)** in x's dtype (float32 for uint8 x), each pixel a probability vector
            (all-zero at ``ignore_index`` pixels of both partners' maps).
        num_classes: K for class-id targets.
        label_smoothing: eps in [0, 1): targets become ``y (1 - eps) + eps / K`` before mixing.
        num_mask_classes: K for class-id masks.
        ignore_index: a mask value that marks unlabelled pixels (all-zero soft vector).

    Returns:
        :class:`MixedBatch` ``(x, targets)`` without masks, :class:`MixedSegBatch`
        ``(x, targets, masks)`` with masks. ``x`` keeps shape, dtype and device; ``targets`` is
        (B, K) (None when ``targets`` is None).

    Raises:
        TypeError: x not float/uint8; wrongly typed targets, masks or params.
        ValueError: x with fewer than 2 dimensions; targets or masks not matching the batch;
            class ids without ``num_classes``; params drawn for another batch.

    Example:
        >>> import torch
        >>> from posneg.mixing import sample_mixup_params, apply_mixup
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(5, 3, 8, 8), torch.tensor([0, 1, 2, 1, 0])
        >>> p = sample_mixup_params(5, alpha=0.4, per_sample=True, generator=g)
        >>> out = apply_mixup(x, y, p, num_classes=3)
        >>> out.x.shape, out.targets.shape, bool(torch.allclose(out.targets.sum(1), torch.ones(5)))
        (torch.Size([5, 3, 8, 8]), torch.Size([5, 3]), True)
    """
    return _apply_mixup(
        x,
        targets,
        params,
        masks=masks,
        num_classes=num_classes,
        label_smoothing=label_smoothing,
        num_mask_classes=num_mask_classes,
        ignore_index=ignore_index,
    )


def _apply_mixup(
    x: torch.Tensor,
    targets: torch.Tensor | None,
    params: MixUpParams,
    *,
    masks: torch.Tensor | None,
    num_classes: int | None,
    label_smoothing: float,
    num_mask_classes: int | None,
    ignore_index: int | None,
) -> MixedBatch | MixedSegBatch:
    fn = "apply_mixup"
    x = _common.check_images(fn, x, ranks=range(2, 9), layout="(B, ...)")
    if not isinstance(params, MixUpParams):
        raise TypeError(f"{fn}: params must be MixUpParams; got {type(params).__name__}")
    index = _common.check_index(fn, params.index, x)
    lam = _common.check_lam(fn, params.lam, x)
    k = _targets.check_num_classes(fn, num_classes)
    km = _targets.check_num_classes(fn, num_mask_classes, "num_mask_classes")
    eps = _targets.check_label_smoothing(fn, label_smoothing)
    y = None
    if targets is not None:
        y = _targets.soft_targets(fn, targets, x, num_classes=k, label_smoothing=eps)
    soft = None
    if masks is not None:
        m = _common.check_masks(fn, masks, x)
        soft = _targets.soft_masks(
            fn, m, num_classes=km, ignore_index=ignore_index, dtype=_targets.target_dtype(x)
        )
    x_mixed = _common.lerp_rows(x, index, lam)
    y_mixed = None if y is None else _targets.mix_targets(y, index, lam)
    if soft is None:
        return MixedBatch(x_mixed, y_mixed)
    return MixedSegBatch(x_mixed, y_mixed, _common.lerp_rows(soft, index, lam))


class MixUp(nn.Module):
    """MixUp as a module: draws :class:`MixUpParams` and applies :func:`apply_mixup`.

    Zhang, Cisse, Dauphin, Lopez-Paz. mixup: Beyond Empirical Risk Minimization. ICLR 2018,
    arXiv 1710.09412. ``lam ~ Beta(alpha, alpha)``; ``x~ = lam x_i + (1 - lam) x_j`` and the
    same for the soft targets, with ``j`` a random permutation of the batch (the official code
    permutes; timm pairs ``i`` with ``B-1-i`` and asserts an even batch, torchvision rolls by
    one: both are special cases of ``MixUpParams.index``). Odd batches need nothing special;
    with B = 1 the sample is returned unchanged.

    Args:
        alpha: Beta concentration, >= 0 (0: ``lam = 1``, no mixing, as the official code).
        per_sample: one lambda per sample (True) or one per batch (False: the paper).
        num_classes: K when targets are class ids.
        label_smoothing: eps in [0, 1).
        num_mask_classes: K when segmentation masks are class maps.
        ignore_index: unlabelled mask value (all-zero soft vector).

    Shapes:
        ``forward(x, targets, *, masks=None, generator=None)``: x (B, ...) float or uint8;
        targets (B,) class ids, (B, K) soft/multi-hot, or None; masks (B, *spatial) class ids or
        (B, K, *spatial) soft maps. Returns :class:`MixedBatch` ``(x, targets)`` or, with masks,
        :class:`MixedSegBatch` ``(x, targets, masks)`` whose masks are soft (B, K, *spatial).

    Randomness: draws on x's device from ``generator`` (None: global RNG). CPU and CUDA
    generators give different streams, so results match across devices only for the same params.

    Example:
        >>> import torch
        >>> from posneg.mixing import MixUp
        >>> mix = MixUp(alpha=0.2, num_classes=10, per_sample=True)
        >>> x, y = torch.rand(7, 3, 16, 16), torch.randint(0, 10, (7,))
        >>> x_mixed, y_soft = mix(x, y, generator=torch.Generator().manual_seed(0))
        >>> y_soft.shape
        torch.Size([7, 10])
    """

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        per_sample: bool = False,
        num_classes: int | None = None,
        label_smoothing: float = 0.0,
        num_mask_classes: int | None = None,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        fn = "MixUp"
        self.alpha = _checks.check_nonnegative(fn, "alpha", alpha)
        self.per_sample = bool(per_sample)
        self.num_classes = _targets.check_num_classes(fn, num_classes)
        self.label_smoothing = _targets.check_label_smoothing(fn, label_smoothing)
        self.num_mask_classes = _targets.check_num_classes(fn, num_mask_classes, "num_mask_classes")
        self.ignore_index = ignore_index

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
        x = _common.check_images("MixUp", x, ranks=range(2, 9), layout="(B, ...)")
        params = sample_mixup_params(
            x.shape[0],
            alpha=self.alpha,
            per_sample=self.per_sample,
            device=x.device,
            generator=generator,
        )
        return _apply_mixup(
            x,
            targets,
            params,
            masks=masks,
            num_classes=self.num_classes,
            label_smoothing=self.label_smoothing,
            num_mask_classes=self.num_mask_classes,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, per_sample={self.per_sample}, num_classes={self.num_classes}, "
            f"label_smoothing={self.label_smoothing}, num_mask_classes={self.num_mask_classes}, "
            f"ignore_index={self.ignore_index}"
        )
