"""CDvG: contrastive debiasing with generative bias-transformation.

Jung, Shim, Yang, Yang. *Fighting Fire with Fire: Contrastive Debiasing without Bias-free Data
via Generative Bias-transformation.* ICML 2023, arXiv 2112.01021.

A class-conditional image translator ``G`` trained on the biased set mostly changes the easy
bias attribute (colour, border, texture) and keeps the task content. Two translations of the same
image into random target domains, ``x1 = G(x, d1)`` and ``x2 = G(x, d2)``, are a positive pair
whose bias differs; both keep the *source* label. The objective is cross-entropy on the original
image plus NT-Xent between the two translated views::

    L = CE(h(f(x)), y) + weight * NT-Xent(g(f(x1)), g(f(x2)); temperature)

No official code was found; the structure follows the abstract, and ``weight`` (1.0) and
``temperature`` (0.5, SimCLR's NT-Xent default) are this library's choices, not verified values
from the paper. The translator itself is the caller's (the bench trains a small one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg.losses.info_nce import nt_xent

__all__ = ["CDvGLoss", "bias_transformed_views", "cdvg_loss", "sample_target_domains"]

CITATION = """
@inproceedings{jung2023cdvg,
  title     = {Fighting Fire with Fire: Contrastive Debiasing without Bias-free Data via
               Generative Bias-transformation},
  author    = {Jung, Yeonsung and Shim, Hajin and Yang, June Yong and Yang, Eunho},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning},
  year      = {2023},
  note      = {arXiv:2112.01021}
}
"""

_REDUCTIONS = ("mean", "sum")


def sample_target_domains(
    labels: torch.Tensor,
    num_classes: int,
    *,
    exclude_source: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One random target domain per sample for the translator ``G(x, d)``.

    Args:
        labels: (B,) int64 source labels in ``[0, num_classes)``.
        num_classes: number of domains (the classes), >= 2 when ``exclude_source``.
        exclude_source: draw uniformly among the other classes (``d != y``); else among all.
        generator: the source of the draws.

    Returns:
        (B,) int64 target domains on ``labels``' device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> d = sample_target_domains(torch.tensor([0, 1, 2]), 3, generator=g)
        >>> bool((d != torch.tensor([0, 1, 2])).all())
        True
    """
    fn = "sample_target_domains"
    _checks.check_tensor(fn, "labels", labels)
    if labels.dim() != 1:
        raise ValueError(f"{fn}: labels must have shape (B,); got {tuple(labels.shape)}")
    _checks.check_labels(fn, "labels", labels, labels.shape[0], labels.device)
    k = _checks.check_int(fn, "num_classes", num_classes, min_value=1)
    _checks.check_bool(fn, "exclude_source", exclude_source)
    _checks.check_generator(fn, generator, labels.device)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(
            f"{fn}: labels must lie in [0, {k}); got [{int(labels.min())}, {int(labels.max())}]"
        )
    if exclude_source:
        if k < 2:
            raise ValueError(f"{fn}: num_classes must be >= 2 when exclude_source; got {k}")
        shift = torch.randint(1, k, labels.shape, generator=generator, device=labels.device)
        return (labels + shift) % k
    return torch.randint(0, k, labels.shape, generator=generator, device=labels.device)


