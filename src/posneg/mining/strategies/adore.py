"""ADORE: query-side training against negatives retrieved dynamically from a fixed index.

The document index stays fixed; at every step the current query embeddings retrieve their top
``k`` (:func:`adore_candidates`), and the LambdaRank-style pairwise loss :func:`adore_loss`
weights each (relevant, non-relevant) pair of the retrieved list by the change in reciprocal
rank (delta-MRR) that swapping the two would cause (:func:`adore_weights`).
"""

from __future__ import annotations

from functools import partial
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, map_rows, reduce_loss
from posneg._types import Reduction
from posneg.mining.strategies._inputs import Positives, check_mask, positives_matrix
from posneg.mining.strategies.pairwise import CITATION

__all__ = [
    "CITATION",
    "ADORELoss",
    "adore_candidates",
    "adore_loss",
    "adore_weights",
    "candidate_scores",
]


class Searchable(Protocol):
    """What :func:`adore_candidates` needs of an index (``posneg.mining.index.Index`` has it)."""

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` (scores, ids) per query, ids -1 where the index holds fewer than k."""
        ...


def _check_ranks_relevant(
    fn: str, ranks: object, relevant: object
) -> tuple[torch.Tensor, torch.Tensor]:
    ranks = _checks.check_tensor(fn, "ranks", ranks)
    if ranks.dtype.is_floating_point or ranks.dtype == torch.bool or ranks.is_complex():
        raise TypeError(f"{fn}: ranks must be an integer tensor; got {ranks.dtype}")
    if ranks.dim() != 2 or ranks.shape[1] < 1:
        raise ValueError(
            f"{fn}: ranks must have shape (B, K) with K >= 1; got {tuple(ranks.shape)}"
        )
    rel = check_mask(fn, "relevant", relevant, tuple(ranks.shape), ranks.device)
    bad = (ranks < 1) & (ranks != -1)
    if bool(bad.any()):
        raise ValueError(
            f"{fn}: ranks must be 1-based (>= 1), or -1 for padding; got {int(ranks[bad][0])}"
        )
    return ranks, rel


def _check_metric_cut(fn: str, metric_cut: object) -> int | None:
    if metric_cut is None:
        return None
    return _checks.check_int(fn, "metric_cut", metric_cut, min_value=1)


def _weights(
    ranks: torch.Tensor, relevant: torch.Tensor, metric_cut: int | None, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Delta-MRR weights (R, K, K) and the pair mask (R, K, K) of (relevant i, non-relevant j)."""
    valid = ranks >= 1
    rr = torch.where(valid, 1.0 / ranks.clamp_min(1).to(dtype), torch.zeros((), dtype=dtype))
    if metric_cut is not None:
        rr = torch.where(ranks > metric_cut, torch.zeros((), dtype=dtype), rr)
    rel = relevant & valid
    non = ~relevant & valid
    pairs = rel[:, :, None] & non[:, None, :]
    w = (rr[:, :, None] - rr[:, None, :]).abs() * pairs.to(dtype)
    return w, pairs


def adore_weights(
    ranks: torch.Tensor,
    relevant: torch.Tensor,
    *,
    metric_cut: int | None = 200,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """ADORE's delta-MRR pair weights ``|1/rank_i - 1/rank_j|`` for (relevant i, non-relevant j).

    Zhan, Mao, Liu, Guo, Zhang, Ma. *Optimizing Dense Retrieval Model Training with Hard
    Negatives.* SIGIR 2021, arXiv 2104.08051 (official code: jingtaozhan/DRhard,
    ``adore/train.py``).

    With ``rr(r) = 1/r`` for ``r <= metric_cut`` and 0 beyond (DRhard's
    ``arr[metric_cut:] = 0`` on the 1-based rank list)::

        W[b, i, j] = |rr(ranks[b, i]) - rr(ranks[b, j])|   if relevant[b, i] and not relevant[b, j]
                   = 0                                     otherwise (and for padding)

    For a single relevant document at rank 1 and ``metric_cut >= K`` the weight of the
    non-relevant document at rank j is ``1 - 1/j``.

    Args:
        ranks: (B, K) integer 1-based ranks of the candidates in the retrieval order (as
            :func:`adore_candidates` returns them); -1 marks padding, which takes part in no
            pair.
        relevant: (B, K) bool, True where the candidate is relevant to the query.
        metric_cut: reciprocal ranks beyond this rank count as 0 (README: 200); ``None``: no
            cut. (DRhard's default ``None`` would zero every weight through
            ``arr[None:] = 0``; here ``None`` means no cut.)
        dtype: floating dtype of the weights.

    Returns:
        (B, K, K) weights, zero outside (relevant, non-relevant) pairs. Row i indexes the
        relevant document, column j the non-relevant one.

    Raises:
        TypeError: non-integer ranks, a non-bool mask, a non-int metric_cut.
        ValueError: shapes other than (B, K), ranks < 1 other than -1, metric_cut < 1.

    Example:
        >>> import torch
        >>> ranks = torch.arange(1, 5)[None]
        >>> relevant = torch.tensor([[True, False, False, False]])
        >>> adore_weights(ranks, relevant)[0, 0]
        tensor([0.0000, 0.5000, 0.6667, 0.7500])
    """
    fn = "adore_weights"
    ranks, rel = _check_ranks_relevant(fn, ranks, relevant)
    cut = _check_metric_cut(fn, metric_cut)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{fn}: dtype must be a floating torch.dtype; got {dtype!r}")
    return _weights(ranks, rel, cut, dtype)[0]


def _adore_block(
    start: int,
    stop: int,
    scores: torch.Tensor,
    ranks: torch.Tensor,
    relevant: torch.Tensor,
    *,
    metric_cut: int | None,
    sigma: float,
) -> torch.Tensor:
    s = scores[start:stop]
    w, pairs = _weights(ranks[start:stop], relevant[start:stop], metric_cut, s.dtype)
    cost = F.softplus(-sigma * (s[:, :, None] - s[:, None, :]))  # log(1 + e^{-sigma (s_i - s_j)})
    n_pairs = pairs.sum(dim=(1, 2)).clamp_min(1).to(s.dtype)
    return (w * cost).sum(dim=(1, 2)) / n_pairs


def adore_loss(
    scores: torch.Tensor,
    relevant: torch.Tensor,
    ranks: torch.Tensor,
    *,
    metric_cut: int | None = 200,
    sigma: float = 1.0,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """ADORE's LambdaRank-style loss over the retrieved list: delta-MRR-weighted pairwise logistic.

    Zhan, Mao, Liu, Guo, Zhang, Ma. *Optimizing Dense Retrieval Model Training with Hard
    Negatives.* SIGIR 2021, arXiv 2104.08051 (official code: jingtaozhan/DRhard,
    ``adore/train.py``).

    For query b, with ``s = scores[b]``, ``W`` the :func:`adore_weights` and ``P_b`` the number
    of (relevant, non-relevant) pairs among its non-padding candidates::

        L_b = 1/P_b * sum_{i relevant, j non-relevant} W[b, i, j] * log(1 + exp(-sigma (s_i - s_j)))

    DRhard sums ``C_pos`` over the (relevant, non-relevant) pairs and ``C_neg`` over the
    transposed pairs (the same terms again) and divides by ``2 * #positive-pairs``; the 2
    cancels, giving ``L_b`` above. The per-query losses are then summed and divided by the
    batch size: ``reduction="mean"`` is exactly that. ``P_b`` counts every pair, including
    those whose weight is 0 beyond ``metric_cut`` (as DRhard does). A query with no pair (no
    relevant or no non-relevant candidate; DRhard asserts this never happens) contributes 0
    and still counts in the batch mean.

    The weights use the ranks of the retrieval order, not a re-sort by ``scores`` (they agree
    at retrieval time; the gradient does not flow through the ranks).

    Args:
        scores: (B, K) current query-candidate scores (dot products with the fixed document
            embeddings: :func:`candidate_scores`); gradients flow through them.
        relevant: (B, K) bool, True where the candidate is relevant.
        ranks: (B, K) integer 1-based retrieval ranks; -1 marks padding (ignored).
        metric_cut: reciprocal ranks beyond it count as 0 (200 in the README); ``None``: no cut.
        sigma: RankNet scale (DRhard: 1).
        reduction: "mean" (over queries, DRhard's division by the batch size), "sum" or "none".
        chunk_size: queries per block (``None``: automatic; a block holds (rows, K, K) pairs).

    Returns:
        "mean"/"sum": a scalar; "none": (B,) the per-query ``L_b``. float16/bfloat16 scores
        compute and return float32.

    Raises:
        TypeError: non-floating scores, non-integer ranks, a non-bool mask.
        ValueError: shapes other than (B, K), mismatched devices, ranks < 1 other than -1,
            metric_cut < 1, sigma <= 0, a bad reduction or chunk_size.

    Example:
        >>> import torch
        >>> scores = torch.tensor([[3.0, 2.0, 1.0]], requires_grad=True)
        >>> relevant = torch.tensor([[False, True, False]])
        >>> ranks = torch.tensor([[1, 2, 3]])
        >>> loss = adore_loss(scores, relevant, ranks)
        >>> loss.backward()
        >>> bool(scores.grad[0, 1] < 0)  # the relevant document is pushed up
        True
    """
    fn = "adore_loss"
    _checks.check_float(fn, "scores", scores)
    if scores.dim() != 2:
        raise ValueError(f"{fn}: scores must have shape (B, K); got {tuple(scores.shape)}")
    ranks, rel = _check_ranks_relevant(fn, ranks, relevant)
    if ranks.shape != scores.shape:
        raise ValueError(
            f"{fn}: ranks must have shape {tuple(scores.shape)} like scores; "
            f"got {tuple(ranks.shape)}"
        )
    _checks.check_same_device(fn, "ranks", ranks, "scores", scores)
    cut = _check_metric_cut(fn, metric_cut)
    sg = _checks.check_positive(fn, "sigma", sigma)
    _checks.check_reduction(fn, reduction)
    _checks.check_chunk_size(fn, chunk_size)
    s = scores.to(compute_dtype(scores))
    b, k = s.shape
    block = partial(_adore_block, metric_cut=cut, sigma=sg)
    per_query = map_rows(block, b, k * k, s, ranks, rel, chunk_size=chunk_size)
    return reduce_loss(per_query, reduction)


def candidate_scores(
    query_emb: torch.Tensor, doc_emb: torch.Tensor, doc_ids: torch.Tensor
) -> torch.Tensor:
    """Dot products of each query with its candidate documents (ADORE's ``y_pred``).

    ``scores[b, c] = query_emb[b] . doc_emb[doc_ids[b, c]]``, 0 where ``doc_ids`` is -1.

    Args:
        query_emb: (B, D) current query embeddings (gradients flow through them).
        doc_emb: (N, D) the fixed document embeddings; ``doc_ids`` index its rows.
        doc_ids: (B, K) int64 candidate rows; -1 (padding) scores 0.

    Returns:
        (B, K) scores in ``query_emb``'s compute dtype (float32 for half inputs).

    Raises:
        TypeError: non-floating embeddings, mismatched dtypes, non-integer ids.
        ValueError: shapes, mismatched dimension or device, ids out of range.

    Example:
        >>> import torch
        >>> q, docs = torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
        >>> candidate_scores(q, docs, torch.tensor([[0, 2], [1, -1]]))
        tensor([[1., 1.],
                [2., 0.]])
    """
    fn = "candidate_scores"
    _checks.check_embeddings(fn, "query_emb", query_emb)
    _checks.check_embeddings(fn, "doc_emb", doc_emb)
    _checks.check_same_dim(fn, "doc_emb", doc_emb, "query_emb", query_emb)
    _checks.check_same_device(fn, "doc_emb", doc_emb, "query_emb", query_emb)
    _checks.check_same_dtype(fn, "doc_emb", doc_emb, "query_emb", query_emb)
    _checks.check_tensor(fn, "doc_ids", doc_ids)
    if doc_ids.dtype.is_floating_point or doc_ids.dtype == torch.bool:
        raise TypeError(f"{fn}: doc_ids must be an integer tensor; got {doc_ids.dtype}")
    if doc_ids.dim() != 2 or doc_ids.shape[0] != query_emb.shape[0]:
        raise ValueError(
            f"{fn}: doc_ids must have shape ({query_emb.shape[0]}, K); got {tuple(doc_ids.shape)}"
        )
    _checks.check_same_device(fn, "doc_ids", doc_ids, "query_emb", query_emb)
    n = doc_emb.shape[0]
    if bool(((doc_ids < -1) | (doc_ids >= n)).any()):
        raise ValueError(f"{fn}: doc_ids must be rows of doc_emb in [0, {n}) or -1 (padding)")
    dtype = compute_dtype(query_emb)
    docs = doc_emb.to(dtype)[doc_ids.clamp_min(0)]  # (B, K, D)
    scores = (docs * query_emb.to(dtype)[:, None, :]).sum(dim=2)
    return scores * (doc_ids >= 0).to(dtype)


def adore_candidates(
    index: Searchable,
    query_emb: torch.Tensor,
    k: int,
    positives: Positives,
    *,
    append: str = "if_none_retrieved",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Retrieve ADORE's candidate lists: the top ``k`` of a fixed index, positives appended.

    Zhan et al., SIGIR 2021, arXiv 2104.08051; DRhard ``adore/train.py``: for each query the
    top ``neg_topk`` (200) documents are retrieved with the current query embedding (detached);
    **if no positive was retrieved, all the query's positives are appended at the end of the
    list**, so every list has a relevant document. Appended positives take the ranks that
    follow the list, ``k + 1, k + 2, ...`` (DRhard's reciprocal-rank array is simply
    ``1 / arange(1, len + 1)``), in ascending id order. With ``append="missing"`` every
    positive that was not retrieved is appended, even when another one was (our option, not
    DRhard's).

    Lists of different lengths are padded to a common width ``K' = k + (most positives
    appended to one query)`` with id -1, rank -1, relevant False; ids -1 returned by the index
    (fewer than ``k`` documents) are padding too. :func:`adore_loss` ignores padding.

    Args:
        index: a document index with ``search(queries, k) -> (scores, ids)`` (for example
            ``posneg.mining.ExactIndex``); its ids must be the ids used in ``positives`` (row
            indices of the document embeddings when scoring with :func:`candidate_scores`).
        query_emb: (B, D) query embeddings (searched detached).
        k: number of documents to retrieve per query, >= 1.
        positives: per query, the ids of its relevant documents (>= 1 each): a sequence of id
            sequences or an int64 (B, P) tensor padded with -1.
        append: "if_none_retrieved" (DRhard) or "missing".

    Returns:
        ``(doc_ids, ranks, relevant)``: (B, K') int64 ids, (B, K') int64 1-based ranks, (B, K')
        bool, on ``query_emb``'s device.

    Raises:
        TypeError: non-floating queries, malformed positives.
        ValueError: k < 1, a query without positives, negative ids, an unknown ``append``.

    Example:
        >>> import torch
        >>> docs = torch.eye(4)
        >>> class Flat:  # any object with .search works; posneg.mining.ExactIndex does
        ...     def search(self, q, k):
        ...         return torch.topk(q @ docs.T, k, dim=1)
        >>> ids, ranks, rel = adore_candidates(Flat(), docs[:2] + 0.1 * docs[2], 2, [[1], [1]])
        >>> ids.tolist()  # query 0 missed its positive 1: appended at rank 3
        [[0, 2, 1], [1, 2, -1]]
        >>> ranks.tolist(), rel.tolist()
        ([[1, 2, 3], [1, 2, -1]], [[False, False, True], [True, False, False]])
    """
    fn = "adore_candidates"
    _checks.check_embeddings(fn, "query_emb", query_emb)
    _checks.check_int(fn, "k", k, min_value=1)
    _checks.check_choice(fn, "append", append, ("if_none_retrieved", "missing"))
    b = int(query_emb.shape[0])
    dev = query_emb.device
    pos = positives_matrix(fn, positives, b, device=dev)  # (B, P), -1 padded
    with torch.no_grad():
        _, ids = index.search(query_emb.detach(), k)
    ids = torch.as_tensor(ids).to(device=dev, dtype=torch.int64)
    if ids.dim() != 2 or ids.shape[0] != b:
        raise ValueError(f"{fn}: index.search returned ids of shape {tuple(ids.shape)}")
    got = ids >= 0
    ranks = torch.where(got, torch.arange(1, ids.shape[1] + 1, device=dev), -1)
    # membership of each retrieved id among the query's positives (P is small)
    match = (ids[:, :, None] == pos[:, None, :]) & (pos[:, None, :] >= 0) & got[:, :, None]
    relevant = match.any(dim=2)
    pos_valid = pos >= 0
    retrieved_pos = match.any(dim=1)  # (B, P)
    need = pos_valid & ~retrieved_pos
    if append == "if_none_retrieved":
        need &= ~relevant.any(dim=1, keepdim=True)
    n_app = need.sum(dim=1)
    width = int(n_app.max()) if b else 0
    if width == 0:
        return ids, ranks, relevant
    # move the positives to append to the front of each row (stable: ascending id order)
    order = torch.argsort((~need).to(torch.int8), dim=1, stable=True)[:, :width]
    app_ids = pos.gather(1, order)
    slot = torch.arange(width, device=dev)[None, :] < n_app[:, None]
    app_ids = torch.where(slot, app_ids, -1)
    app_ranks = torch.where(slot, k + 1 + torch.arange(width, device=dev)[None, :], -1)
    return (
        torch.cat([ids, app_ids], dim=1),
        torch.cat([ranks, app_ranks], dim=1),
        torch.cat([relevant, slot], dim=1),
    )


class ADORELoss(nn.Module):
    """Module form of :func:`adore_loss` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> loss = ADORELoss(metric_cut=10)
        >>> loss(torch.randn(2, 5), torch.eye(2, 5, dtype=torch.bool),
        ...      torch.arange(1, 6).repeat(2, 1)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        metric_cut: int | None = 200,
        sigma: float = 1.0,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "ADORELoss"
        self.metric_cut = _check_metric_cut(fn, metric_cut)
        self.sigma = _checks.check_positive(fn, "sigma", sigma)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)

    def forward(
        self, scores: torch.Tensor, relevant: torch.Tensor, ranks: torch.Tensor
    ) -> torch.Tensor:
        """Loss of candidate scores (B, K) with their relevance (B, K) and 1-based ranks (B, K)."""
        return adore_loss(
            scores,
            relevant,
            ranks,
            metric_cut=self.metric_cut,
            sigma=self.sigma,
            reduction=self.reduction,
            chunk_size=self.chunk_size,
        )

    def extra_repr(self) -> str:
        return (
            f"metric_cut={self.metric_cut}, sigma={self.sigma}, "
            f"reduction={self.reduction!r}, chunk_size={self.chunk_size}"
        )
