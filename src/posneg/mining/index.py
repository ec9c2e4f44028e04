"""Nearest-neighbour indexes for mining: one small protocol, an exact chunked index and faiss.

An index holds corpus embeddings and answers top-k inner-product (or cosine) queries:

- :class:`Index` is the protocol every miner and metric codes against: ``add(embeddings, ids)``,
  ``search(queries, k) -> (scores, ids)`` and ``ntotal``.
- :class:`ExactIndex` is exact top-k by blocked matrix products in torch, on any device and dtype,
  through posneg's one exact top-k core (:func:`posneg._knn.topk_ip`, shared with the
  over-samplers' neighbour search). It never holds more than one ``(query_chunk, doc_chunk)``
  block of scores plus the running ``(query_chunk, k)`` top-k, and it avoids ``torch.topk`` over
  wide rows (slow on CPU): each block is reduced to the maxima of groups of :data:`GROUP` columns;
  only groups whose maximum beats the running k-th best score of the row are looked at element by
  element, and the few survivors are buffered and merged into the running top-k now and then
  (:class:`posneg._knn.RunningTopK`). On random-like data the selection costs a small fraction of
  the matrix product.
- :class:`FaissIndex` wraps faiss-cpu's flat (``IndexFlatIP``) and IVF (``IndexIVFFlat``) indexes
  behind the same protocol (faiss is imported only when one is built).

Common contract of ``search``:

- ``scores`` is ``(Q, k)`` float32, descending along each row; ``ids`` is ``(Q, k)`` int64.
- When ``k`` exceeds ``ntotal`` (or an IVF search finds fewer than ``k``), the missing tail has id
  ``-1`` and score ``-inf`` (faiss' own ``-FLT_MAX`` pad is rewritten to ``-inf``). Such padding
  is bounded: a ``k`` beyond ``ntotal`` with ``Q * k`` over :data:`MAX_PADDED` (2^26 entries,
  about 800 MB of results that would be almost all padding) is refused with a ``ValueError``
  instead of allocated (``k=10**12`` would ask for terabytes). ``k <= ntotal`` is never refused.
- Ids are int64 in ``[0, 2^63 - 1]``; ``add(ids=None)`` numbers new rows after the largest id
  held and refuses (``ValueError``) when that numbering would pass ``2^63 - 1``.
- Ties: :class:`ExactIndex` orders by score descending, then id ascending, and picks the lowest ids
  when a tie straddles the k-th place, so its output is fully deterministic. faiss' order among
  equal scores is its own; :class:`FaissIndex` re-sorts each returned row by (score desc, id asc)
  but which of several tied items at the k-th place are returned is faiss' choice.

Example:
    >>> import torch
    >>> from posneg.mining.index import ExactIndex
    >>> corpus = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> index = ExactIndex(metric="ip")
    >>> index.add(corpus)
    >>> scores, ids = index.search(torch.tensor([[1.0, 0.0]]), k=2)
    >>> ids.tolist(), scores.tolist()
    ([[0, 2]], [[1.0, 0.6000000238418579]])
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from posneg import _checks, _knn

__all__ = ["GROUP", "MAX_PADDED", "ExactIndex", "FaissIndex", "Index"]

Metric = Literal["ip", "cosine"]
_METRICS = ("ip", "cosine")

#: Columns per group whose maximum is compared with the running k-th best score.
GROUP = 64


@runtime_checkable
class Index(Protocol):
    """What a miner needs from a nearest-neighbour index.

    ``add`` appends rows (ids default to consecutive integers after the rows already held);
    ``search`` returns ``(scores, ids)``: ``(Q, k)`` float32 scores in descending order and int64
    ids, ``-1`` (score ``-inf``) where fewer than ``k`` items exist.
    """

    def add(self, embeddings: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Append ``embeddings`` (N, D) under ``ids`` (N,) int64 (default: the next N integers)."""
        ...

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` (scores, ids) of each query row."""
        ...

    @property
    def ntotal(self) -> int:
        """Number of rows held."""
        ...


# ---------------------------------------------------------------------------------------------
# shared validation
# ---------------------------------------------------------------------------------------------


def _check_ids(fn: str, ids: Any, n: int, existing: torch.Tensor | None) -> torch.Tensor:
    """int64 (n,) ids, unique and not already held; returned on CPU."""
    _checks.check_tensor(fn, "ids", ids)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.is_complex():
        raise TypeError(f"{fn}: ids must be an integer tensor; got {ids.dtype}")
    if ids.dim() != 1 or ids.shape[0] != n:
        raise ValueError(
            f"{fn}: ids must have shape ({n},) matching embeddings; got {tuple(ids.shape)}"
        )
    out = ids.detach().to(device="cpu", dtype=torch.int64)
    if n and int(out.min()) < 0:
        raise ValueError(
            f"{fn}: ids must be >= 0 (-1 marks a missing result); got {int(out.min())}"
        )
    both = out if existing is None else torch.cat([existing, out])
    if both.unique().numel() != both.numel():
        raise ValueError(f"{fn}: ids must be unique (also across add calls)")
    return out


#: Most (query, result) entries a search pads beyond ``ntotal`` (``Q * k``, 12 bytes each).
MAX_PADDED = 1 << 26

#: Largest id an index can hold (int64).
MAX_ID = (1 << 63) - 1


def _check_k(fn: str, k: Any, n_queries: int, ntotal: int) -> int:
    """``k >= 1``; beyond ``ntotal`` (padding) only while ``Q * k <= MAX_PADDED``."""
    k = _checks.check_int(fn, "k", k, min_value=1)
    if k > ntotal and n_queries * k > MAX_PADDED:
        raise ValueError(
            f"{fn}: k={k} exceeds the {ntotal} rows held, and padding {n_queries} queries to k "
            f"results would hold {n_queries * k} entries (at most {MAX_PADDED}); "
            f"pass k <= ntotal ({ntotal})"
        )
    return k


def _default_ids(fn: str, next_id: int, n: int) -> torch.Tensor:
    """The ids ``next_id .. next_id + n - 1``, refused where they would pass the int64 range."""
    if n and next_id + n - 1 > MAX_ID:
        raise ValueError(
            f"{fn}: ids=None would number the new rows from {next_id}, past the largest int64 "
            f"id {MAX_ID} (an earlier add used ids up to {next_id - 1}); pass ids explicitly"
        )
    if n == 0:
        return torch.empty(0, dtype=torch.int64)
    return torch.arange(n, dtype=torch.int64) + next_id  # the end next_id + n may be 2^63


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm (norms of float16/bfloat16 computed in float32)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return F.normalize(x.float(), dim=1).to(x.dtype)
    return F.normalize(x, dim=1)


def _pad(scores: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (Q, k') results to (Q, k) with score -inf and id -1."""
    missing = k - scores.shape[1]
    if missing <= 0:
        return scores, ids
    q = scores.shape[0]
    return (
        torch.cat([scores, scores.new_full((q, missing), -math.inf)], dim=1),
        torch.cat([ids, ids.new_full((q, missing), -1)], dim=1),
    )


# ---------------------------------------------------------------------------------------------
# exact blocked top-k (posneg._knn)
# ---------------------------------------------------------------------------------------------


def _default_chunks(device: torch.device) -> tuple[int, int]:
    if device.type == "cuda":
        return 4096, 65536
    return 1024, 32768


class ExactIndex:
    """Exact top-k by chunked matrix products, on any device and dtype.

    Queries are processed ``query_chunk`` rows at a time and the corpus ``doc_chunk`` rows at a
    time: memory beyond the stored corpus is one ``(query_chunk, doc_chunk)`` score block plus the
    running ``(query_chunk, k)`` top-k and the few survivors of the threshold test (see the module
    docstring). Results are exact: equal to sorting each full score row by (score desc, id asc).

    Dtypes: the corpus is stored in the dtype it was added in (all ``add`` calls must agree, and
    queries must match it). Scores are computed in float32 on CPU for float16/bfloat16/float32
    input, in the input dtype on CUDA, in float64 for float64 input; returned scores are float32.

    Devices: ``device=None`` keeps the corpus on the device of the first ``add``; queries must then
    be on that device. With ``device`` given, added rows and queries are copied there, and results
    come back on the queries' device.

    Args:
        metric: ``"ip"`` (inner product) or ``"cosine"`` (rows L2-normalised on add and search).
        device: where the corpus is kept and the products run (``None``: the first ``add``'s).
        query_chunk: query rows per block (default 1024 on CPU, 4096 on CUDA).
        doc_chunk: corpus rows per block (default 32768 on CPU, 65536 on CUDA; rounded up to a
            multiple of :data:`GROUP`).

    Raises:
        ValueError: unknown metric, chunk sizes < 1.
    """

    def __init__(
        self,
        *,
        metric: Metric = "ip",
        device: torch.device | str | None = None,
        query_chunk: int | None = None,
        doc_chunk: int | None = None,
    ) -> None:
        fn = "ExactIndex"
        self.metric: Metric = _checks.check_choice(fn, "metric", metric, _METRICS)  # type: ignore[assignment]
        self.device = None if device is None else torch.device(device)
        self.query_chunk = (
            None
            if query_chunk is None
            else _checks.check_int(fn, "query_chunk", query_chunk, min_value=1)
        )
        self.doc_chunk = (
            None
            if doc_chunk is None
            else _checks.check_int(fn, "doc_chunk", doc_chunk, min_value=1)
        )
        self._emb: torch.Tensor | None = None
        self._ids: torch.Tensor | None = None  # int64 on CPU, ascending (storage sorted by id)
        self._ids_dev: torch.Tensor | None = None
        self._default_ids = True
        self._next_id = 0

    def __repr__(self) -> str:
        return (
            f"ExactIndex(metric={self.metric!r}, device={self.device}, "
            f"query_chunk={self.query_chunk}, doc_chunk={self.doc_chunk}, ntotal={self.ntotal})"
        )

    @property
    def ntotal(self) -> int:
        """Number of rows held."""
        return 0 if self._emb is None else int(self._emb.shape[0])

    @property
    def dim(self) -> int | None:
        """Embedding dimension (``None`` before the first ``add``)."""
        return None if self._emb is None else int(self._emb.shape[1])

    def add(self, embeddings: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Append ``embeddings`` (N, D) under ``ids`` (N,) int64, unique, >= 0.

        ``ids=None`` numbers the rows ``ntotal, ntotal + 1, ...``. Rows are kept sorted by id so
        that ties in search are broken by id.

        Raises:
            TypeError: non-float embeddings, non-integer ids, a dtype different from earlier rows.
            ValueError: bad shapes, a dimension different from earlier rows, NaN/inf, a device
                different from earlier rows (with ``device=None``), negative or repeated ids,
                ``ids=None`` numbering past ``2^63 - 1``.
        """
        fn = "ExactIndex.add"
        _checks.check_embeddings(fn, "embeddings", embeddings)
        if self._emb is not None:
            _checks.check_same_dim(
                fn, "embeddings", embeddings, "the rows already added", self._emb
            )
            _checks.check_same_dtype(
                fn, "embeddings", embeddings, "the rows already added", self._emb
            )
            if self.device is None:
                _checks.check_same_device(
                    fn, "embeddings", embeddings, "the rows already added", self._emb
                )
        _checks.check_finite(fn, "embeddings", embeddings)
        n = int(embeddings.shape[0])
        if ids is None:
            new_ids = _default_ids(fn, self._next_id, n)
        else:
            new_ids = _check_ids(fn, ids, n, self._ids)
        x = embeddings.detach()
        if self.device is not None:
            x = x.to(self.device)
        if self.metric == "cosine":
            x = _normalize(x)
        if self._emb is None or self._ids is None:
            emb, all_ids = x.contiguous(), new_ids
        else:
            emb, all_ids = torch.cat([self._emb, x]), torch.cat([self._ids, new_ids])
        if all_ids.numel() > 1 and not bool((all_ids[1:] > all_ids[:-1]).all()):
            order = torch.sort(all_ids, stable=True).indices
            all_ids = all_ids[order]
            emb = emb[order.to(emb.device)]
        self._default_ids = self._default_ids and ids is None
        self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        self._emb = emb
        self._ids = all_ids
        self._ids_dev = None if self._default_ids else all_ids.to(emb.device)

    def reset(self) -> None:
        """Drop every row."""
        self._emb = None
        self._ids = None
        self._ids_dev = None
        self._default_ids = True
        self._next_id = 0

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact top-``k`` of each query row: ``(scores, ids)``, both (Q, k).

        Args:
            queries: (Q, D) floating tensor, same dtype as the corpus.
            k: results per query (>= 1); beyond ``ntotal`` the tail is id -1, score -inf
                (refused where ``Q * k`` would pass :data:`MAX_PADDED`).

        Returns:
            ``scores`` float32 (Q, k), descending per row (ties: id ascending); ``ids`` int64.

        Raises:
            ValueError: empty index, bad shapes, NaN/inf, device mismatch (with ``device=None``),
                ``k`` beyond ``ntotal`` with ``Q * k > MAX_PADDED``.
            TypeError: non-float queries or a dtype different from the corpus'.
        """
        fn = "ExactIndex.search"
        k = _checks.check_int(fn, "k", k, min_value=1)
        _checks.check_float(fn, "queries", queries)
        if queries.dim() != 2:
            raise ValueError(f"{fn}: queries must have shape (Q, D); got {tuple(queries.shape)}")
        if self._emb is None or self._ids is None:
            raise ValueError(f"{fn}: the index is empty; call add() first")
        k = _check_k(fn, k, int(queries.shape[0]), self.ntotal)
        emb = self._emb
        _checks.check_same_dim(fn, "queries", queries, "the index", emb)
        _checks.check_same_dtype(fn, "queries", queries, "the index", emb)
        if self.device is None:
            _checks.check_same_device(fn, "queries", queries, "the index", emb)
        _checks.check_finite(fn, "queries", queries)
        out_device = queries.device
        q = queries.detach().to(emb.device)
        if self.metric == "cosine":
            q = _normalize(q)
        n = emb.shape[0]
        kk = min(k, n)
        if emb.device.type == "cpu":
            compute = torch.float64 if emb.dtype == torch.float64 else torch.float32
        else:
            compute = emb.dtype
        qdef, ddef = _default_chunks(emb.device)
        qchunk = self.query_chunk or qdef
        dchunk = -(-(self.doc_chunk or ddef) // GROUP) * GROUP
        dchunk = min(dchunk, -(-n // GROUP) * GROUP)
        scores, pos = _knn.topk_ip(
            q, emb, kk, query_chunk=qchunk, doc_chunk=dchunk, compute=compute, group=GROUP
        )
        ids = pos if self._ids_dev is None else self._ids_dev[pos]
        scores, ids = _pad(scores, ids, k)
        return scores.to(out_device), ids.to(out_device)


# ---------------------------------------------------------------------------------------------
# faiss
# ---------------------------------------------------------------------------------------------


def default_nlist(n: int) -> int:
    """IVF lists for ``n`` training rows: ``round(sqrt(n))`` clipped to [1, n // 39].

    faiss' k-means wants at least 39 points per centroid; below that it warns.
    """
    return max(1, min(round(math.sqrt(n)), n // 39))


class FaissIndex:
    """faiss-cpu flat or IVF index behind the :class:`Index` protocol.

    - ``kind="flat"``: ``IndexIDMap(IndexFlatIP)``, exact (the same results as
      :class:`ExactIndex` up to float rounding and the order of exact ties).
    - ``kind="ivf"``: ``IndexIVFFlat`` with an inner-product quantizer, trained (k-means, faiss'
      fixed seed) on the rows of the first ``add``; later adds are assigned to the trained lists.
      ``nlist=None`` picks :func:`default_nlist` of the first add's row count; ``nprobe`` lists
      are visited per query (clipped to ``nlist``; ``nprobe=nlist`` is exact).

    faiss works in float32 on CPU: inputs of any float dtype and device are copied to CPU
    float32, results come back on the queries' device. ``metric="cosine"`` L2-normalises rows.

    Args:
        kind: ``"flat"`` or ``"ivf"``.
        metric: ``"ip"`` or ``"cosine"``.
        nlist: IVF lists (``None``: from the first add).
        nprobe: IVF lists probed per query (default 16).

    Raises:
        ImportError: faiss is not installed (names ``pip install 'posneg[faiss]'`` and
            ``faiss-cpu``).
        ValueError: unknown kind or metric; nlist/nprobe < 1.
    """

    def __init__(
        self,
        *,
        kind: Literal["flat", "ivf"] = "flat",
        metric: Metric = "ip",
        nlist: int | None = None,
        nprobe: int = 16,
    ) -> None:
        fn = "FaissIndex"
        self.kind = _checks.check_choice(fn, "kind", kind, ("flat", "ivf"))
        self.metric: Metric = _checks.check_choice(fn, "metric", metric, _METRICS)  # type: ignore[assignment]
        self.nlist = None if nlist is None else _checks.check_int(fn, "nlist", nlist, min_value=1)
        self.nprobe = _checks.check_int(fn, "nprobe", nprobe, min_value=1)
        self._faiss = _knn.import_faiss("FaissIndex")
        self._index: Any = None
        self._dim: int | None = None
        self._next_id = 0
        self._ids: torch.Tensor | None = None

    def __repr__(self) -> str:
        return (
            f"FaissIndex(kind={self.kind!r}, metric={self.metric!r}, nlist={self.nlist}, "
            f"nprobe={self.nprobe}, ntotal={self.ntotal})"
        )

    @property
    def ntotal(self) -> int:
        """Number of rows held."""
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def faiss_index(self) -> Any:
        """The underlying faiss index (``None`` before the first add)."""
        return self._index

    def _prepare(self, x: torch.Tensor) -> Any:
        x = x.detach().to(device="cpu", dtype=torch.float32)
        if self.metric == "cosine":
            x = F.normalize(x, dim=1)
        return x.contiguous().numpy()

    def add(self, embeddings: torch.Tensor, ids: torch.Tensor | None = None) -> None:
        """Append rows (N, D) under ``ids`` (default: the next N integers); IVF trains first.

        Raises:
            TypeError/ValueError: as :meth:`ExactIndex.add`.
        """
        fn = "FaissIndex.add"
        faiss = self._faiss
        _checks.check_embeddings(fn, "embeddings", embeddings)
        if self._dim is not None and embeddings.shape[1] != self._dim:
            raise ValueError(
                f"{fn}: embeddings must have dimension D={self._dim} like the rows already added; "
                f"got {tuple(embeddings.shape)}"
            )
        _checks.check_finite(fn, "embeddings", embeddings)
        n = int(embeddings.shape[0])
        if ids is None:
            new_ids = _default_ids(fn, self._next_id, n)
        else:
            new_ids = _check_ids(fn, ids, n, self._ids)
        x = self._prepare(embeddings)
        if self._index is None:
            d = int(embeddings.shape[1])
            self._dim = d
            if self.kind == "flat":
                self._index = faiss.IndexIDMap(faiss.IndexFlatIP(d))
            else:
                nlist = self.nlist if self.nlist is not None else default_nlist(n)
                if nlist > n:
                    raise ValueError(
                        f"{fn}: nlist={nlist} needs at least {nlist} rows in the first add "
                        f"(training); got {n}"
                    )
                self.nlist = nlist
                quantizer = faiss.IndexFlatIP(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
                index.train(x)
                self._quantizer = quantizer  # keep the Python reference alive
                self._index = index
        self._index.add_with_ids(x, new_ids.numpy())
        self._ids = new_ids if self._ids is None else torch.cat([self._ids, new_ids])
        self._next_id = max(self._next_id, int(new_ids.max()) + 1)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` ``(scores, ids)`` (Q, k); rows re-sorted by (score desc, id asc).

        Raises:
            ValueError: empty index, bad shapes, NaN/inf.
        """
        fn = "FaissIndex.search"
        k = _checks.check_int(fn, "k", k, min_value=1)
        _checks.check_float(fn, "queries", queries)
        if queries.dim() != 2:
            raise ValueError(f"{fn}: queries must have shape (Q, D); got {tuple(queries.shape)}")
        if self._index is None or self._dim is None:
            raise ValueError(f"{fn}: the index is empty; call add() first")
        k = _check_k(fn, k, int(queries.shape[0]), self.ntotal)
        if queries.shape[1] != self._dim:
            raise ValueError(
                f"{fn}: queries must have dimension D={self._dim} like the index; "
                f"got {tuple(queries.shape)}"
            )
        _checks.check_finite(fn, "queries", queries)
        if self.kind == "ivf":
            self._index.nprobe = min(self.nprobe, int(self.nlist or 1))
        dist, idx = self._index.search(self._prepare(queries), k)
        scores = torch.from_numpy(dist).to(torch.float32)
        ids = torch.from_numpy(idx).to(torch.int64)
        missing = ids < 0
        scores = scores.masked_fill(missing, -math.inf)
        ids = ids.masked_fill(missing, -1)
        # deterministic order among equal scores: (score desc, id asc); -1 pads stay last
        key_ids = ids.masked_fill(missing, torch.iinfo(torch.int64).max)
        o1 = torch.sort(key_ids, dim=1, stable=True).indices
        scores, ids = scores.gather(1, o1), ids.gather(1, o1)
        o2 = torch.sort(scores, dim=1, descending=True, stable=True).indices
        scores, ids = scores.gather(1, o2), ids.gather(1, o2)
        return scores.to(queries.device), ids.to(queries.device)