def bias_transformed_views(
    translator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    num_classes: int,
    exclude_source: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two bias-transformed views ``(G(x, d1), G(x, d2))`` with independent random domains.

    Both views keep the source label ``labels`` (never the target domain's).

    Args:
        translator: ``G(x, d) -> x'`` with ``x`` (B, ...) and target domains ``d`` (B,) int64.
        x: (B, ...) images.
        labels: (B,) source labels.
        num_classes: number of domains.
        exclude_source: target domains differ from the source label.
        generator: the source of the domain draws (the translator's own randomness, if any, is
            its own).

    Returns:
        ``(x1, x2)``, each what ``translator`` returns.
    """
    fn = "bias_transformed_views"
    if not callable(translator):
        raise TypeError(f"{fn}: translator must be callable; got {type(translator).__name__}")
    _checks.check_float(fn, "x", x)
    if labels.shape[:1] != x.shape[:1]:
        raise ValueError(f"{fn}: labels must have shape ({x.shape[0]},); got {tuple(labels.shape)}")
    d1 = sample_target_domains(
        labels, num_classes, exclude_source=exclude_source, generator=generator
    )
    d2 = sample_target_domains(
        labels, num_classes, exclude_source=exclude_source, generator=generator
    )
    return translator(x, d1), translator(x, d2)


def _check_hparams(fn: str, weight: float, temperature: float, reduction: str) -> None:
    _checks.check_nonnegative(fn, "weight", weight)
    _checks.check_positive(fn, "temperature", temperature)
    _checks.check_choice(fn, "reduction", reduction, _REDUCTIONS)


def cdvg_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    weight: float = 1.0,
    temperature: float = 0.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """CE on the original images plus ``weight`` times NT-Xent between the two translated views.

    ``L = CE(logits, labels) + weight * NT-Xent(z1, z2)`` (see the module docstring). "mean"
    averages CE over B and NT-Xent over its 2B anchors; "sum" sums both. With ``weight == 0`` the
    result is exactly ``F.cross_entropy(logits, labels)`` (ERM) and ``z1``/``z2`` are unused.
    float16/bfloat16 inputs are reduced in float32 and the loss is float32.

    Args:
        logits: (B, C) classifier logits of the original images.
        labels: (B,) int64 labels.
        z1: (B, D) projections of the first translated view (``g(f(x1))``).
        z2: (B, D) projections of the second translated view.
        weight: lambda >= 0 of the contrastive term.
        temperature: NT-Xent temperature > 0.
        reduction: "mean" | "sum".

    Returns:
        A scalar.

    Raises:
        TypeError: non-floating inputs, non-integer labels.
        ValueError: bad shapes, B < 2, weight < 0, temperature <= 0, bad reduction.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> logits, z1, z2 = (torch.randn(4, k, generator=g) for k in (3, 8, 8))
        >>> cdvg_loss(logits, torch.tensor([0, 1, 2, 0]), z1, z2).shape
        torch.Size([])
    """
    fn = "cdvg_loss"
    _check_hparams(fn, weight, temperature, reduction)
    _checks.check_embeddings(fn, "logits", logits, min_rows=2)
    _checks.check_labels(fn, "labels", labels, logits.shape[0], logits.device)
    _checks.check_embeddings(fn, "z1", z1, min_rows=2)
    _checks.check_embeddings(fn, "z2", z2, min_rows=2)
    _checks.check_same_shape(fn, "z2", z2, "z1", z1)
    if z1.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{fn}: z1 must have {logits.shape[0]} rows like logits; got {tuple(z1.shape)}"
        )
    work = logits.dtype if logits.dtype in (torch.float32, torch.float64) else torch.float32
    ce = F.cross_entropy(logits.to(work), labels, reduction=reduction)
    if weight == 0:
        return ce
    contrast = nt_xent(z1, z2, temperature=temperature, reduction=reduction)  # type: ignore[arg-type]
    return ce + weight * contrast.to(ce.dtype)


class CDvGLoss(nn.Module):
    """CDvG's objective; see :func:`cdvg_loss`.

    Example:
        >>> loss = CDvGLoss(weight=0.5)
        >>> g = torch.Generator().manual_seed(0)
        >>> logits, z1, z2 = (torch.randn(4, k, generator=g) for k in (3, 8, 8))
        >>> float(loss(logits, torch.tensor([0, 1, 2, 0]), z1, z2)) > 0
        True
    """

    def __init__(
        self, weight: float = 1.0, temperature: float = 0.5, reduction: str = "mean"
    ) -> None:
        super().__init__()
        _check_hparams("CDvGLoss", weight, temperature, reduction)
        self.weight = float(weight)
        self.temperature = float(temperature)
        self.reduction = reduction

    def forward(
        self, logits: torch.Tensor, labels: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor
    ) -> torch.Tensor:
        """Loss of ``logits`` (B, C), ``labels`` (B,), translated-view projections (B, D) x 2."""
        return cdvg_loss(
            logits,
            labels,
            z1,
            z2,
            weight=self.weight,
            temperature=self.temperature,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}, reduction={self.reduction!r}"
