"""Exact top-k over a corpus sharded across ranks (``torch.distributed``), merged exactly.

Each rank holds a shard of the corpus: the rows whose global ids are ``shard_offset ..
shard_offset + len(shard) - 1``. :func:`sharded_topk` searches the queries against the local
shard with posneg's one exact top-k core (:func:`posneg._knn.topk_ip`'s block search, the one
behind :class:`~posneg.mining.index.ExactIndex`), gathers every rank's ``k`` candidates
(scores and global ids, ``world_size * Q * k`` entries: never the corpus) and keeps the best
``k`` of them by the single-process rule: score descending, ties to the smaller id. A global
top-k entry is in its own shard's top-k under that strict order, so the merge is exact: the
result equals one process searching the concatenated corpus with :class:`ExactIndex` (default
ids), padding included (``-1`` / ``-inf`` past the corpus size), on every rank.

Scores are compared in the dtype the block search keeps (float64 for float64 input, float32
otherwise) before the returned float32 cast, as :class:`ExactIndex` does; the two runs agree
bit for bit wherever the matrix product gives the same value for a (query, row) pair whatever
the block shape (always for exactly representable products such as small integers; for
general float data BLAS kernels may round differently, and only ties within that rounding can
then order differently).

:class:`ShardedIndex` puts this behind the :class:`~posneg.mining.index.Index` protocol, so
that :func:`posneg.mining.mine.mine` (and ``posneg mine``) can rank with it under ``torchrun``.

This module imports only torch and posneg internals.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import torch

from posneg import _checks, _knn
from posneg.distributed import _exchange_device, rank, world_size
from posneg.mining.index import GROUP, MAX_PADDED, _default_chunks, _normalize

__all__ = ["ShardedIndex", "shard_bounds", "sharded_topk"]

Metric = Literal["ip", "cosine"]
_METRICS = ("ip", "cosine")
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_OK, _VALUE_ERROR, _TYPE_ERROR = 0, 1, 2
#: Descriptor fields compared across ranks (index into the exchanged row, name for messages).
_AGREE = ((2, "dimension D"), (3, "dtype"), (4, "k"), (7, "metric"), (8, "gather_queries"))


def shard_bounds(n: int, world: int, r: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``r`` when ``n`` rows are split into ``world`` contiguous
    shards whose sizes differ by at most one (the first ``n % world`` shards one row longer)."""
    base, extra = divmod(n, world)
    start = r * base + min(r, extra)
    return start, start + base + (r < extra)


def _local_checks(
    fn: str, queries: Any, shard: Any, k: Any, offset: Any, metric: Any, gather: Any
) -> None:
    _checks.check_int(fn, "k", k, min_value=1)
    _checks.check_int(fn, "shard_offset", offset, min_value=0)
    _checks.check_choice(fn, "metric", metric, _METRICS)
    _checks.check_bool(fn, "gather_queries", gather)
    _checks.check_float(fn, "queries", queries)
    if queries.dim() != 2:
        raise ValueError(f"{fn}: queries must have shape (Q, D); got {tuple(queries.shape)}")
    _checks.check_float(fn, "shard", shard)
    if shard.dim() != 2:
        raise ValueError(f"{fn}: shard must have shape (N_r, D); got {tuple(shard.shape)}")
    _checks.check_same_dim(fn, "shard", shard, "queries", queries)
    _checks.check_same_dtype(fn, "shard", shard, "queries", queries)
    _checks.check_same_device(fn, "shard", shard, "queries", queries)
    _checks.check_finite(fn, "queries", queries)
    _checks.check_finite(fn, "shard", shard)


def _describe(
    err: Exception | None, queries: Any, shard: Any, k: Any, off: Any, metric: Any, gather: Any
) -> list[int]:
    if err is not None:
        code = _TYPE_ERROR if isinstance(err, TypeError) else _VALUE_ERROR
        return [code] + [-1] * 8
    return [
        _OK,
        int(queries.shape[0]),
        int(queries.shape[1]),
        _DTYPES.index(queries.dtype),
        int(k),
        int(off),
        int(shard.shape[0]),
        _METRICS.index(metric),
        int(bool(gather)),
    ]


