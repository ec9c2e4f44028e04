"""STAR: static hard negatives plus in-batch random negatives, relevant pairs masked.

The training objective of STAR (Stable Training Algorithm for dense Retrieval), written as a
per-row block run through :func:`posneg._tiling.map_rows`: each block scores its queries against
the batch's positive documents (in-batch "random" negatives) and against every hard negative in
the batch, masks the pairs that are relevant and sums the pairwise logistic losses. Without hard
negatives it is DRhard's in-batch baseline ("Inbatch-Neg", ``inbatch_train`` without
``other_doc_ids``). With random documents as ``hard_doc`` it is in-batch *plus* random
negatives, which is not DRhard's "Rand-Neg": that baseline (``randneg_train``) uses the random
pairs only; see :func:`~posneg.mining.strategies.randneg.rand_neg_loss`.
"""

from __future__ import annotations

import warnings
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from posneg import _checks
from posneg._tiling import compute_dtype, map_rows, reduce_loss
from posneg._types import Reduction
from posneg.mining.strategies._inputs import check_mask
from posneg.mining.strategies.pairwise import CITATION

__all__ = ["CITATION", "STARLoss", "star_loss"]


def _star_block(
    start: int,
    stop: int,
    q: torch.Tensor,
    p: torch.Tensor,
    h: torch.Tensor,
    relevant: torch.Tensor,
    hard_relevant: torch.Tensor,
    *,
    temperature: float,
) -> torch.Tensor:
    """Per-query sum of the unmasked pair losses of rows ``start:stop`` (R,).

    ``h`` may have 0 rows; ``relevant``/``hard_relevant`` may have 0 columns (no mask).
    """
    qb = q[start:stop]
    rows = torch.arange(start, stop, device=q.device)
    pos = (qb * p[start:stop]).sum(dim=1, keepdim=True) / temperature
    la = F.softplus(qb @ p.T / temperature - pos)  # (R, B): in-batch pairs
    keep = torch.ones_like(la, dtype=torch.bool)
    keep[torch.arange(stop - start, device=q.device), rows] = False  # own positive
    if relevant.shape[1]:
        keep &= ~relevant[start:stop]
    total = (la * keep.to(la.dtype)).sum(dim=1)
    if h.shape[0]:
        lb = F.softplus(qb @ h.T / temperature - pos)  # (R, H): every hard negative
        if hard_relevant.shape[1]:
            lb = lb * (~hard_relevant[start:stop]).to(lb.dtype)
        total = total + lb.sum(dim=1)
    return total


