"""Rand-Neg: DRhard's random-negative baseline, random documents only, pairwise logistic loss.

DRhard's ``model.py::randneg_train`` scores each query's positive against random corpus
documents and nothing else: unlike :func:`~posneg.mining.strategies.star.star_loss` it has no
in-batch pairs. Every random document of the batch is a negative of every query (the documents
drawn for all queries are stacked, as DRhard reshapes ``other_doc_ids`` to one list), pairs whose
document is relevant to the query are masked, and the loss is the mean of the pairwise logistic
loss over the unmasked pairs.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, map_rows
from posneg._types import Reduction
from posneg.mining.strategies._inputs import check_mask
from posneg.mining.strategies.pairwise import CITATION
from posneg.mining.strategies.star import reduce_pairs

__all__ = ["CITATION", "RandNegLoss", "rand_neg_loss"]


def _rand_block(
    start: int,
    stop: int,
    q: torch.Tensor,
    p: torch.Tensor,
    r: torch.Tensor,
    relevant: torch.Tensor,
    *,
    temperature: float,
) -> torch.Tensor:
    """Per-query sum of the unmasked (query, random document) pair losses of rows ``start:stop``.

    ``relevant`` may have 0 columns (no mask).
    """
    qb = q[start:stop]
    pos = (qb * p[start:stop]).sum(dim=1, keepdim=True) / temperature
    loss = F.softplus(qb @ r.T / temperature - pos)  # (R, M)
    if relevant.shape[1]:
        loss = loss * (~relevant[start:stop]).to(loss.dtype)
    return loss.sum(dim=1)


def rand_neg_loss(
    query: torch.Tensor,
    pos_doc: torch.Tensor,
    rand_doc: torch.Tensor,
    *,
    rand_relevant: torch.Tensor | None = None,
    temperature: float = 1.0,
    normalize: bool = False,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Rand-Neg loss: pairwise logistic of each query's positive against the batch's random docs.

    Zhan, Mao, Liu, Guo, Zhang, Ma. *Optimizing Dense Retrieval Model Training with Hard
    Negatives.* SIGIR 2021, arXiv 2104.08051: the "Rand-Neg" baseline (MS MARCO dev MRR@10 0.301
    in the DRhard README, against 0.264 for "Inbatch-Neg" and 0.340 for STAR). Official code:
    jingtaozhan/DRhard, commit 15e22359e70bccfb0b7b5ddf9c050161efc93607, ``model.py::
    randneg_train`` with ``dataset.py::TrainInbatchWithRandDataset`` (``rand_num`` documents per
    query by ``random.sample(range(len(corpus)), rand_num)``) and the ``hard_pair_mask`` of
    ``triple_get_collate_function``.

    With ``q_i = query[i]``, ``d_i = pos_doc[i]`` (query i's positive), ``r_m = rand_doc[m]``
    (the random documents of the whole batch stacked, M = B * rand_num in DRhard),
    ``s(a, b) = a.b / temperature`` and ``l(x) = log(1 + exp(x))``::

        R = {(i, m): not rand_relevant[i, m]}
        L = sum_{(i,m) in R} l(s(q_i, r_m) - s(q_i, d_i)) / |R|

    Only random pairs: there are no in-batch pairs (the other queries' positives are not
    negatives), which is what tells Rand-Neg from :func:`~posneg.mining.strategies.star.
    star_loss` given random documents as ``hard_doc`` (that is in-batch plus random negatives,
    a combination DRhard does not train). Draw the documents with
    :func:`~posneg.mining.strategies.refresh.random_negatives` (uniform, never one of the
    query's own positives; DRhard draws from the whole corpus and masks a relevant draw through
    ``hard_pair_mask``, so here a draw that would hit the query's positive is replaced by
    another document instead of dropping the pair), and mark in ``rand_relevant`` the documents
    relevant to *other* queries of the batch, as DRhard's mask does.

    Scores are raw dot products by default (``normalize=False``, ``temperature=1``), as in
    DRhard; ``normalize=True`` scores by cosine (then a temperature below 1 is advisable). The
    temperature is our addition (1.0 reproduces DRhard).

    Args:
        query: (B, D) query embeddings.
        pos_doc: (B, D) document embeddings; row i is the positive of query i.
        rand_doc: (M, D) random documents of the batch, M >= 1; each is a negative of every
            query.
        rand_relevant: (B, M) bool, True where ``rand_doc[m]`` is relevant to query i (the pair
            is dropped); ``None``: none is relevant.
        temperature: scores are divided by it, > 0 (1.0: DRhard).
        normalize: L2-normalise query and documents first (cosine scores).
        reduction: "mean" (over unmasked pairs, DRhard's), "sum" or "none".
        chunk_size: query rows per block (``None``: automatic, bounded memory).

    Returns:
        "mean"/"sum": a scalar; "none": (B,) the per-query *sum* of its unmasked pair losses (so
        its sum equals reduction "sum"). float16/bfloat16 inputs compute and return float32.
        When every pair is masked the loss is 0, connected to the graph (zero gradients), and a
        ``RuntimeWarning`` is issued.

    Raises:
        TypeError: non-tensor or non-floating embeddings, mismatched dtypes, a non-bool mask or
            ``normalize``.
        ValueError: wrong ranks or shapes, M = 0, mismatched dimension or device, a mask of the
            wrong shape, temperature <= 0, a bad reduction or chunk_size.

    Example:
        >>> import torch
        >>> from posneg.mining.strategies.refresh import random_negatives
        >>> g = torch.Generator().manual_seed(0)
        >>> corpus = torch.randn(20, 8, generator=g)
        >>> positives = torch.tensor([[0], [1], [2], [3]])
        >>> ids = random_negatives(4, 20, 2, positives, generator=g).reshape(-1)  # (8,)
        >>> relevant = ids[None, :] == positives  # a draw that is another query's positive
        >>> q = torch.randn(4, 8, generator=g)
        >>> rand_neg_loss(q, corpus[:4], corpus[ids], rand_relevant=relevant).shape
        torch.Size([])
    """
    fn = "rand_neg_loss"
    t = _checks.check_positive(fn, "temperature", temperature)
    _checks.check_bool(fn, "normalize", normalize)
    _checks.check_reduction(fn, reduction)
    _checks.check_chunk_size(fn, chunk_size)
    _checks.check_embeddings(fn, "query", query)
    _checks.check_embeddings(fn, "pos_doc", pos_doc)
    _checks.check_same_device(fn, "pos_doc", pos_doc, "query", query)
    _checks.check_same_dtype(fn, "pos_doc", pos_doc, "query", query)
    _checks.check_same_shape(fn, "pos_doc", pos_doc, "query", query)
    _checks.check_float(fn, "rand_doc", rand_doc)
    if rand_doc.dim() != 2 or rand_doc.shape[0] < 1:
        raise ValueError(
            f"{fn}: rand_doc must have shape (M, D) with M >= 1; got {tuple(rand_doc.shape)}"
        )
    _checks.check_same_dim(fn, "rand_doc", rand_doc, "query", query)
    _checks.check_same_device(fn, "rand_doc", rand_doc, "query", query)
    _checks.check_same_dtype(fn, "rand_doc", rand_doc, "query", query)
    b, m = int(query.shape[0]), int(rand_doc.shape[0])
    dev = query.device
    count: torch.Tensor | int = b * m
    if rand_relevant is not None:
        check_mask(fn, "rand_relevant", rand_relevant, (b, m), dev)
        count = b * m - rand_relevant.sum()
    dtype = compute_dtype(query)

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype)
        return F.normalize(x, dim=1) if normalize else x

    empty = torch.zeros((b, 0), dtype=torch.bool, device=dev)
    per_query = map_rows(
        partial(_rand_block, temperature=t),
        b,
        m,
        prep(query),
        prep(pos_doc),
        prep(rand_doc),
        rand_relevant if rand_relevant is not None else empty,
        chunk_size=chunk_size,
    )
    return reduce_pairs(
        fn,
        per_query,
        count,
        reduction,
        "no random document is a negative of any query",
        stacklevel=3,
    )


class RandNegLoss(nn.Module):
    """Module form of :func:`rand_neg_loss` (DRhard's Rand-Neg; stateless, see it for shapes).

    Example:
        >>> import torch
        >>> loss = RandNegLoss()
        >>> loss(torch.randn(4, 8), torch.randn(4, 8), torch.randn(6, 8)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 1.0,
        normalize: bool = False,
        reduction: Reduction = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        fn = "RandNegLoss"
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.normalize = _checks.check_bool(fn, "normalize", normalize)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)

    def forward(
        self,
        query: torch.Tensor,
        pos_doc: torch.Tensor,
        rand_doc: torch.Tensor,
        rand_relevant: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of queries (B, D), their positives (B, D) and the batch's random docs (M, D)."""
        return rand_neg_loss(
            query,
            pos_doc,
            rand_doc,
            rand_relevant=rand_relevant,
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