def _agree(fn: str, rows: list[list[int]], err: Exception | None, me: int) -> None:
    """Raise on every rank when any rank's input is bad or the ranks disagree."""
    bad = [r for r, row in enumerate(rows) if row[0] != _OK]
    if err is not None:
        raise type(err)(f"{err} (this is rank {me}; ranks with bad input: {bad})")
    if bad:
        kind = TypeError if any(rows[r][0] == _TYPE_ERROR for r in bad) else ValueError
        raise kind(f"{fn}: the inputs on ranks {bad} are invalid (see the error on those ranks)")
    for col, what in _AGREE:
        values = [row[col] for row in rows]
        if any(v != values[0] for v in values):
            if col == 3:
                values = [str(_DTYPES[v]) for v in values]  # type: ignore[misc]
            elif col == 7:
                values = [_METRICS[v] for v in values]  # type: ignore[misc]
            raise ValueError(
                f"{fn}: every rank must pass the same {what}; got {values} by rank "
                f"(this is rank {me})"
            )
    if not rows[0][8]:
        qs = [row[1] for row in rows]
        if any(q != qs[0] for q in qs):
            raise ValueError(
                f"{fn}: every rank must pass the same queries (gather_queries=False); got "
                f"{qs} query rows by rank (pass gather_queries=True for per-rank queries)"
            )
    spans = sorted((row[5], row[5] + row[6], r) for r, row in enumerate(rows) if row[6])
    for (_, stop, r1), (start, _, r2) in itertools.pairwise(spans):
        if start < stop:
            raise ValueError(
                f"{fn}: the shards of ranks {min(r1, r2)} and {max(r1, r2)} overlap "
                f"(shard_offset + rows by rank: {[(row[5], row[6]) for row in rows]}); every "
                "global id must live on one rank"
            )


def _local_topk(
    q: torch.Tensor, shard: torch.Tensor, k: int, query_chunk: int | None, doc_chunk: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, positions) (Q, k) of the shard, values in the block search's dtype, padded
    with ``-inf`` / ``-1``."""
    n = int(shard.shape[0])
    if shard.device.type == "cpu":
        compute = torch.float64 if shard.dtype == torch.float64 else torch.float32
    else:
        compute = shard.dtype
    run = torch.float64 if compute == torch.float64 else torch.float32
    values = torch.full((q.shape[0], k), -math.inf, dtype=run, device=q.device)
    pos = torch.full((q.shape[0], k), -1, dtype=torch.int64, device=q.device)
    if n == 0 or q.shape[0] == 0:
        return values, pos
    kk = min(k, n)
    qdef, ddef = _default_chunks(shard.device)
    qchunk = query_chunk or qdef
    dchunk = min(-(-(doc_chunk or ddef) // GROUP) * GROUP, -(-n // GROUP) * GROUP)
    for q0 in range(0, q.shape[0], qchunk):
        q1 = min(q.shape[0], q0 + qchunk)
        v, p = _knn._topk_ip_block(q[q0:q1], shard, kk, dchunk, compute, GROUP)
        values[q0:q1, :kk], pos[q0:q1, :kk] = v, p
    return values, pos


def _merge(values: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` of (Q, C) candidates: value descending, ties to the smaller id, pads last."""
    key = ids.masked_fill(ids < 0, torch.iinfo(torch.int64).max)
    o = torch.sort(key, dim=1, stable=True).indices
    values, ids = values.gather(1, o), ids.gather(1, o)
    o = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return values.gather(1, o), ids.gather(1, o)


