"""Contrastive Attraction and Contrastive Repulsion (CACR, Zheng et al., TMLR 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, map_rows, mask_columns
from posneg._types import Reduction

__all__ = ["CITATION", "CACRLoss", "cacr"]

CITATION = """
@article{zheng2023contrastive,
  title   = {Contrastive Attraction and Contrastive Repulsion for Representation Learning},
  author  = {Zheng, Huangjie and Chen, Xu and Yao, Jiangchao and Yang, Hongxia and Li, Chunyuan
             and Zhang, Ya and Zhang, Hao and Tsang, Ivor and Zhou, Jingren and Zhou, Mingyuan},
  journal = {Transactions on Machine Learning Research (TMLR)},
  year    = {2023},
  eprint  = {2105.03746},
  archivePrefix = {arXiv}
}
"""


def _check_hyper(
    fn: str, alpha: float, beta: float, t_pos: float, t_neg: float, tau_plus: float
) -> tuple[float, float, float, float, float]:
    return (
        _checks.check_nonnegative(fn, "alpha", alpha),
        _checks.check_nonnegative(fn, "beta", beta),
        _checks.check_nonnegative(fn, "t_pos", t_pos),
        _checks.check_nonnegative(fn, "t_neg", t_neg),
        _checks.check_range(fn, "tau_plus", tau_plus, 0.0, 1.0, high_open=True),
    )


def cacr(
    views: torch.Tensor,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    t_pos: float = 1.0,
    t_neg: float = 0.9,
    tau_plus: float = 0.0,
    detach_weights: bool = False,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    r"""CACR: softmax-weighted attraction of positive views plus repulsion of negatives.

    Zheng, Chen, Yao, Yang, Li, Zhang, Zhang, Tsang, Zhou, Zhou. *Contrastive Attraction and
    Contrastive Repulsion for Representation Learning*. TMLR 2023, arXiv 2105.03746. This is
    the loss of the official small-scale code (``our_loss1`` + ``our_loss2`` in
    ``JegZheng/CACR-SSL``, Euclidean cost), written from its equations:

    With ``z = views`` (V views of B images, L2-normalised when ``normalize``) and the squared
    Euclidean cost :math:`d(a, b) = \lVert a - b \rVert^2`:

    .. math::

        L_{CA} = \frac{1}{V} \sum_v \frac{1}{B} \sum_i \sum_{k \ne v}
            \pi^+_{ik}\, \alpha\, d(z^v_i, z^k_i), \qquad
            \pi^+_{ik} = \operatorname{softmax}_{k \ne v}\big(t_{pos}\, d(z^v_i, z^k_i)\big)

    (distant positives weigh more; the ``M = V - 1`` other views of image i are its positives),

    .. math::

        L_{CR} = \frac{1}{\#\{x<y\}} \sum_{x<y} \frac{1}{B} \sum_i \sum_{j \ne i}
            \pi^-_{ij}\, C_{ij}, \qquad C_{ij} = -\beta\, d(z^x_i, z^y_j), \qquad
            \pi^-_{ij} = \operatorname{softmax}_{j \ne i}\big(-t_{neg}\, d(z^x_i, z^y_j)\big)

    (close negatives weigh more; negatives are cross-view only, view x's anchors against view
    y's other images, for each pair of views x < y as in the code), and
    :math:`L = L_{CA} + L_{CR}`.

    Choices, stated deliberately:

    - ``detach_weights=False`` (default) lets gradients flow through :math:`\pi^\pm`, as the
      small-scale code does; ``True`` computes the weights under no gradient as the ImageNet
      (MoCo-v3 based) code does.
    - The code's ablation switch ``choice`` is not a separate argument: its uniform weights are
      exactly ``t_pos=0`` (``without_w1``), ``t_neg=0`` (``without_w2``) or both (``none``),
      since a softmax of equal logits is uniform.
    - ``tau_plus > 0`` applies the code's optional debiasing (``--with_debiased``) to the
      repulsion term of each pair, literally as the code writes it:
      :math:`\big(-\tau^+ d(z^x_i, z^y_i) + \sum_j \pi^-_{ij} C_{ij}\big) / (1 - \tau^+)`.
      (The code skips it when the negative weights are uniform; here it applies whatever
      ``t_neg`` is.) ``tau_plus=0`` (default) is the plain loss.
    - The cost is computed as :math:`\lVert a\rVert^2 + \lVert b\rVert^2 - 2 a\cdot b`, clamped
      at 0, blockwise; no B x B tensor is part of the contract (rows go through
      :func:`posneg._tiling.map_rows`).

    Args:
        views: (V, B, D) embeddings: V >= 2 views of the same B >= 2 images, in the same order
            in every view (``torch.stack([z1, z2])`` for two views). Half inputs run in float32.
        alpha: attraction cost scale (>= 0).
        beta: repulsion cost scale (>= 0).
        t_pos: attraction weight temperature (>= 0; 0 gives uniform weights). Paper default 1.
        t_neg: repulsion weight temperature (>= 0; 0 gives uniform weights). Paper defaults 0.9
            (CIFAR-10) or 2.0 (CIFAR-100, STL-10).
        tau_plus: debiasing class prior in [0, 1); 0 disables it (code default 0.1 when enabled).
        detach_weights: compute the softmax weights without gradient.
        normalize: L2-normalise each embedding first (the paper's encoder ends in an L2 norm).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
        chunk_size: anchor rows per block; ``None`` picks a block within the default budget.

    Returns:
        ``"none"``: (B,) per-image losses, image i's attraction averaged over views plus its
        repulsion (as anchor) averaged over view pairs; ``"mean"`` is their mean, which is
        exactly :math:`L_{CA} + L_{CR}`; ``"sum"`` their sum. Scalars are float32 for half
        inputs, else ``views``' dtype.

    Raises:
        TypeError: ``views`` not a floating tensor, or a hyperparameter of the wrong type.
        ValueError: ``views`` not (V, B, D) with V >= 2 and B >= 2, non-finite values, a negative
            ``alpha``/``beta``/``t_pos``/``t_neg``, ``tau_plus`` outside [0, 1), or an unknown
            ``reduction``.

    Example:
        >>> import torch
        >>> from posneg.losses import cacr
        >>> g = torch.Generator().manual_seed(0)
        >>> views = torch.randn(2, 16, 8, generator=g)  # two views of 16 images
        >>> cacr(views, t_neg=0.9).shape
        torch.Size([])
        >>> cacr(torch.randn(5, 16, 8, generator=g), reduction="none").shape  # M = 4 positives
        torch.Size([16])
    """
    fn = "cacr"
    _checks.check_float(fn, "views", views)
    if views.dim() != 3:
        raise ValueError(f"{fn}: views must have shape (V, B, D); got {tuple(views.shape)}")
    n_views, batch, dim = (int(s) for s in views.shape)
    if n_views < 2:
        raise ValueError(
            f"{fn}: views must hold V >= 2 views (shape (V, B, D)); got {tuple(views.shape)}"
        )
    if batch < 2:
        raise ValueError(
            f"{fn}: views must hold B >= 2 images (shape (V, B, D)); got {tuple(views.shape)}"
        )
    if dim < 1:
        raise ValueError(f"{fn}: views must have D >= 1; got {tuple(views.shape)}")
    alpha, beta, t_pos, t_neg, tau_plus = _check_hyper(fn, alpha, beta, t_pos, t_neg, tau_plus)
    _checks.check_bool(fn, "detach_weights", detach_weights)
    _checks.check_bool(fn, "normalize", normalize)
    reduction = _checks.check_reduction(fn, reduction)
    _checks.check_chunk_size(fn, chunk_size)
    _checks.check_finite(fn, "views", views)

    z = views.to(compute_dtype(views))
    if normalize:
        z = F.normalize(z, dim=-1)
    sq_norm = (z * z).sum(dim=-1)  # (V, B)

    # Attraction: per image, the V x V view-distance matrix (no B x B term involved).
    gram = torch.einsum("vbd,wbd->bvw", z, z)
    sq = sq_norm.T  # (B, V)
    d_views = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * gram).clamp_min(0.0)  # (B, V, V)
    eye = torch.eye(n_views, dtype=torch.bool, device=z.device)
    logits = t_pos * (d_views.detach() if detach_weights else d_views)
    logits = logits.masked_fill(eye, torch.finfo(logits.dtype).min)
    w_pos = torch.softmax(logits, dim=2)  # diagonal weight is exactly 0
    attraction = alpha * (w_pos * d_views).sum(dim=2).mean(dim=1)  # (B,)

    # Repulsion: cross-view pairs x < y, anchors of view x against view y's other images.
    pairs = [(x, y) for x in range(n_views) for y in range(x + 1, n_views)]

    def block(start: int, stop: int, z: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
        self_cols = torch.arange(start, stop, device=z.device).unsqueeze(1)
        out = torch.zeros(stop - start, dtype=z.dtype, device=z.device)
        for x, y in pairs:
            dist = (
                sq_norm[x, start:stop].unsqueeze(1)
                + sq_norm[y].unsqueeze(0)
                - 2.0 * (z[x, start:stop] @ z[y].T)
            ).clamp_min(0.0)  # (R, B)
            neg_logits = -t_neg * (dist.detach() if detach_weights else dist)
            w_neg = torch.softmax(mask_columns(neg_logits, self_cols), dim=1)
            term = -beta * (w_neg * dist).sum(dim=1)
            if tau_plus > 0.0:
                positive = dist.gather(1, self_cols).squeeze(1)
                term = (term - tau_plus * positive) / (1.0 - tau_plus)
            out = out + term
        return out / len(pairs)

    repulsion = map_rows(block, batch, batch * len(pairs), z, sq_norm, chunk_size=chunk_size)
    per_image = attraction + repulsion
    if reduction == "mean":
        return per_image.mean()
    if reduction == "sum":
        return per_image.sum()
    return per_image


class CACRLoss(nn.Module):
    """Module form of :func:`cacr` (Zheng et al., TMLR 2023, arXiv 2105.03746).

    Stores validated hyperparameters; ``forward(views)`` calls :func:`cacr` on a (V, B, D)
    tensor of V views of B images. See :func:`cacr` for the formula and the choices made.

    Example:
        >>> import torch
        >>> loss_fn = CACRLoss(t_neg=2.0)
        >>> loss_fn(torch.randn(2, 8, 4)).dim()
        0
    """

    def __init__(
        self,
        *,
        alpha: float = 1.0,
        beta: float = 1.0,
        t_pos: float = 1.0,
        t_neg: float = 0.9,
        tau_plus: float = 0.0,
        detach_weights: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "CACRLoss"
        self.alpha, self.beta, self.t_pos, self.t_neg, self.tau_plus = _check_hyper(
            fn, alpha, beta, t_pos, t_neg, tau_plus
        )
        self.detach_weights = _checks.check_bool(fn, "detach_weights", detach_weights)
        self.normalize = _checks.check_bool(fn, "normalize", normalize)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)

    def forward(self, views: torch.Tensor) -> torch.Tensor:
        """Loss of ``views`` (V, B, D)."""
        return cacr(
            views,
            alpha=self.alpha,
            beta=self.beta,
            t_pos=self.t_pos,
            t_neg=self.t_neg,
            tau_plus=self.tau_plus,
            detach_weights=self.detach_weights,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, t_pos={self.t_pos}, t_neg={self.t_neg}, "
            f"tau_plus={self.tau_plus}, detach_weights={self.detach_weights}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}, "
            f"chunk_size={self.chunk_size}"
        )