def star_loss(
    query: torch.Tensor,
    pos_doc: torch.Tensor,
    hard_doc: torch.Tensor | None = None,
    *,
    relevant: torch.Tensor | None = None,
    hard_relevant: torch.Tensor | None = None,
    temperature: float = 1.0,
    normalize: bool = False,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """STAR loss: pairwise logistic over in-batch and hard negatives, relevant pairs masked.

    Zhan, Mao, Liu, Guo, Zhang, Ma. *Optimizing Dense Retrieval Model Training with Hard
    Negatives.* SIGIR 2021, arXiv 2104.08051 (official code: jingtaozhan/DRhard,
    ``model.py::inbatch_train`` with the masks of ``dataset.py``).

    With ``q_i = query[i]``, ``d_j = pos_doc[j]`` (``d_i`` is query i's positive),
    ``h_m = hard_doc[m]``, ``s(a, b) = a.b / temperature`` and ``l(x) = log(1 + exp(x))``::

        A = {(i, j): j != i and not relevant[i, j]}           (in-batch "random" negatives)
        H = {(i, m): not hard_relevant[i, m]}                 (every hard negative, every query)
        L = ( sum_{(i,j) in A} l(s(q_i, d_j) - s(q_i, d_i))
            + sum_{(i,m) in H} l(s(q_i, h_m) - s(q_i, d_i)) ) / (|A| + |H|)

    one mean over all unmasked pairs of both groups jointly, as DRhard computes
    ``(first_loss + second_loss) / (first_num + second_num)``. Every hard negative of the batch
    (typically one per query, sampled from a warm-up model's top 200 with positives removed) is a
    negative of every query, not only of the query it was mined for.

    Scores are raw dot products by default (``normalize=False``, ``temperature=1``), as in DRhard,
    whose encoders end in a LayerNorm and score by inner product. ``normalize=True`` scores by
    cosine (then a temperature below 1 is advisable); the temperature is our addition
    (DRhard has none; 1.0 reproduces it).

    Masks: DRhard passes ``rel_pair_mask = 1 - relevant`` (1 = keep); here ``relevant`` is True
    where the pair is *dropped*. The diagonal (each query's own positive) is always dropped from
    the in-batch group whatever ``relevant[i, i]`` says.

    Args:
        query: (B, D) query embeddings.
        pos_doc: (B, D) document embeddings; row i is a positive of query i.
        hard_doc: (H, D) hard-negative document embeddings of the batch, or ``None`` (in-batch
            negatives only: DRhard's "Inbatch-Neg" training, pairwise logistic loss). Random
            documents here do not give DRhard's "Rand-Neg" (which has no in-batch pairs; use
            :func:`~posneg.mining.strategies.randneg.rand_neg_loss`).
        relevant: (B, B) bool, ``relevant[i, j]`` True when ``pos_doc[j]`` is relevant to query
            i (for example two queries sharing a positive); ``None``: only the diagonal.
        hard_relevant: (B, H) bool, True when ``hard_doc[m]`` is relevant to query i;
            ``None``: no hard negative is relevant. Needs ``hard_doc``.
        temperature: scores are divided by it, > 0 (1.0: DRhard).
        normalize: L2-normalise query and documents first (cosine scores).
        reduction: "mean" (joint mean over unmasked pairs), "sum" (sum over unmasked pairs) or
            "none".
        chunk_size: query rows per block (``None``: automatic, bounded memory).

    Returns:
        "mean"/"sum": a scalar; "none": (B,) the per-query *sum* of its unmasked pair losses (so
        its sum equals reduction "sum", and "mean" is that sum divided by the number of
        unmasked pairs). float16/bfloat16 inputs compute and return float32.

        When every pair is masked (possible only if all documents are relevant to all queries,
        or B = 1 without hard negatives) the loss is 0, connected to the graph (zero
        gradients), and a ``RuntimeWarning`` is issued.

    Raises:
        TypeError: non-tensor or non-floating embeddings, mismatched dtypes, non-bool masks or
            ``normalize``.
        ValueError: wrong ranks or shapes, mismatched dimension or device, masks of the wrong
            shape, ``hard_relevant`` without ``hard_doc``, temperature <= 0, a bad reduction or
            chunk_size.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> q, d, h = (torch.randn(4, 8, generator=g) for _ in range(3))
        >>> relevant = torch.zeros(4, 4, dtype=torch.bool)
        >>> relevant[0, 1] = True  # query 0 and query 1 share a relevant document
        >>> star_loss(q, d, h, relevant=relevant).shape
        torch.Size([])
    """
    fn = "star_loss"
    t = _checks.check_positive(fn, "temperature", temperature)
    _checks.check_bool(fn, "normalize", normalize)
    _checks.check_reduction(fn, reduction)
    _checks.check_chunk_size(fn, chunk_size)
    _checks.check_embeddings(fn, "query", query)
    _checks.check_embeddings(fn, "pos_doc", pos_doc)
    _checks.check_same_device(fn, "pos_doc", pos_doc, "query", query)
    _checks.check_same_dtype(fn, "pos_doc", pos_doc, "query", query)
    _checks.check_same_shape(fn, "pos_doc", pos_doc, "query", query)
    b = int(query.shape[0])
    dev = query.device
    n_hard = 0
    if hard_doc is not None:
        _checks.check_float(fn, "hard_doc", hard_doc)
        if hard_doc.dim() != 2:
            raise ValueError(f"{fn}: hard_doc must have shape (H, D); got {tuple(hard_doc.shape)}")
        _checks.check_same_dim(fn, "hard_doc", hard_doc, "query", query)
        _checks.check_same_device(fn, "hard_doc", hard_doc, "query", query)
        _checks.check_same_dtype(fn, "hard_doc", hard_doc, "query", query)
        n_hard = int(hard_doc.shape[0])
    elif hard_relevant is not None:
        raise ValueError(f"{fn}: hard_relevant was given without hard_doc")
    empty = torch.zeros((b, 0), dtype=torch.bool, device=dev)
    n_pairs = b * (b - 1) + b * n_hard
    host_count = True
    if relevant is not None:
        check_mask(fn, "relevant", relevant, (b, b), dev)
        off_diag = relevant.sum() - relevant.diagonal().sum()
        host_count = False
    if hard_relevant is not None:
        check_mask(fn, "hard_relevant", hard_relevant, (b, n_hard), dev)
        host_count = False
    dtype = compute_dtype(query)

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.to(dtype)
        return F.normalize(x, dim=1) if normalize else x

    q, p = prep(query), prep(pos_doc)
    h = prep(hard_doc) if hard_doc is not None else q.new_zeros((0, q.shape[1]))
    block = partial(_star_block, temperature=t)
    per_query = map_rows(
        block,
        b,
        b + n_hard,
        q,
        p,
        h,
        relevant if relevant is not None else empty,
        hard_relevant if hard_relevant is not None else empty,
        chunk_size=chunk_size,
    )
    if host_count:
        count: torch.Tensor | int = n_pairs
    else:
        masked = off_diag if relevant is not None else 0
        if hard_relevant is not None:
            masked = masked + hard_relevant.sum()
        count = n_pairs - masked
    return reduce_pairs(
        fn, per_query, count, reduction, "no negative is left for any query", stacklevel=3
    )


def reduce_pairs(
    fn: str,
    per_query: torch.Tensor,
    count: torch.Tensor | int,
    reduction: Reduction,
    why_empty: str,
    *,
    stacklevel: int = 2,
) -> torch.Tensor:
    """Reduce per-query sums of pair losses: ``mean`` divides by the ``count`` unmasked pairs
    (the joint mean of DRhard's pairwise losses), other reductions go to :func:`reduce_loss`.

    Warns (``RuntimeWarning``, naming ``fn`` and ``why_empty``) when every pair is masked; the
    loss is then 0 with the graph kept."""
    if int(count) == 0:
        warnings.warn(
            f"{fn}: every pair is masked ({why_empty}); the loss is 0",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    if reduction == "mean":
        if isinstance(count, int):
            return per_query.sum() / max(count, 1)
        return per_query.sum() / count.clamp_min(1).to(per_query.dtype)
    return reduce_loss(per_query, reduction)


class STARLoss(nn.Module):
    """Module form of :func:`star_loss` (stateless; see it for the formula and shapes).

    Example:
        >>> import torch
        >>> loss = STARLoss()
        >>> loss(torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)).shape
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
        fn = "STARLoss"
        self.temperature = _checks.check_positive(fn, "temperature", temperature)
        self.normalize = _checks.check_bool(fn, "normalize", normalize)
        self.reduction: Reduction = _checks.check_reduction(fn, reduction)
        self.chunk_size = _checks.check_chunk_size(fn, chunk_size)

    def forward(
        self,
        query: torch.Tensor,
        pos_doc: torch.Tensor,
        hard_doc: torch.Tensor | None = None,
        relevant: torch.Tensor | None = None,
        hard_relevant: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Loss of queries (B, D), their positives (B, D) and the batch's hard negatives (H, D)."""
        return star_loss(
            query,
            pos_doc,
            hard_doc,
            relevant=relevant,
            hard_relevant=hard_relevant,
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