def sharded_topk(
    queries: torch.Tensor,
    shard: torch.Tensor,
    *,
    k: int,
    shard_offset: int,
    metric: Metric = "ip",
    gather_queries: bool = False,
    group: Any = None,
    query_chunk: int | None = None,
    doc_chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``k`` of the queries over every rank's shard of the corpus: (scores, ids).

    The result equals ``ExactIndex(metric=metric)`` holding the concatenated corpus (row
    ``shard_offset + i`` of the corpus is row ``i`` of that rank's shard) searched with the same
    queries: scores descending, ties to the smaller global id, ``-inf`` / ``-1`` past the
    corpus size (see the module docstring for when scores agree bit for bit).

    Args:
        queries: (Q, D). With ``gather_queries=False`` every rank passes the same queries and
            gets the results of all of them; with ``True`` each rank passes its own (Q_r, D)
            rows (Q_r may differ), every shard is searched with every rank's queries, and each
            rank gets the results of its own rows.
        shard: (N_r, D) this rank's corpus rows (N_r may be 0 on some ranks), same dtype and
            device as ``queries``.
        k: results per query (>= 1; past the corpus size the tail is padding, refused where
            ``Q * k`` would pass :data:`~posneg.mining.index.MAX_PADDED`).
        shard_offset: global id of the shard's first row (>= 0); shards must not overlap
            (gaps are allowed: ids are what the shards say).
        metric: ``"ip"`` or ``"cosine"`` (rows L2-normalised first).
        gather_queries: see ``queries``.
        group: process group (default: the world); one rank or no process group: a plain
            local search of ``shard`` with ids offset by ``shard_offset``.
        query_chunk: query rows per block (default as :class:`ExactIndex`).
        doc_chunk: shard rows per block (default as :class:`ExactIndex`).

    Returns:
        ``scores`` float32 (Q, k) and ``ids`` int64 (Q, k) on the queries' device; the same on
        every rank unless ``gather_queries``.

    Raises:
        TypeError: non-tensor or non-floating inputs, different dtypes, non-int ``k`` /
            ``shard_offset``, non-bool ``gather_queries``.
        ValueError: bad shapes, NaN/inf, ``k < 1``, ``shard_offset < 0``, unknown metric,
            devices that differ, ranks disagreeing on D, dtype, k, metric, ``gather_queries``
            or (without it) on the number of queries, overlapping shards, an empty corpus,
            too much padding. Every rank raises together (one small descriptor exchange comes
            first, whatever the input), so no rank is left waiting in a collective.

    Example:
        >>> import torch
        >>> corpus = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
        >>> scores, ids = sharded_topk(torch.tensor([[1.0, 0.0]]), corpus, k=2, shard_offset=0)
        >>> ids.tolist()  # one process: a plain exact search
        [[0, 2]]
    """
    fn = "sharded_topk"
    err: Exception | None = None
    try:
        _local_checks(fn, queries, shard, k, shard_offset, metric, gather_queries)
    except (TypeError, ValueError) as e:
        err = e
    world = world_size(group)
    me = rank(group)
    if world == 1 and err is not None:
        raise err
    mine = _describe(err, queries, shard, k, shard_offset, metric, gather_queries)
    if world > 1:
        device = _exchange_device(queries, group)
        desc = torch.tensor(mine, dtype=torch.int64, device=device)
        everyone = [torch.empty_like(desc) for _ in range(world)]
        torch.distributed.all_gather(everyone, desc, group=group)
        rows = [t.tolist() for t in everyone]
        _agree(fn, rows, err, me)
    else:
        rows = [mine]
    n_total = sum(row[6] for row in rows)
    q_sizes = [row[1] for row in rows] if gather_queries else [mine[1]]
    if n_total == 0:
        raise ValueError(f"{fn}: the corpus is empty: every rank's shard has 0 rows")
    if k > n_total and sum(q_sizes) * k > MAX_PADDED:
        raise ValueError(
            f"{fn}: k={k} exceeds the {n_total} rows of the corpus, and padding "
            f"{sum(q_sizes)} queries to k results would hold {sum(q_sizes) * k} entries "
            f"(at most {MAX_PADDED}); pass k <= {n_total}"
        )
    with torch.no_grad():
        q, d = queries.detach(), shard.detach()
        if metric == "cosine":
            q, d = _normalize(q), _normalize(d)
        if gather_queries and world > 1:
            q = _all_gather_rows(q, q_sizes, group)
        values, pos = _local_topk(q, d, k, query_chunk, doc_chunk)
        ids = torch.where(pos >= 0, pos + shard_offset, pos)
        if world > 1:
            values = torch.cat(_all_gather_same(values, world, group), dim=1)
            ids = torch.cat(_all_gather_same(ids, world, group), dim=1)
            values, ids = _merge(values, ids, k)
        if gather_queries and world > 1:
            start = sum(q_sizes[:me])
            values, ids = values[start : start + q_sizes[me]], ids[start : start + q_sizes[me]]
    return values.to(torch.float32), ids


def _all_gather_same(x: torch.Tensor, world: int, group: Any) -> list[torch.Tensor]:
    parts = [torch.empty_like(x) for _ in range(world)]
    torch.distributed.all_gather(parts, x.contiguous(), group=group)
    return parts


def _all_gather_rows(x: torch.Tensor, sizes: list[int], group: Any) -> torch.Tensor:
    """``cat`` of every rank's rows (row counts ``sizes``), padded for the transfer."""
    largest = max(sizes)
    padded = x
    if x.shape[0] < largest:
        padded = torch.cat([x, x.new_zeros((largest - x.shape[0], x.shape[1]))])
    parts = _all_gather_same(padded, len(sizes), group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


class ShardedIndex:
    """The :class:`~posneg.mining.index.Index` protocol over a corpus sharded across ranks.

    ``add`` takes the *whole* corpus (every rank passes the same rows, as
    :func:`posneg.mining.mine.mine` does) and keeps only this rank's contiguous shard
    (:func:`shard_bounds`); ``search`` runs :func:`sharded_topk` with the same queries on every
    rank and returns the same exact result everywhere (ids are corpus rows, as with
    :class:`ExactIndex` and default ids). Search time and score memory per rank shrink with the
    number of ranks; the corpus embeddings themselves are still computed by the caller.

    Args:
        metric: ``"ip"`` or ``"cosine"``.
        device: where the shard is kept (``None``: the added rows' device).
        group: process group (default: the world).

    Raises:
        ValueError: unknown metric.
    """

    def __init__(
        self,
        *,
        metric: Metric = "ip",
        device: torch.device | str | None = None,
        group: Any = None,
    ) -> None:
        self.metric: Metric = _checks.check_choice("ShardedIndex", "metric", metric, _METRICS)  # type: ignore[assignment]
        self.device = None if device is None else torch.device(device)
        self.group = group
        self._shard: torch.Tensor | None = None
        self._offset = 0
        self._n = 0

    def __repr__(self) -> str:
        return (
            f"ShardedIndex(metric={self.metric!r}, device={self.device}, ntotal={self.ntotal}, "
            f"shard_offset={self._offset})"
        )

    @property
    def ntotal(self) -> int:
        """Rows of the whole corpus (every rank's shard together)."""
        return self._n

    def add(self, embeddings: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Keep this rank's shard of ``embeddings`` (N, D), the whole corpus; ids must be None.

        Raises:
            ValueError: ``ids`` given, rows already added, bad shapes or NaN/inf.
            TypeError: non-float embeddings.
        """
        fn = "ShardedIndex.add"
        if ids is not None:
            raise ValueError(f"{fn}: ids must be None (ids are corpus rows); got a tensor")
        if self._shard is not None:
            raise ValueError(f"{fn}: the corpus was already added; build a new ShardedIndex")
        _checks.check_embeddings(fn, "embeddings", embeddings)
        _checks.check_finite(fn, "embeddings", embeddings)
        n = int(embeddings.shape[0])
        start, stop = shard_bounds(n, world_size(self.group), rank(self.group))
        shard = embeddings.detach()[start:stop]
        self._shard = shard if self.device is None else shard.to(self.device)
        self._offset, self._n = start, n

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-``k`` (scores, ids) of each query over the whole corpus (a collective).

        Raises:
            ValueError: empty index, and what :func:`sharded_topk` raises.
        """
        if self._shard is None:
            raise ValueError("ShardedIndex.search: the index is empty; call add() first")
        _checks.check_tensor("ShardedIndex.search", "queries", queries)
        scores, ids = sharded_topk(
            queries.to(self._shard.device),
            self._shard,
            k=k,
            shard_offset=self._offset,
            metric=self.metric,
            group=self.group,
        )
        return scores.to(queries.device), ids.to(queries.device)
