"""Decoupled Contrastive Learning: DCL and its von Mises-Fisher weighted form DCLW.

The positive pair is removed from the InfoNCE denominator: one row log-sum-exp over the
anchor's 2B - 2 negatives (:func:`posneg._lse.row_logsumexp` with the anchor's own column and
its partner's excluded: tiled scores, a custom backward that recomputes each tile once) minus
the (weighted) positive, a row-wise dot product.
"""

from __future__ import annotations

import torch
from torch import nn

from posneg import _checks
from posneg._lse import row_logsumexp
from posneg._tiling import reduce_loss
from posneg._types import Reduction
from posneg.losses.info_nce import _check_hparams, _two_view_rows, _two_views

__all__ = ["DCLLoss", "DCLWLoss", "dcl", "dclw"]

CITATION = """
@inproceedings{yeh2022dcl,
  title     = {Decoupled Contrastive Learning},
  author    = {Yeh, Chun-Hsiao and Hong, Cheng-Yao and Hsu, Yen-Chi and Liu, Tyng-Luh and
               Chen, Yubei and LeCun, Yann},
  booktitle = {Computer Vision -- ECCV 2022},
  year      = {2022},
  note      = {arXiv:2110.06848}
}
"""


def _dcl_rows(
    z: torch.Tensor,
    n: int,
    temperature: float,
    chunk_size: int | None,
    reduction: str,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row DCL: one log-sum-exp over the 2B - 2 negatives minus the (weighted) positive."""
    rows, pos = _two_view_rows(z, n, temperature)
    if weights is not None:
        pos = weights * pos
    lse = row_logsumexp(
        rows, z, exclude_offsets=(0, n), chunk_size=chunk_size, uniform_grad=reduction != "none"
    )
    return lse - pos


def dcl(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.1,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Decoupled contrastive loss: InfoNCE with the positive removed from the denominator.

    Yeh, Hong, Hsu, Liu, Chen, LeCun. *Decoupled Contrastive Learning.* ECCV 2022,
    arXiv 2110.06848.

    With ``z = cat([z1, z2])`` (2B, D), L2-normalised when ``normalize``, ``s(r, c) = z_r.z_c``,
    ``t = temperature`` and ``p(r) = (r + B) mod 2B`` the anchor's other view::

        L_r = -s(r, p(r)) / t + log sum_{c not in {r, p(r)}} exp(s(r, c) / t)

    one log-sum-exp over the union of the 2B - 2 same-view and cross-view negatives, as in the
    paper's equation and in raminnakhli/Decoupled-Contrastive-Learning. lightly 1.6's ``DCLLoss``
    computes the same single log-sum-exp and equals this exactly (``tests/peers/``, run by
    ``make test-peers``). Consequences: per anchor ``L_DCL = L_NTXent - log(1 + exp(s_pos/t) /
    sum_neg exp(s/t)) <= L_NTXent``, ``dL/ds_pos = -1/t`` exactly, and the loss can be negative.

    "mean" averages over all 2B anchors (both views as anchors, i.e. the symmetric loss). This
    equals lightly's scale (0.5 * (mean over view 1 + mean over view 2)) and is half of
    raminnakhli's ``l(z1, z2) + l(z2, z1)``.

    Args:
        z1: (B, D) embeddings of the first view.
        z2: (B, D) embeddings of the second view; ``z2[i]`` is the positive of ``z1[i]``.
        temperature: t > 0 (0.1 in both reference implementations).
        normalize: L2-normalise the embeddings first.
        reduction: "mean" | "sum" | "none".
        chunk_size: anchor rows per block (``None``: automatic, bounded memory).

    Returns:
        "mean"/"sum": a scalar; "none": (2B,) ordered [view-1 anchors, view-2 anchors].

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-bool ``normalize``.
        ValueError: wrong rank or shape, mismatched batch/dimension/device, B < 2,
            temperature <= 0, bad reduction or chunk_size.

    Example:
        >>> import torch
        >>> from posneg.losses import dcl
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
        >>> dcl(z1, z2, reduction="none").shape
        torch.Size([16])
    """
    fn = "dcl"
    t = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
    z, n = _two_views(fn, z1, z2, normalize)
    return reduce_loss(_dcl_rows(z, n, t, chunk_size, reduction), reduction)


def _weights(z: torch.Tensor, n: int, sigma: float) -> torch.Tensor:
    """DCLW weights ``2 - B * softmax_i(z1_i.z2_i / sigma)`` (B,) from ``z = cat([z1, z2])``."""
    s_pos = (z[:n] * z[n:]).sum(dim=1)
    return 2.0 - n * torch.softmax(s_pos / sigma, dim=0)


def dclw(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.1,
    sigma: float = 0.5,
    detach_weights: bool = False,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Weighted decoupled contrastive loss (DCLW): DCL with von Mises-Fisher positive weights.

    Yeh, Hong, Hsu, Liu, Chen, LeCun. *Decoupled Contrastive Learning.* ECCV 2022,
    arXiv 2110.06848.

    As :func:`dcl` (same notation: single log-sum-exp over the 2B - 2 negatives, mean over the
    2B anchors), with the positive term of sample i weighted in both views by::

        w_i = 2 - exp(s_i / sigma) / mean_j exp(s_j / sigma) = 2 - B * softmax_i(s_i / sigma)
        L_r = -w_{r mod B} * s(r, p(r)) / t + log sum_{c not in {r, p(r)}} exp(s(r, c) / t)

    where ``s_i = z1_i.z2_i``. The weights average to 1; as sigma -> inf every ``w_i -> 1`` and
    DCLW becomes DCL. Gradient through the weights: the paper does not say;
    raminnakhli/Decoupled-Contrastive-Learning lets it flow, lightly detaches. Default here
    ``detach_weights=False`` (raminnakhli, the reference whose single log-sum-exp we follow);
    ``detach_weights=True`` gives lightly's treatment of the weights.

    Args:
        z1: (B, D) embeddings of the first view.
        z2: (B, D) embeddings of the second view.
        temperature: t > 0.
        sigma: von Mises-Fisher concentration scale, > 0 (default 0.5 as in both references).
        detach_weights: stop gradients through ``w``.
        normalize: L2-normalise the embeddings first.
        reduction: "mean" | "sum" | "none".
        chunk_size: anchor rows per block (``None``: automatic, bounded memory).

    Returns:
        "mean"/"sum": a scalar; "none": (2B,) ordered [view-1 anchors, view-2 anchors].

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-bool flags.
        ValueError: wrong rank or shape, mismatched batch/dimension/device, B < 2,
            temperature <= 0, sigma <= 0, bad reduction or chunk_size.

    Example:
        >>> import torch
        >>> from posneg.losses import dclw
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
        >>> dclw(z1, z2, sigma=0.5).shape
        torch.Size([])
    """
    fn = "dclw"
    t = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
    s = _checks.check_positive(fn, "sigma", sigma)
    _checks.check_bool(fn, "detach_weights", detach_weights)
    z, n = _two_views(fn, z1, z2, normalize)
    w = _weights(z.detach() if detach_weights else z, n, s)
    per_row = _dcl_rows(z, n, t, chunk_size, reduction, torch.cat([w, w]))
    return reduce_loss(per_row, reduction)


class DCLLoss(nn.Module):
    """Module form of :func:`dcl` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> DCLLoss(temperature=0.1)(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = _check_hparams("DCLLoss", temperature, normalize, reduction, chunk_size)
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss of two views ``z1``, ``z2`` (B, D)."""
        return dcl(
            z1,
            z2,
            temperature=self.temperature,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, normalize={self.normalize}, "
            f"reduction={self.reduction!r}, chunk_size={self.chunk_size}"
        )


class DCLWLoss(nn.Module):
    """Module form of :func:`dclw` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> DCLWLoss(sigma=0.5)(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.1,
        sigma: float = 0.5,
        detach_weights: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "DCLWLoss"
        self.temperature = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
        self.sigma = _checks.check_positive(fn, "sigma", sigma)
        self.detach_weights = _checks.check_bool(fn, "detach_weights", detach_weights)
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss of two views ``z1``, ``z2`` (B, D)."""
        return dclw(
            z1,
            z2,
            temperature=self.temperature,
            sigma=self.sigma,
            detach_weights=self.detach_weights,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, sigma={self.sigma}, "
            f"detach_weights={self.detach_weights}, normalize={self.normalize}, "
            f"reduction={self.reduction!r}, chunk_size={self.chunk_size}"
        )
