"""Retrieval metrics: MRR@10, nDCG@10 and Recall@k from a top-k search, never a full score matrix.

The ranking of every query comes from an :class:`~posneg.mining.index.Index` search (by default an
:class:`~posneg.mining.index.ExactIndex`, inner product, queries in chunks), so the memory is
O(query chunk x corpus chunk + Q x k) whatever the corpus size.

Definitions, for a query with relevant set R (corpus row indices) and ranked list d_1, d_2, ...
(rank r = 1 is the best score):

- ``mrr@10``: ``1 / r*`` with r* the rank of the first relevant document, 0 when none is in the
  top 10 (MS MARCO's MRR@10);
- ``ndcg@10``: binary gains, ``DCG = sum_{r<=10} [d_r in R] / log2(r + 1)`` divided by the ideal
  ``IDCG = sum_{r<=min(|R|, 10)} 1 / log2(r + 1)`` (Jarvelin and Kekalainen, TOIS 2002; the
  ``log2(r + 1)`` discount of TREC's trec_eval and BEIR);
- ``recall@k``: ``|R intersect {d_1..d_k}| / |R|``, the fraction of the query's relevant documents
  in its top k (BEIR's Recall@k).

Every metric is averaged over queries. Ties in score are broken as the index breaks them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from posneg import _checks
from posneg.mining.index import ExactIndex, Index

__all__ = ["retrieval_metrics"]

_FN = "retrieval_metrics"


def _check_relevant(relevant: object, n_queries: int, n_docs: int) -> tuple[torch.Tensor, ...]:
    """Validate ``relevant``; return (query index, doc index) pairs (deduplicated) and counts."""
    table = _checks.check_id_lists(_FN, "relevant", relevant, n_queries, num_ids=n_docs)
    valid = table >= 0
    return valid.nonzero()[:, 0], table[valid], valid.sum(dim=1)


def retrieval_metrics(
    query_emb: torch.Tensor,
    corpus_emb: torch.Tensor,
    relevant: Sequence[Sequence[int]],
    *,
    ks: Sequence[int] = (1, 10, 100),
    cutoff: int = 10,
    index: Index | None = None,
) -> dict[str, float]:
    """MRR@cutoff, nDCG@cutoff and Recall@k of ranking ``corpus_emb`` rows for each query.

    Scores are inner products ``query_emb @ corpus_emb.T`` (normalise the embeddings first for
    cosine), found by a top-``max(ks + [cutoff])`` search so no Q x N matrix is built. See the
    module docstring for the formulas (binary gains; ideal DCG over ``min(|R|, cutoff)`` ranks).

    Args:
        query_emb: (Q, D) query embeddings.
        corpus_emb: (N, D) corpus embeddings, same dtype and device.
        relevant: per query, the corpus row indices relevant to it (at least one each; repeated
            rows count once).
        ks: the cut-offs of Recall@k (each >= 1; k beyond N counts the whole corpus).
        cutoff: the cut-off of MRR and nDCG (10 gives the keys ``mrr@10`` and ``ndcg@10``).
        index: the index to search. ``None``: an inner-product :class:`ExactIndex` holding
            ``corpus_emb``. An empty index (``ntotal == 0``) receives ``corpus_emb``; an index
            already holding ``N`` rows is searched as is and must hold ``corpus_emb`` (row ids
            ``0..N-1``), e.g. a fixed document index reused across evaluations.

    Returns:
        ``{"mrr@10": ..., "ndcg@10": ..., "recall@1": ..., "recall@10": ..., "recall@100": ...}``
        (keys follow ``cutoff`` and ``ks``), each a float in [0, 1], averaged over queries.

    Raises:
        TypeError: non-tensor or non-floating embeddings, mismatched dtypes, ``relevant`` not a
            sequence of int sequences, non-int ``ks``/``cutoff``.
        ValueError: wrong ranks, no query or document, mismatched dimension or device, a query
            with no relevant row or a row outside the corpus, ``ks`` empty or < 1, an index
            holding a different number of rows.

    Example:
        >>> import torch
        >>> from posneg.mining.metrics import retrieval_metrics
        >>> docs = torch.eye(4)
        >>> queries = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.2, 1.0, 0.0]])
        >>> m = retrieval_metrics(queries, docs, [[0], [1]], ks=(1, 2))
        >>> m["mrr@10"], m["recall@1"], m["recall@2"]
        (0.75, 0.5, 1.0)
    """
    _checks.check_embeddings(_FN, "query_emb", query_emb, min_rows=1)
    _checks.check_embeddings(_FN, "corpus_emb", corpus_emb, min_rows=1)
    _checks.check_same_dim(_FN, "corpus_emb", corpus_emb, "query_emb", query_emb)
    _checks.check_same_device(_FN, "corpus_emb", corpus_emb, "query_emb", query_emb)
    _checks.check_same_dtype(_FN, "corpus_emb", corpus_emb, "query_emb", query_emb)
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or len(ks) == 0:
        raise ValueError(f"{_FN}: ks must be a non-empty sequence of ints >= 1; got {ks!r}")
    ks = [_checks.check_int(_FN, "ks", k, min_value=1) for k in ks]
    cutoff = _checks.check_int(_FN, "cutoff", cutoff, min_value=1)
    n_queries, n_docs = int(query_emb.shape[0]), int(corpus_emb.shape[0])
    q_idx, d_idx, counts = _check_relevant(relevant, n_queries, n_docs)

    if index is None:
        index = ExactIndex(metric="ip")
    if index.ntotal == 0:
        index.add(corpus_emb)
    elif index.ntotal != n_docs:
        raise ValueError(
            f"{_FN}: index holds {index.ntotal} rows but corpus_emb has {n_docs}; pass an empty "
            "index or one holding corpus_emb"
        )
    depth = min(max([*ks, cutoff]), n_docs)
    _, ids = index.search(query_emb, depth)
    ids = ids.to(device="cpu", dtype=torch.int64)

    # hits[q, r]: the document at rank r + 1 of query q is relevant (a set lookup on q * N + d)
    keys = q_idx * n_docs + d_idx
    rows = torch.arange(n_queries, dtype=torch.int64)[:, None]
    hits = torch.isin(torch.where(ids >= 0, rows * n_docs + ids, -1), keys)
    hits64 = hits.to(torch.float64)
    counts64 = counts.to(torch.float64)

    top = hits[:, :cutoff]
    ranks = torch.arange(1, top.shape[1] + 1, dtype=torch.float64)
    first = torch.where(top.any(dim=1), top.to(torch.int64).argmax(dim=1), -1)
    rr = torch.where(first >= 0, 1.0 / (first.to(torch.float64) + 1.0), 0.0)
    discount = 1.0 / torch.log2(ranks + 1.0)
    dcg = (top.to(torch.float64) * discount).sum(dim=1)
    ideal_discount = 1.0 / torch.log2(torch.arange(1, cutoff + 1, dtype=torch.float64) + 1.0)
    idcg = torch.cumsum(ideal_discount, 0)[counts.clamp(max=cutoff) - 1]
    out = {f"mrr@{cutoff}": float(rr.mean()), f"ndcg@{cutoff}": float((dcg / idcg).mean())}
    for k in ks:
        found = hits64[:, : min(k, depth)].sum(dim=1)
        out[f"recall@{k}"] = float((found / counts64).mean())
    return out
