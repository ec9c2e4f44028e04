"""InfoNCE (CPC / MoCo / CLIP form) and NT-Xent (SimCLR's 2B-view form).

Both are a per-row log-sum-exp over the candidates (:func:`posneg._lse.row_logsumexp`: scores
computed one row tile at a time, a custom backward that recomputes each tile once and forms the
gradients directly) minus the positive's score, a row-wise dot product. Memory is O(B * D + one
tile) and no B x B matrix is part of the contract. The two-view helpers near the top of this
file are shared with DCL and HCL.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._lse import row_logsumexp
from posneg._tiling import compute_dtype, reduce_loss
from posneg._types import Reduction

__all__ = ["InfoNCELoss", "NTXentLoss", "info_nce", "nt_xent"]

CITATION = """
@article{oord2018cpc,
  title   = {Representation Learning with Contrastive Predictive Coding},
  author  = {van den Oord, Aaron and Li, Yazhe and Vinyals, Oriol},
  journal = {arXiv preprint arXiv:1807.03748},
  year    = {2018}
}
"""

CITATION_SIMCLR = """
@inproceedings{chen2020simclr,
  title     = {A Simple Framework for Contrastive Learning of Visual Representations},
  author    = {Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
  booktitle = {Proceedings of the 37th International Conference on Machine Learning (ICML)},
  pages     = {1597--1607},
  year      = {2020},
  note      = {arXiv:2002.05709}
}
"""

#: Per-technique BibTeX (read by ``posneg.registry``): NT-Xent cites SimCLR.
CITATIONS = {"InfoNCELoss": CITATION, "NTXentLoss": CITATION_SIMCLR}


# --------------------------------------------------------------------------------------------
# Shared validation (also used by dcl.py and hcl.py)
# --------------------------------------------------------------------------------------------


def _check_hparams(
    fn: str, temperature: Any, normalize: Any, reduction: Any, chunk_size: Any
) -> float:
    """Validate the hyperparameters every similarity objective here shares; return temperature."""
    t = _checks.check_positive(fn, "temperature", temperature)
    _checks.check_bool(fn, "normalize", normalize)
    _checks.check_reduction(fn, reduction)
    _checks.check_chunk_size(fn, chunk_size)
    return t


def _check_pair(fn: str, names: tuple[str, str], x: Any, y: Any, *, min_rows: int) -> None:
    """Two (B, D) floating tensors of one shape, device and dtype, with B >= ``min_rows``."""
    a, b = names
    _checks.check_embeddings(fn, a, x)
    _checks.check_embeddings(fn, b, y)
    _checks.check_same_device(fn, b, y, a, x)
    _checks.check_same_dtype(fn, b, y, a, x)
    _checks.check_same_shape(fn, b, y, a, x)
    if x.shape[0] < min_rows:
        raise ValueError(
            f"{fn}: {a} must have at least {min_rows} rows (B >= {min_rows}); got {tuple(x.shape)}"
        )


def _prepare(x: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Cast half precision to float32 and L2-normalise rows when asked."""
    x = x.to(compute_dtype(x))
    return F.normalize(x, dim=1) if normalize else x


def _two_views(
    fn: str, z1: Any, z2: Any, normalize: bool, names: tuple[str, str] = ("z1", "z2")
) -> tuple[torch.Tensor, int]:
    """Validate two views (B, D) and return ``z = cat([z1, z2])`` (2B, D) ready to score, and B."""
    _check_pair(fn, names, z1, z2, min_rows=2)
    n = int(z1.shape[0])
    return _prepare(torch.cat([z1, z2], dim=0), normalize), n


def _two_view_rows(
    z: torch.Tensor, n: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled anchor rows and positive logits of ``z = cat([z1, z2])`` (2n, D).

    Row r is sample ``r mod n`` of view ``r // n``; its positive partner is ``(r + n) mod 2n``,
    which is the excluded diagonal ``n`` of a row log-sum-exp against ``z`` (the anchor itself is
    diagonal 0). Returns ``rows = z / t`` (2n, D) and ``pos_r = z_r.z_partner / t`` (2n,). The
    positive is a row-wise dot (no dense gradient for it), and ``1/t`` scales the rows, not the
    scores.
    """
    rows = z * (1.0 / temperature)
    partner = torch.cat([z[n:], z[:n]], dim=0)
    return rows, (rows * partner).sum(dim=1)


def _cross_rows(
    anchors: torch.Tensor, cands: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled anchor rows ``a / t`` (B, D) and positive logits ``a_r.c_r / t`` (B,)."""
    rows = anchors * (1.0 / temperature)
    return rows, (rows * cands[: anchors.shape[0]]).sum(dim=1)


# --------------------------------------------------------------------------------------------
# InfoNCE
# --------------------------------------------------------------------------------------------


def _info_nce_rows(
    anchors: torch.Tensor,
    cands: torch.Tensor,
    temperature: float,
    chunk_size: int | None,
    uniform_grad: bool,
) -> torch.Tensor:
    """Per-row InfoNCE of ``anchors`` against ``cands`` = [keys (B); extra negatives].

    ``uniform_grad``: the caller reduces the rows by a mean or sum (see ``row_logsumexp``).
    """
    rows, pos = _cross_rows(anchors, cands, temperature)
    lse = row_logsumexp(rows, cands, chunk_size=chunk_size, uniform_grad=uniform_grad)
    return lse - pos


def info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    *,
    negatives: torch.Tensor | None = None,
    temperature: float = 0.07,
    symmetric: bool = False,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """InfoNCE: each query picks its own key among all keys of the batch (and extra negatives).

    van den Oord, Li, Vinyals. *Representation Learning with Contrastive Predictive Coding.*
    arXiv 1807.03748, 2018. The in-batch form with a queue of extra negatives is MoCo's (He et
    al., CVPR 2020, arXiv 1911.05722); the symmetric form is CLIP's (Radford et al., ICML 2021,
    arXiv 2103.00020).

    With ``q = query``, ``k = key``, ``n = negatives`` (L2-normalised when ``normalize``) and
    ``t = temperature``, the loss of anchor i is::

        L_i = -q_i.k_i / t + log( sum_{j<B} exp(q_i.k_j / t) + sum_{m<M} exp(q_i.n_m / t) )

    so every anchor has B - 1 in-batch negatives plus the M extra ones. ``symmetric=True`` adds
    the key -> query direction ``L'_i = -k_i.q_i / t + log sum_{j<B} exp(k_i.q_j / t)`` and
    returns ``(L_i + L'_i) / 2`` per pair. The extra ``negatives`` are keys (e.g. a MoCo queue),
    so they are scored against the queries only: the key -> query direction has B - 1 negatives.

    Args:
        query: (B, D) anchors.
        key: (B, D) positives; ``key[i]`` pairs with ``query[i]``, other rows are negatives.
        negatives: optional (M, D) extra negatives (M may be 0), e.g. ``MemoryQueue.negatives()``.
        temperature: t > 0.
        symmetric: also compute the key -> query direction and average per pair (CLIP).
        normalize: L2-normalise ``query``, ``key`` and ``negatives`` first.
        reduction: "mean" | "sum" | "none".
        chunk_size: anchor rows per block (``None``: automatic, bounded memory).

    Returns:
        "mean"/"sum": a scalar; "none": (B,) per anchor (per pair when ``symmetric``). float32
        for half-precision inputs, else the input dtype.

    Raises:
        TypeError: non-tensor or non-floating inputs, mismatched dtypes, non-bool flags.
        ValueError: wrong rank or shape, mismatched batch, dimension or device, B < 2 without
            extra negatives (or with ``symmetric``), temperature <= 0, bad reduction/chunk_size.

    Inputs are not checked for NaN/inf (that would force a device sync); NaN propagates.

    Example:
        >>> import torch
        >>> from posneg.losses import info_nce
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
        >>> queue = torch.randn(32, 16, generator=g)
        >>> info_nce(q, k, negatives=queue).shape
        torch.Size([])
        >>> info_nce(q, k, symmetric=True, reduction="none").shape
        torch.Size([8])
    """
    fn = "info_nce"
    t = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
    _checks.check_bool(fn, "symmetric", symmetric)
    _check_pair(fn, ("query", "key"), query, key, min_rows=1)
    b = int(query.shape[0])
    m = 0
    if negatives is not None:
        _checks.check_float(fn, "negatives", negatives)
        if negatives.dim() != 2:
            raise ValueError(
                f"{fn}: negatives must have shape (M, D); got {tuple(negatives.shape)}"
            )
        _checks.check_same_dim(fn, "negatives", negatives, "query", query)
        _checks.check_same_device(fn, "negatives", negatives, "query", query)
        _checks.check_same_dtype(fn, "negatives", negatives, "query", query)
        m = int(negatives.shape[0])
    if b < 2 and (m == 0 or symmetric):
        when = "when symmetric=True" if symmetric else "unless negatives are given"
        raise ValueError(
            f"{fn}: query must have at least 2 rows (B >= 2) {when}; got {tuple(query.shape)}"
        )
    q = _prepare(query, normalize)
    k = _prepare(key, normalize)
    cands = torch.cat([k, _prepare(negatives, normalize)]) if negatives is not None and m else k
    uniform = reduction != "none"
    per_row = _info_nce_rows(q, cands, t, chunk_size, uniform)
    if symmetric:
        per_row = 0.5 * (per_row + _info_nce_rows(k, q, t, chunk_size, uniform))
    return reduce_loss(per_row, reduction)


class InfoNCELoss(nn.Module):
    """Module form of :func:`info_nce` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> loss = InfoNCELoss(temperature=0.1, symmetric=True)
        >>> loss(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.07,
        symmetric: bool = False,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "InfoNCELoss"
        self.temperature = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
        self.symmetric = _checks.check_bool(fn, "symmetric", symmetric)
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Loss of ``query`` (B, D) against ``key`` (B, D) and optional ``negatives`` (M, D)."""
        return info_nce(
            query,
            key,
            negatives=negatives,
            temperature=self.temperature,
            symmetric=self.symmetric,
            normalize=self.normalize,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, symmetric={self.symmetric}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}, "
            f"chunk_size={self.chunk_size}"
        )


# --------------------------------------------------------------------------------------------
# NT-Xent
# --------------------------------------------------------------------------------------------


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    temperature: float = 0.5,
    normalize: bool = True,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """NT-Xent: SimCLR's normalised temperature-scaled cross-entropy over 2B views.

    Chen, Kornblith, Norouzi, Hinton. *A Simple Framework for Contrastive Learning of Visual
    Representations.* ICML 2020, arXiv 2002.05709.

    With ``z = cat([z1, z2])`` (2B, D), L2-normalised when ``normalize``, ``s(r, c) = z_r.z_c``,
    ``t = temperature`` and ``p(r) = (r + B) mod 2B`` the other view of the same sample::

        L_r = -s(r, p(r)) / t + log sum_{c != r} exp(s(r, c) / t)

    The denominator holds the positive and the 2B - 2 negatives (everything but the anchor
    itself). "mean" averages over all 2B anchors, as SimCLR does (and as
    pytorch-metric-learning's ``NTXentLoss`` does with labels ``cat([arange(B), arange(B)])``).

    Args:
        z1: (B, D) embeddings of the first view.
        z2: (B, D) embeddings of the second view; ``z2[i]`` is the positive of ``z1[i]``.
        temperature: t > 0 (SimCLR's default 0.5).
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
        >>> from posneg.losses import nt_xent
        >>> g = torch.Generator().manual_seed(0)
        >>> z1, z2 = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
        >>> nt_xent(z1, z2, reduction="none").shape
        torch.Size([16])
    """
    fn = "nt_xent"
    t = _check_hparams(fn, temperature, normalize, reduction, chunk_size)
    z, n = _two_views(fn, z1, z2, normalize)
    rows, pos = _two_view_rows(z, n, t)
    lse = row_logsumexp(
        rows, z, exclude_offsets=(0,), chunk_size=chunk_size, uniform_grad=reduction != "none"
    )
    return reduce_loss(lse - pos, reduction)


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> NTXentLoss(temperature=0.2)(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.5,
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.temperature = _check_hparams(
            "NTXentLoss", temperature, normalize, reduction, chunk_size
        )
        self.normalize = normalize
        self.reduction: Reduction = reduction
        self.chunk_size = chunk_size

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss of two views ``z1``, ``z2`` (B, D)."""
        return nt_xent(
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
